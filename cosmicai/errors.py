"""The command's exit codes and the error every command raises for bad input."""

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2  # success; the run finished but ranks failed; bad input


class BadInput(Exception):
    """Input rejected before any work started (exit code 2, one line on stderr)."""
