"""The ``cosmicai`` command: the parser and the dispatch to one module per subcommand (``cosmicai.commands``).

Exit codes: 0 success; 1 the run finished but ranks failed (the summary is
still written and names them); 2 bad input or an unreachable target, reported
before any work as one line on stderr (``--debug``, anywhere on the line, adds
the traceback); 130 interrupted (Ctrl-C or SIGTERM: the run folder says so and
``--resume`` finishes it).
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import logging
import os
import signal
import sys
import threading
import traceback
from importlib import metadata

from cosmicai.argtypes import Parser, add_debug
from cosmicai.commands import REGISTRY
from cosmicai.errors import EXIT_BAD_INPUT, BadInput

__all__ = ["BadInput", "build_parser", "entry", "main"]
EXIT_INTERRUPTED = 130


def version() -> str:
    try:
        return metadata.version("cosmicai")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="cosmicai", description="Serverless distributed inference test bed (Cosmic AI pipeline).")
    parser.add_argument("--version", action="version", version=f"cosmicai {version()}")
    parser.add_argument("--debug", action="store_true", default=False, help="show tracebacks and debug logs (anywhere on the line)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for name, (module, help_text) in REGISTRY.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        add_debug(command)
        importlib.import_module(module).add_arguments(command)
    return parser


def _interrupt_on_sigterm() -> None:
    """SIGTERM ends a command as Ctrl-C does: cleanups run, a run stops its execution and records it."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (a test calling main())
        pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = importlib.import_module(REGISTRY[args.command][0]).main
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _interrupt_on_sigterm()
    from botocore.exceptions import BotoCoreError

    from cosmicai.aws import NotConfirmed, RefusedDestroy
    from cosmicai.targets import TargetUnavailable
    from emulator.localstack_host import LocalStackUnavailable
    from emulator.server import EmulatorError
    from inference.errors import CosmicAIError

    try:
        return command(args)
    except (BadInput, CosmicAIError, ValueError, FileNotFoundError) as exc:
        return _fail(args, f"error: {exc}")
    except (TargetUnavailable, NotConfirmed, RefusedDestroy, EmulatorError, LocalStackUnavailable) as exc:
        return _fail(args, str(exc))
    except BotoCoreError as exc:  # no route to the endpoint, a read timeout, an unknown AWS_PROFILE ...
        return _fail(args, f"{type(exc).__name__}: {exc}")
    except NotImplementedError as exc:
        return _fail(args, f"not supported: {exc}")
    except KeyboardInterrupt:
        sys.stderr.write("cosmicai: interrupted\n")
        return EXIT_INTERRUPTED


def entry() -> None:
    """The console script (and ``python -m cosmicai``): :func:`main`, then an exit that skips tearing down the
    interpreter's modules (half a second after a run on the embedded target: moto's and botocore's object graphs)
    once what an exit owes is done: threads joined, ``atexit`` handlers run (temporary folders, logging), output flushed."""
    code = main()
    shutdown = getattr(threading, "_shutdown", None)  # what the interpreter runs first at exit: threads' atexit, joins
    if shutdown is None:
        raise SystemExit(code)
    shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _fail(args: argparse.Namespace, message: str) -> int:
    if args.debug:
        traceback.print_exc()
    sys.stderr.write(f"cosmicai: {message}\n")
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    entry()
