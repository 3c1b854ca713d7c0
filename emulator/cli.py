"""The ``cosmicai`` command.

Exit codes: 0 success; 1 the run finished but ranks failed (the summary is
still written and names them); 2 bad input, reported before any work as one
line on stderr (``--debug`` adds the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable

from emulator.argtypes import positive_int

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class BadInput(Exception):
    """Input rejected before any work started (exit code 2)."""


class Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit 2 like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"cosmicai: error: {message}\n")
        raise SystemExit(EXIT_BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="cosmicai", description="Serverless distributed inference test bed (Cosmic AI pipeline).")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    run = sub.add_parser("run", help="run the whole pipeline (default: embedded target, generated data)")
    run.add_argument("--target", default=None, help="embedded (default), localstack or aws")
    run.add_argument("--endpoint", default=None, help="emulator endpoint (default: a running 'emulator up', else in-process)")
    run.add_argument("--data", type=Path, help="a partition file (split for you) or a folder of 1.pt..N.pt")
    run.add_argument("--samples", type=positive_int, default=None, help="samples to generate when --data is absent (default 16384: 4 partitions of ~80 MiB)")
    run.add_argument("--seed", type=int, default=0, help="seed of the generated data")
    size = run.add_mutually_exclusive_group()
    size.add_argument("--partition-size", help="split into partitions of this size, e.g. 25MB")
    size.add_argument("--world-size", type=positive_int, help="number of ranks (default 4; with a folder, one rank per file)")
    run.add_argument("--batch-size", type=positive_int, default=512)
    run.add_argument("--max-concurrency", type=positive_int, default=None, help="Map MaxConcurrency and warm workers (default: cores, at most world size)")
    run.add_argument("--model", default="astromae", help="astromae (the reference's ViT_Astro; default), tiny, or a checkpoint file (ours, a ViT_Astro state dict, or the reference's pickled DataParallel(ViT_Astro))")
    run.add_argument("--model-folder", type=Path, help="your own model folder (model.py with load/predict; see the README)")
    run.add_argument("--memory", type=positive_int, default=3008, help="Infer function MemorySize in MB (enforced on RSS)")
    run.add_argument("--timeout", type=positive_int, default=900, help="Infer function Timeout in seconds")
    run.add_argument("--tolerated-failure-percentage", type=float, default=0.0)
    run.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    run.add_argument("--metrics", choices=("wall-clock", "reference"), default="wall-clock", help="the records' definitions: wall-clock (default) or the reference's (profiler CPU time, decimal-MB allocation sums)")
    run.add_argument("--payload", type=Path, help="a raw Step Functions input (JSON file; reference keys accepted)")
    run.add_argument("--run-id", help="name of the run (default: run-<time>-<random>)")
    run.add_argument("--resume", metavar="RUN_ID", help="re-run only the failed or missing ranks of that run (its folder: --out or cosmicai-out/RUN_ID)")
    run.add_argument("--out", type=Path, help="where the results go (default cosmicai-out/<run-id>)")
    run.add_argument("--stack", default="cosmicai", help="name prefix of the deployed resources")
    run.add_argument("--bucket", default="cosmicai-data")
    run.add_argument("--json", action="store_true", help="print only the summary JSON on stdout")
    _add_aws_arguments(run)

    local = sub.add_parser("local", help="run one partition in this process (the reference's 'Local' row)")
    local.add_argument("--data", type=Path, required=True)
    local.add_argument("--batch-size", type=positive_int, default=512)
    local.add_argument("--model", default="astromae", help="astromae (default), tiny or a checkpoint file (any format --model of run takes)")
    local.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    local.add_argument("--model-folder", type=Path, help="your own model folder (model.py with load/predict) instead of --model")
    local.add_argument("--precision", choices=("fp32", "int8", "bf16"), default="fp32", help="fp32 (default); int8 (CPU) or bf16 (native bf16 only) trade accuracy for speed")
    local.add_argument("--metrics", choices=("wall-clock", "reference"), default="wall-clock", help="the record's definitions: wall-clock (default) or the reference's")
    local.add_argument("--threads", type=positive_int, default=None, help="torch intra-op threads (default: torch's, all cores)")
    local.add_argument("--profile", action="store_true", help="profile one extra batch after the timed loop")
    local.add_argument("--json", action="store_true", help="print only the record JSON on stdout")

    data = sub.add_parser("data", help="make or split partition files")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=Parser)
    make = data_sub.add_parser("make", help="generate a synthetic SDSS-like data file")
    make.add_argument("--samples", type=positive_int, required=True)
    make.add_argument("--out", type=Path, required=True)
    make.add_argument("--seed", type=int, default=0)
    make.add_argument("--format", choices=("tensordataset", "dict"), default="tensordataset", help="tensordataset (default: the reference's layout, float64 magnitudes) or dict")
    split = data_sub.add_parser("split", help="split a data file into 1.pt..N.pt")
    split.add_argument("path", type=Path)
    how = split.add_mutually_exclusive_group(required=True)
    how.add_argument("--partition-size")
    how.add_argument("--partitions", type=positive_int)
    split.add_argument("--out", type=Path, required=True)
    split.add_argument("--format", choices=("tensordataset", "dict"), default="tensordataset", help="tensordataset (default: the reference's layout) or dict")

    deploy = sub.add_parser("deploy", help="deploy the pipeline into a running emulator (or another target)")
    deploy.add_argument("--target", default=None)
    deploy.add_argument("--endpoint", default=None)
    deploy.add_argument("--stack", default="cosmicai")
    deploy.add_argument("--bucket", default="cosmicai-data")
    deploy.add_argument("--model", default="astromae", help="astromae (default), tiny or a checkpoint file (any format --model of run takes)")
    deploy.add_argument("--model-folder", type=Path, help="your own model folder, uploaded under scripts/<folder name>/")
    deploy.add_argument("--max-concurrency", type=positive_int, default=2)
    deploy.add_argument("--memory", type=positive_int, default=3008)
    deploy.add_argument("--timeout", type=positive_int, default=900)
    _add_aws_arguments(deploy)

    destroy = sub.add_parser("destroy", help="delete every resource a deploy created (tagged with the stack)")
    destroy.add_argument("--target", default="aws")
    destroy.add_argument("--endpoint", default=None)
    destroy.add_argument("--region", default=None)
    destroy.add_argument("--stack", default="cosmicai")
    destroy.add_argument("--bucket", default="cosmicai-data")
    destroy.add_argument("--force", action="store_true", help="also delete objects in the bucket that the stack did not write")

    logs = sub.add_parser("logs", help="print a function's CloudWatch log lines")
    logs.add_argument("--function", default="summarize", help="initialize, infer, record-failure or summarize")
    logs.add_argument("--run", help="a run id: read <out>/logs of that run when no emulator is up")
    logs.add_argument("--stack", default="cosmicai")
    logs.add_argument("--target", default=None)
    logs.add_argument("--endpoint", default=None)
    logs.add_argument("--out-root", type=Path, default=Path("cosmicai-out"))

    emu = sub.add_parser("emulator", help="serve the embedded emulator on 127.0.0.1")
    emu_sub = emu.add_subparsers(dest="emulator_command", required=True, parser_class=Parser)
    up = emu_sub.add_parser("up")
    up.add_argument("--port", type=positive_int, default=4566)
    up.add_argument("--detach", action="store_true")
    up.add_argument("--max-concurrency", type=positive_int, default=2)
    emu_sub.add_parser("down")

    for name, help_text in PLUGGED.items():
        module = importlib.import_module(f"emulator.{name}")
        module.add_arguments(sub.add_parser(name, help=help_text))
    return parser


# Commands whose arguments and body live in their own module: emulator.<name> defines
# add_arguments(parser) and main(args) -> exit code.
PLUGGED = {
    "doctor": "say what this machine can run (Docker, LocalStack, AWS credentials, torch)",
    "bench": "sweep data sizes, batch sizes and world sizes through the pipeline; write results.csv, report.md and plots",
    "report": "draw one run's per-rank timeline, throughput and memory beside its summary",
    "cost": "project what a run costs on real AWS (prices and assumptions printed)",
}


def _add_aws_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--region", default=None, help="AWS region (default: the standard chain's, else us-east-1)")
    parser.add_argument("--image-uri", default=None, help="aws: an Infer image already in ECR (default: build and push inference/Dockerfile)")
    parser.add_argument("--yes", action="store_true", help="aws: create resources and start executions without asking")


def _estimate_samples_per_rank(args: argparse.Namespace, world: int) -> int:
    from emulator.runs import DEFAULT_SAMPLES
    from inference.naming import SAMPLE_BYTES

    if args.data is None:
        return max(1, (args.samples or DEFAULT_SAMPLES) // world)
    files = list(args.data.glob("*.pt")) if args.data.is_dir() else [args.data]
    return max(1, sum(f.stat().st_size for f in files) // SAMPLE_BYTES // world)


# -- commands -----------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from emulator import console
    from emulator.deploy import Stack
    from emulator.runs import DEFAULT_SAMPLES, RunRequest, execute_run, open_target
    from emulator.targets import check_ready, resolve

    if args.resume:
        return _resume(args)
    if args.data is not None and not args.data.exists():
        raise BadInput(f"--data {args.data}: no such file or folder")
    if args.data is not None and args.samples is not None:
        raise BadInput("--samples generates data; it cannot be combined with --data")
    if args.data is not None and args.data.is_dir() and args.partition_size:
        raise BadInput("--partition-size splits a data file; --data is a folder of partitions already")
    _check_model(args.model)
    payload = None
    if args.payload is not None:
        payload = _read_json(args.payload, "--payload")
        from inference.payload import parse_payload

        parse_payload(payload)
    target = resolve(args.target, endpoint=args.endpoint, region=args.region)
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
        from emulator import aws

        ranks = world or (len(list(args.data.glob("*.pt"))) if args.data and args.data.is_dir() else 4)
        stack = aws.prepare_stack(
            target, stack, yes=args.yes, image_uri=args.image_uri, show=console.err.print,
            world_size=ranks, samples_per_rank=_estimate_samples_per_rank(args, ranks),
        )
    with console.run_progress(enabled=not args.json) as progress, open_target(target, capacity=concurrency) as (live, _):
        if target.name == "aws":
            from emulator.aws import console_url

            progress.started = lambda arn: console.err.print(f"execution: {console_url(target.region, arn)}")
        outcome = execute_run(live, stack, request, args.out, progress)
    _report(args, outcome)
    return outcome.exit_code


def _resume(args: argparse.Namespace) -> int:
    from emulator import console
    from emulator.deploy import Stack
    from emulator.runs import open_target, resume_run
    from emulator.targets import check_ready, resolve

    run_dir = args.out or Path("cosmicai-out") / args.resume
    if not (run_dir / "run.json").is_file():
        raise BadInput(f"--resume {args.resume}: no run folder at {run_dir} (pass the run's --out)")
    saved = json.loads((run_dir / "run.json").read_text())
    target = resolve(saved.get("target"), endpoint=args.endpoint)
    check_ready(target)
    concurrency = args.max_concurrency or max(1, min(os.cpu_count() or 1, 4))
    stack = Stack(name=saved.get("stack", args.stack), bucket=saved.get("bucket", args.bucket), infer_memory_mb=args.memory, infer_timeout_s=args.timeout, max_concurrency=concurrency)
    with console.run_progress(enabled=not args.json) as progress, open_target(target, capacity=concurrency) as (live, _):
        outcome = resume_run(live, stack, run_dir, progress)
    _report(args, outcome)
    return outcome.exit_code


def _report(args: argparse.Namespace, outcome: Any) -> None:
    from emulator import console

    if args.json:
        console.print_json(outcome.summary)
    elif outcome.summary:
        combined = outcome.out_dir / "combined_data.json"
        console.print_ranks(json.loads(combined.read_text()) if combined.exists() else [])
        console.print_summary(outcome.summary, str(outcome.out_dir))
    else:
        execution = outcome.execution
        console.err.print(f"[red]run {outcome.run_id} ended {execution.status if execution else 'FAILED'} without a summary[/]: {execution.error if execution else ''} {execution.cause if execution else ''}")


def cmd_local(args: argparse.Namespace) -> int:
    from emulator import console
    from inference.local import run_local, run_local_folder

    if args.model_folder is not None:
        if not (args.model_folder / "model.py").is_file():
            raise BadInput(f"--model-folder {args.model_folder}: no model.py in it (see the README's model folder interface)")
        record = run_local_folder(args.data, args.model_folder, batch_size=args.batch_size, device=args.device, metrics=args.metrics, threads=args.threads)
    else:
        record = run_local(args.data, batch_size=args.batch_size, model=_check_model(args.model), device=args.device, profile=args.profile,
                           precision=args.precision, metrics=args.metrics, threads=args.threads)
    if args.json:
        console.print_json(record)
    else:
        console.print_record(record)
    return EXIT_OK


def cmd_data(args: argparse.Namespace) -> int:
    from emulator import console
    from inference.data import generate, parse_size, save_partition, split_file

    if args.data_command == "make":
        save_partition(args.out, generate(args.samples, seed=args.seed), fmt=args.format)
        console.out.print(f"wrote {args.samples} samples to {args.out}")
        return EXIT_OK
    if not args.path.is_file():
        raise BadInput(f"{args.path}: no such file")
    size = parse_size(args.partition_size) if args.partition_size else None
    paths = split_file(args.path, args.out, partition_size=size, partitions=args.partitions, fmt=args.format)
    console.out.print(f"wrote {len(paths)} partitions to {args.out} ({paths[0].name} .. {paths[-1].name})")
    return EXIT_OK


def cmd_deploy(args: argparse.Namespace) -> int:
    from emulator import console
    from emulator.deploy import Stack, deploy, upload_model_folder
    from emulator.runs import model_folder
    from emulator.targets import check_ready, resolve

    _check_model(args.model)
    target = resolve(args.target, endpoint=args.endpoint, region=args.region)
    check_ready(target)
    if target.in_process:
        raise BadInput("no emulator is running: start one with 'cosmicai emulator up --detach' (or pass --endpoint)")
    stack = Stack(name=args.stack, bucket=args.bucket, infer_memory_mb=args.memory, infer_timeout_s=args.timeout, max_concurrency=args.max_concurrency)
    if target.name == "aws":
        from emulator import aws

        stack = aws.prepare_stack(target, stack, yes=args.yes, image_uri=args.image_uri, show=console.err.print)
    deployment = deploy(target, stack)
    with tempfile.TemporaryDirectory() as workdir:
        name, folder = model_folder(args.model, args.model_folder, Path(workdir))
        key = upload_model_folder(target.client("s3"), stack.bucket, name, folder, stack.tags)
    console.out.print(f"deployed to {target.endpoint_url or 'AWS ' + target.region}: state machine {deployment.state_machine_arn}")
    console.out.print(f"bucket s3://{stack.bucket} (results/, scripts/), model folder s3://{stack.bucket}/{key}/ (payload model_key {name!r})")
    return EXIT_OK


def cmd_destroy(args: argparse.Namespace) -> int:
    from emulator import console
    from emulator.aws import destroy
    from emulator.targets import check_ready, resolve

    target = resolve(args.target, endpoint=args.endpoint, region=args.region)
    check_ready(target)
    if target.in_process:
        raise BadInput("no emulator is running: nothing to destroy")
    deleted = destroy(target, args.stack, args.bucket, force=args.force, log=console.out.print)
    console.out.print(f"{len(deleted)} resources of stack {args.stack!r} deleted" if deleted else f"nothing tagged with stack {args.stack!r} was found")
    return EXIT_OK


def cmd_logs(args: argparse.Namespace) -> int:
    from emulator import console
    from emulator.execute import read_log_events
    from emulator.targets import check_ready, resolve

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


def cmd_emulator(args: argparse.Namespace) -> int:
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


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "run": cmd_run,
    "local": cmd_local,
    "data": cmd_data,
    "deploy": cmd_deploy,
    "logs": cmd_logs,
    "destroy": cmd_destroy,
    "emulator": cmd_emulator,
}


# -- helpers -------------------------------------------------------------------------


def _check_model(spec: str) -> str:
    from inference.model import builtin_names, is_builtin

    if not is_builtin(spec) and not Path(spec).is_file():
        raise BadInput(f"--model {spec!r}: not a built-in model ({builtin_names()}) and no such checkpoint file")
    return spec


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise BadInput(f"{what} {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise BadInput(f"{what} {path}: not valid JSON ({exc})") from None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = COMMANDS.get(args.command) or importlib.import_module(f"emulator.{args.command}").main
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from emulator.aws import NotConfirmed, RefusedDestroy
    from emulator.targets import TargetUnavailable
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
