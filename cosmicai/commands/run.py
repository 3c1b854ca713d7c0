"""``cosmicai run``: the whole pipeline on a target, from data (given or generated) to the summary."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from cosmicai.argtypes import positive_int, read_json
from cosmicai.commands.common import add_aws_arguments, check_model
from cosmicai.errors import BadInput


def add_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument("--target", default=None, help="embedded (default), localstack or aws")
    run.add_argument("--endpoint", default=None, help="emulator endpoint (default: a running 'emulator up', else in-process)")
    run.add_argument("--data", type=Path, help="a partition file (split for you) or a folder of 1.pt..N.pt")
    run.add_argument("--samples", type=positive_int, default=None, help="samples to generate when --data is absent (default 16384: 4 partitions of ~80 MiB)")
    run.add_argument("--seed", type=int, default=0, help="seed of the generated data")
    size = run.add_mutually_exclusive_group()
    size.add_argument("--partition-size", help="split into partitions of this size, e.g. 25MB")
    size.add_argument("--world-size", type=positive_int, help="number of ranks (default 4; with a folder, one rank per file)")
    run.add_argument("--batch-size", type=positive_int, default=512, help="samples per inference batch")
    run.add_argument("--max-concurrency", type=positive_int, default=None, help="Map MaxConcurrency and warm workers (default: cores, at most world size)")
    run.add_argument("--model", default=None, help="astromae (the reference's ViT_Astro; the default), tiny, or a checkpoint file (ours, a ViT_Astro state dict, or the reference's pickled DataParallel(ViT_Astro))")
    run.add_argument("--model-folder", type=Path, help="your own model folder (model.py with load/predict; see the README)")
    run.add_argument("--memory", type=positive_int, default=3008, help="Infer function MemorySize in MB (enforced on RSS)")
    run.add_argument("--timeout", type=positive_int, default=900, help="Infer function Timeout in seconds")
    run.add_argument("--tolerated-failure-percentage", type=float, default=0.0, help="failed ranks tolerated before the run fails, in percent")
    run.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where each rank runs the model")
    run.add_argument("--metrics", choices=("wall-clock", "reference"), default="wall-clock", help="the records' definitions: wall-clock (default) or the reference's (profiler CPU time, decimal-MB allocation sums)")
    run.add_argument("--payload", type=Path, help="a raw Step Functions input (JSON file; reference keys accepted)")
    run.add_argument("--run-id", help="name of the run (default: run-<time>-<random>)")
    run.add_argument("--resume", metavar="RUN_ID", help="re-run only the failed or missing ranks of that run (its folder: --out or cosmicai-out/RUN_ID)")
    run.add_argument("--out", type=Path, help="where the results go (default cosmicai-out/<run-id>)")
    run.add_argument("--stack", default="cosmicai", help="name prefix of the deployed resources (letters, digits, -)")
    run.add_argument("--bucket", default="cosmicai-data", help="the S3 bucket for data/, scripts/ and results/")
    run.add_argument("--json", action="store_true", help="print only the summary JSON on stdout")
    run.add_argument("--lenient-data", action="store_true", help="warn about gaps (1, 2, 4) and stray files in a --data folder instead of refusing it")
    add_aws_arguments(run)


def _estimate_samples_per_rank(args: argparse.Namespace, world: int) -> int:
    from cosmicai.runs import DEFAULT_SAMPLES
    from inference.naming import SAMPLE_BYTES

    if args.data is None:
        return max(1, (args.samples or DEFAULT_SAMPLES) // world)
    files = list(args.data.glob("*.pt")) if args.data.is_dir() else [args.data]
    return max(1, sum(f.stat().st_size for f in files) // SAMPLE_BYTES // world)


def validate(args: argparse.Namespace) -> None:
    """Every check that can be made before start-up: one BadInput naming the problem, nothing started or written."""
    from cosmicai import runfolder
    from cosmicai.runs import new_run_id

    if args.payload is not None:
        given = [flag for flag, value in (("--data", args.data), ("--samples", args.samples), ("--model-folder", args.model_folder),
                                          ("--partition-size", args.partition_size), ("--world-size", args.world_size)) if value is not None]
        if given:
            raise BadInput(f"--payload is a whole execution input: it cannot be combined with {', '.join(given)}")
    if args.data is not None and not args.data.exists():
        raise BadInput(f"--data {args.data}: no such file or folder")
    if args.data is not None and args.samples is not None:
        raise BadInput("--samples generates data; it cannot be combined with --data")
    if args.data is not None and args.data.is_dir():
        if args.partition_size:
            raise BadInput("--partition-size splits a data file; --data is a folder of partitions already")
        check_partition_folder(args.data, lenient=args.lenient_data)
    if args.partition_size:
        from inference.naming import parse_size

        try:
            if parse_size(args.partition_size) <= 0:
                raise ValueError
        except ValueError:
            raise BadInput(f"--partition-size {args.partition_size!r}: expected a size such as 25MB, 1.5GB or 512KB") from None
    if args.model is not None and args.model_folder is not None:
        raise BadInput("--model and --model-folder name two models: give one")
    if args.model_folder is not None and not (args.model_folder / "model.py").is_file():
        raise BadInput(f"--model-folder {args.model_folder}: no model.py in it (see the README's model folder interface)")
    args.model = check_model(args.model or "astromae")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise BadInput(f"--device cuda: this torch ({torch.__version__}) sees no CUDA device; run on cpu")
    from cosmicai.deploy import Stack

    Stack(name=args.stack, bucket=args.bucket, infer_memory_mb=args.memory, infer_timeout_s=args.timeout)  # names and sizes, checked now
    args.run_id = runfolder.check_run_id(args.run_id or new_run_id())
    runfolder.check_new(args.out or Path("cosmicai-out") / args.run_id, args.run_id)


def check_partition_folder(folder: Path, lenient: bool = False) -> None:
    """A folder of 1.pt..N.pt: no gap in the numbers, nothing else in it (or warnings, when lenient)."""
    from cosmicai import console
    from inference.naming import partition_index

    numbers, strays = [], []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        try:
            numbers.append(partition_index(path.name))
        except ValueError:
            strays.append(path.name)
    if not numbers:
        raise BadInput(f"--data {folder}: no partition files (1.pt .. N.pt) in it")
    missing = sorted(set(range(1, max(numbers) + 1)) - set(numbers))
    problems = []
    if missing:
        problems.append(f"partitions missing from the 1..{max(numbers)} sequence: {', '.join(map(str, missing[:20]))}{' ...' if len(missing) > 20 else ''}")
    if strays:
        problems.append(f"files that are not partitions: {', '.join(strays[:20])}{' ...' if len(strays) > 20 else ''}")
    if problems and not lenient:
        raise BadInput(f"--data {folder}: {'; '.join(problems)} (fix the folder, or pass --lenient-data to run what is there)")
    for problem in problems:
        console.err.print(f"[yellow]warning[/]: --data {folder}: {problem}")


def main(args: argparse.Namespace) -> int:
    from cosmicai import console
    from cosmicai.deploy import Stack
    from cosmicai.runs import DEFAULT_SAMPLES, RunRequest, execute_run, open_target
    from cosmicai.targets import check_ready, resolve

    if args.resume:
        return _resume(args)
    validate(args)
    payload = None
    if args.payload is not None:
        payload = read_json(args.payload, "--payload")
        from inference.payload import parse_payload

        parse_payload(payload)
    target = resolve(args.target, endpoint=args.endpoint, region=args.region)
    if payload is not None and target.in_process:
        raise BadInput("--payload runs on data already in the target's bucket, and an in-process emulator starts empty: "
                       "start one with 'cosmicai emulator up --detach' (deploy and upload into it), or give --data instead")
    check_ready(target)
    world = args.world_size if not (args.data and args.data.is_dir()) else None
    concurrency = args.max_concurrency or max(1, min(os.cpu_count() or 1, world or 4))
    if target.name == "aws" and not args.max_concurrency:
        concurrency = 1000  # Lambda scales out: let the Map run every rank at once
    request = RunRequest(
        data=args.data,
        samples=args.samples or DEFAULT_SAMPLES,
        seed=args.seed,
        partition_size=args.partition_size,
        world_size=args.world_size,
        batch_size=args.batch_size,
        max_concurrency=concurrency,
        model=args.model,
        model_folder=args.model_folder,
        run_id=args.run_id,
        tolerated_failure_percentage=args.tolerated_failure_percentage,
        device=args.device,
        payload=payload,
        metrics=args.metrics,
    )
    stack = Stack(name=args.stack, bucket=args.bucket, infer_memory_mb=args.memory, infer_timeout_s=args.timeout, max_concurrency=concurrency)
    if target.name == "aws":
        from cosmicai import aws

        ranks = world or (len(list(args.data.glob("*.pt"))) if args.data and args.data.is_dir() else 4)
        stack = aws.prepare_stack(
            target, stack, yes=args.yes, image_uri=args.image_uri, show=console.err.print,
            world_size=ranks, samples_per_rank=_estimate_samples_per_rank(args, ranks),
        )
    clock = time.perf_counter()
    with console.run_progress(enabled=not args.json) as progress, open_target(target, capacity=concurrency, wait=False, stack=stack) as (live, engine):
        opened = time.perf_counter()
        if target.name == "aws":
            from cosmicai.aws import console_url

            progress.started = lambda arn: console.err.print(f"execution: {console_url(target.region, arn)}")
        outcome = execute_run(live, stack, request, args.out, progress, engine=engine)
        finished = time.perf_counter()
    _record_start_and_shutdown(outcome.out_dir, opened - clock, time.perf_counter() - finished)
    report(args, outcome)
    return outcome.exit_code


def _resume(args: argparse.Namespace) -> int:
    from cosmicai import console, runfolder
    from cosmicai.deploy import Stack
    from cosmicai.resume import resume_run
    from cosmicai.runs import open_target
    from cosmicai.targets import check_ready, resolve

    run_dir = args.out or Path("cosmicai-out") / args.resume
    saved = runfolder.read(run_dir)
    if saved is None:
        raise BadInput(f"--resume {args.resume}: no run folder at {run_dir} (pass the run's --out)")
    if saved["run_id"] != args.resume:
        raise BadInput(f"--resume {args.resume}: {run_dir} holds run {saved['run_id']!r}")
    target = resolve(saved.get("target"), endpoint=args.endpoint)
    check_ready(target)
    concurrency = args.max_concurrency or max(1, min(os.cpu_count() or 1, 4))
    stack = Stack(name=saved.get("stack", args.stack), bucket=saved.get("bucket", args.bucket), infer_memory_mb=args.memory, infer_timeout_s=args.timeout, max_concurrency=concurrency)
    clock = time.perf_counter()
    with console.run_progress(enabled=not args.json) as progress, open_target(target, capacity=concurrency, wait=False, stack=stack) as (live, engine):
        opened = time.perf_counter()
        outcome = resume_run(live, stack, run_dir, progress, engine=engine)
        finished = time.perf_counter()
    if outcome is not None:
        _record_start_and_shutdown(outcome.out_dir, opened - clock, time.perf_counter() - finished)
    if outcome is None:
        console.err.print(f"run {args.resume}: every rank already succeeded; nothing to re-run ({run_dir})")
        if args.json and (run_dir / "summary.json").is_file():
            console.print_json(json.loads((run_dir / "summary.json").read_text()))
        return 0
    report(args, outcome)
    return outcome.exit_code


def _record_start_and_shutdown(out_dir: Path, start_s: float, shutdown_s: float) -> None:
    """Complete run.json's ``stages_s`` breakdown with the target's start (an in-process emulator) and shutdown, and
    record ``cpu_s``: the CPU seconds of this command's process and of the subprocesses it ended (an in-process
    emulator's Lambda workers): on a machine with few cores, what bounds the run's wall time from below."""
    import psutil

    from cosmicai import runfolder

    saved = runfolder.read(out_dir) or {}
    stages = {"start": round(start_s, 3), **saved.get("stages_s", {}), "shutdown": round(shutdown_s, 3)}
    times = psutil.Process().cpu_times()
    cpu = {"this_process": round(times.user + times.system, 3),
           "subprocesses": round(getattr(times, "children_user", 0.0) + getattr(times, "children_system", 0.0), 3)}
    runfolder.update(out_dir, stages_s=stages, cpu_s=cpu)


def report(args: argparse.Namespace, outcome: Any) -> None:
    """Print the run's outcome: the summary JSON (--json), or the rank table and the summary."""
    from cosmicai import console

    if args.json:
        console.print_json(outcome.summary)
    elif outcome.summary:
        combined = outcome.out_dir / "combined_data.json"
        console.print_ranks(json.loads(combined.read_text()) if combined.exists() else [])
        console.print_summary(outcome.summary, str(outcome.out_dir))
    else:
        execution = outcome.execution
        console.err.print(f"[red]run {outcome.run_id} ended {execution.status if execution else 'FAILED'} without a summary[/]: {execution.error if execution else ''} {execution.cause if execution else ''}")
