"""``cosmicai logs``: a function's CloudWatch lines, live from an emulator or from a finished run's folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cosmicai.errors import EXIT_OK, BadInput


def add_arguments(logs: argparse.ArgumentParser) -> None:
    logs.add_argument("--function", default="summarize", help="initialize, infer, record-failure or summarize")
    logs.add_argument("--run", help="a run id: read <out>/logs of that run when no emulator is up")
    logs.add_argument("--stack", default="cosmicai")
    logs.add_argument("--target", default=None)
    logs.add_argument("--endpoint", default=None)
    logs.add_argument("--out-root", type=Path, default=Path("cosmicai-out"))


def main(args: argparse.Namespace) -> int:
    from cosmicai import console
    from cosmicai.execute import read_log_events
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
    for event in events:
        if args.run and args.run not in event["message"] and not event["message"].startswith(("START", "END", "REPORT")):
            continue
        console.out.print(event["message"], markup=False, highlight=False)
    return EXIT_OK
