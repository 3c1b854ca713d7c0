"""``cosmicai emulator up|down``: the embedded emulator served on 127.0.0.1 for the AWS CLI, boto3, notebooks."""

from __future__ import annotations

import argparse

from cosmicai.argtypes import Parser, positive_int
from cosmicai.errors import EXIT_OK


def add_arguments(emu: argparse.ArgumentParser) -> None:
    emu_sub = emu.add_subparsers(dest="emulator_command", required=True, parser_class=Parser)
    up = emu_sub.add_parser("up")
    up.add_argument("--port", type=positive_int, default=4566)
    up.add_argument("--detach", action="store_true")
    up.add_argument("--max-concurrency", type=positive_int, default=2)
    emu_sub.add_parser("down")


def main(args: argparse.Namespace) -> int:
    from emulator import server

    if args.emulator_command == "down":
        stopped = server.shutdown()
        print("emulator stopped" if stopped else "no emulator was running")
        return EXIT_OK
    if args.detach:
        state = server.detach(args.port, args.max_concurrency)
        print(f"emulator up at {state['endpoint']} (pid {state['pid']}); use AWS_ENDPOINT_URL={state['endpoint']}")
        return EXIT_OK
    server.serve(args.port, args.max_concurrency)
    return EXIT_OK
