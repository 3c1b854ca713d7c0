"""`cosmicai doctor` (not built yet: it says so)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options yet."""


def main(args: argparse.Namespace) -> int:
    raise NotImplementedError("cosmicai doctor")
