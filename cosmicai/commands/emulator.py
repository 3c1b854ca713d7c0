"""``cosmicai emulator up|down``: the embedded emulator served on 127.0.0.1 for the AWS CLI, boto3, notebooks."""

from __future__ import annotations

import argparse

from cosmicai.argtypes import Parser, add_debug, positive_int
from cosmicai.errors import EXIT_OK, BadInput


def add_arguments(emu: argparse.ArgumentParser) -> None:
    emu_sub = emu.add_subparsers(dest="emulator_command", required=True, metavar="COMMAND", parser_class=Parser)
    up = emu_sub.add_parser("up", help="serve moto + our Lambda worker pool on 127.0.0.1")
    add_debug(up)
    up.add_argument("--port", type=positive_int, default=4566, help="port on 127.0.0.1")
    up.add_argument("--detach", action="store_true", help="run in the background and return once it answers")
    up.add_argument("--max-concurrency", type=positive_int, default=2, help="warm workers busy at once per function")
    add_debug(emu_sub.add_parser("down", help="stop the emulator 'up' started, and its workers"))


def main(args: argparse.Namespace) -> int:
    from cosmicai import console
    from emulator import server

    if args.emulator_command == "down":
        stopped = server.shutdown()
        console.out.print("emulator stopped" if stopped else "no emulator was running")
        return EXIT_OK
    try:
        if args.detach:
            state = server.detach(args.port, args.max_concurrency)
            console.out.print(f"emulator up at {state['endpoint']} (pid {state['pid']}); use AWS_ENDPOINT_URL={state['endpoint']}")
        else:
            server.serve(args.port, args.max_concurrency, announce=console.out.print)
    except server.EmulatorError as exc:
        raise BadInput(str(exc)) from None
    return EXIT_OK
