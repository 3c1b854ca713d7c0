"""``cosmicai localstack up|down|status``: real LocalStack 4.14.0 in host mode, no Docker (``emulator.localstack_host``)."""

from __future__ import annotations

import argparse

from cosmicai.argtypes import Parser, add_debug, positive_int
from cosmicai.errors import EXIT_OK, BadInput


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="localstack_command", required=True, metavar="COMMAND", parser_class=Parser)
    up = sub.add_parser("up", help="start LocalStack on 127.0.0.1 (installs it once into a cached venv)")
    add_debug(up)
    up.add_argument("--port", type=positive_int, default=4566, help="port on 127.0.0.1")
    up.add_argument("--detach", action="store_true", help="start it in the background and return once it is healthy")
    up.add_argument("--python", default=None, help="a Python >= 3.13 for LocalStack (default: $COSMICAI_LOCALSTACK_PYTHON, python3.13/3.14 on PATH, pyenv's)")
    down = sub.add_parser("down", help="stop LocalStack and every worker it started")
    add_debug(down)
    down.add_argument("--port", type=positive_int, default=4566, help="the port it was started on")
    add_debug(sub.add_parser("status", help="say which host-mode LocalStacks run here, and whether they are healthy"))


def main(args: argparse.Namespace) -> int:
    from cosmicai import console
    from emulator import localstack_host as host

    if args.localstack_command == "down":
        print(f"LocalStack on port {args.port} stopped" if host.stop(args.port) else f"no LocalStack was running on port {args.port}")
        return EXIT_OK
    if args.localstack_command == "status":
        return _status(console, host)
    try:
        with console.status_line() as show:
            if args.detach:
                state = host.start(args.port, args.python, progress=show)
            else:
                host.serve(args.port, args.python, progress=show, ready=lambda state: _ready(console, state, detached=False))
                return EXIT_OK
    except host.LocalStackUnavailable as exc:
        raise BadInput(str(exc)) from None
    _ready(console, state, detached=True)
    return EXIT_OK


def _ready(console, state: dict, detached: bool) -> None:  # type: ignore[no-untyped-def]
    stop = f"'cosmicai localstack down --port {state['port']}'" if detached else "Ctrl-C"
    console.out.print(f"LocalStack {state['version']} up at {state['endpoint']} (pid {state['pid']}, healthy in {state['start_s']} s); "
                      f"use AWS_ENDPOINT_URL={state['endpoint']} or --target localstack; stop with {stop}")


def _status(console, host) -> int:  # type: ignore[no-untyped-def]
    found = 0
    for path in sorted(host.home().glob("localstack-*.json")):
        state = host.read_state(path)
        if state:
            found += 1
            services = (host.health(state["endpoint"]) or {}).get("services") or {}
            ready = sorted(name for name, value in services.items() if value in ("available", "running"))
            console.out.print(f"LocalStack {state.get('version', '?')} at {state['endpoint']} (pid {state['pid']}): "
                              + (f"healthy; services {', '.join(ready)}" if services else "not answering its health check"))
    if not found:
        console.out.print("no host-mode LocalStack is running (start one with 'cosmicai localstack up --detach')")
    return EXIT_OK
