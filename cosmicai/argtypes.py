"""argparse pieces shared by the commands: the parser class, value types, and reading a JSON file argument."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cosmicai.errors import EXIT_BAD_INPUT, BadInput


class Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit 2 like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"cosmicai: error: {message}\n")
        raise SystemExit(EXIT_BAD_INPUT)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def read_json(path: Path, what: str) -> Any:
    """The JSON value in ``path``; BadInput naming ``what`` when it cannot be read or parsed."""
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise BadInput(f"{what} {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise BadInput(f"{what} {path}: not valid JSON ({exc})") from None
