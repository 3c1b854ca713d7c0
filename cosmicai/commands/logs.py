"""``cosmicai logs``: a function's CloudWatch lines, live from an emulator or from a finished run's folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cosmicai.errors import EXIT_OK, BadInput


def add_arguments(logs: argparse.ArgumentParser) -> None:
    logs.add_argument("--function", default="summarize", help="initialize, infer, record-failure or summarize")
    logs.add_argument("--run", help="a run id: read <out>/logs of that run when no emulator is up")
    logs.add_argument("--stack", default="cosmicai", help="the stack whose functions' logs to read")
    logs.add_argument("--target", default=None, help="embedded, localstack or aws (default: $COSMICAI_TARGET, else embedded)")
    logs.add_argument("--endpoint", default=None, help="an emulator's endpoint (default: a registered one)")
    logs.add_argument("--out-root", type=Path, default=Path("cosmicai-out"), help="where run folders are, for --run without an emulator")


def main(args: argparse.Namespace) -> int:
    from cosmicai import console
    from cosmicai.execute import invocations_of, read_log_events
    from cosmicai.targets import resolve

    function = f"{args.stack}-{args.function}"
    target = resolve(args.target, endpoint=args.endpoint)
    if target.in_process:
        if not args.run:
            raise BadInput("no emulator is running: pass --run RUN_ID to read a finished run's logs from its folder")
        path = args.out_root / args.run / "logs" / f"{function}.log"
        if not path.is_file():
            raise BadInput(f"{path}: no such log (was the run's folder moved? see --out-root)")
        sys.stdout.write(path.read_text())
        return EXIT_OK
    events = read_log_events(target.client("logs"), f"/aws/lambda/{function}")
    lines = invocations_of(events, args.run) if args.run else [event["message"] for event in events]
    for line in lines:
        console.out.print(line, markup=False, highlight=False)
    return EXIT_OK
