"""Targets, the embedded AWS emulator (moto + warm Lambda worker pool), deploy, execute, CLI."""
