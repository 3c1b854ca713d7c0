"""``cosmicai local``: one partition file in this process, the reference's "Local" row; nothing is written."""

from __future__ import annotations

import argparse
from pathlib import Path

from cosmicai.argtypes import positive_int
from cosmicai.commands.common import check_model
from cosmicai.errors import EXIT_OK, BadInput


def add_arguments(local: argparse.ArgumentParser) -> None:
    local.add_argument("--data", type=Path, required=True, help="one partition file (either layout)")
    local.add_argument("--batch-size", type=positive_int, default=512, help="samples per inference batch")
    local.add_argument("--model", default=None, help="astromae (the default), tiny or a checkpoint file (any format --model of run takes)")
    local.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the model runs")
    local.add_argument("--model-folder", type=Path, help="your own model folder (model.py with load/predict) instead of --model")
    local.add_argument("--precision", choices=("fp32", "int8", "bf16"), default=None, help="fp32 (the default); int8 (CPU) or bf16 (native bf16 only) trade accuracy for speed; built-in models only")
    local.add_argument("--metrics", choices=("wall-clock", "reference"), default="wall-clock", help="the record's definitions: wall-clock (default) or the reference's")
    local.add_argument("--threads", type=positive_int, default=None, help="torch intra-op threads (default: torch's, all cores)")
    local.add_argument("--profile", action="store_true", help="profile one extra batch after the timed loop")
    local.add_argument("--json", action="store_true", help="print only the record JSON on stdout")


def main(args: argparse.Namespace) -> int:
    from cosmicai import console
    from inference.local import run_local, run_local_folder

    if args.model_folder is not None:
        given = [flag for flag, value in (("--model", args.model), ("--precision", args.precision), ("--profile", args.profile or None)) if value]
        if given:
            raise BadInput(f"--model-folder runs your model as it is: {', '.join(given)} cannot be combined with it")
        if not (args.model_folder / "model.py").is_file():
            raise BadInput(f"--model-folder {args.model_folder}: no model.py in it (see the README's model folder interface)")
        record = run_local_folder(args.data, args.model_folder, batch_size=args.batch_size, device=args.device, metrics=args.metrics, threads=args.threads)
    else:
        record = run_local(args.data, batch_size=args.batch_size, model=check_model(args.model or "astromae"), device=args.device, profile=args.profile,
                           precision=args.precision or "fp32", metrics=args.metrics, threads=args.threads)
    if args.json:
        console.print_json(record)
    else:
        console.print_record(record)
    return EXIT_OK
