"""argparse pieces shared by the commands: the parser class, value types, and reading a JSON file argument."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cosmicai.errors import EXIT_BAD_INPUT, BadInput


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default (when it has one worth saying)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "default" not in text and default not in (None, False, argparse.SUPPRESS) and action.option_strings and not isinstance(default, list):
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit 2 like every other bad input; a missing command shows the help."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        if "required: COMMAND" in message or message.endswith("required: command"):
            self.print_help(sys.stderr)
        sys.stderr.write(f"cosmicai: error: {message}\n")
        raise SystemExit(EXIT_BAD_INPUT)


def add_debug(parser: argparse.ArgumentParser) -> None:
    """``--debug`` on a subcommand too (``cosmicai run ... --debug``); the top-level one sets the default."""
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks and debug logs")


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
