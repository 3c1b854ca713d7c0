"""The ``cosmicai`` command: the parser and the dispatch to one module per subcommand (``cosmicai.commands``).

Exit codes: 0 success; 1 the run finished but ranks failed (the summary is
still written and names them); 2 bad input, reported before any work as one
line on stderr (``--debug`` adds the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback

from cosmicai.argtypes import Parser
from cosmicai.commands import REGISTRY
from cosmicai.errors import EXIT_BAD_INPUT, BadInput

__all__ = ["BadInput", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="cosmicai", description="Serverless distributed inference test bed (Cosmic AI pipeline).")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, (module, help_text) in REGISTRY.items():
        importlib.import_module(module).add_arguments(sub.add_parser(name, help=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = importlib.import_module(REGISTRY[args.command][0]).main
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from cosmicai.aws import NotConfirmed, RefusedDestroy
    from cosmicai.targets import TargetUnavailable
    from inference.errors import CosmicAIError

    try:
        return command(args)
    except (BadInput, CosmicAIError, ValueError, FileNotFoundError) as exc:
        if args.debug:
            traceback.print_exc()
        sys.stderr.write(f"cosmicai: error: {exc}\n")
        return EXIT_BAD_INPUT
    except (TargetUnavailable, NotConfirmed, RefusedDestroy) as exc:
        if args.debug:
            traceback.print_exc()
        sys.stderr.write(f"cosmicai: {exc}\n")
        return EXIT_BAD_INPUT
    except NotImplementedError as exc:
        if args.debug:
            traceback.print_exc()
        sys.stderr.write(f"cosmicai: not supported: {exc}\n")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        sys.stderr.write("cosmicai: interrupted\n")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
