"""`cosmicai bench`: the reference's performance study as one command, on any target.

A data set is **W partitions of P each**, as in the reference, where each of
the world_size ranks read one 25/75/100 MB partition: a partition holds
``n = max(1, floor(parse_size(P) x F / 20,520 B))`` samples (F = ``--scale``,
binary units: 25MB = 25 MiB = 1,277 samples at F = 1), the data set ``W x n``
samples, and each pipeline rank infers exactly one partition. Data are
synthetic and deterministic (``--seed``).

The data sets measured are the two axes of the figures: every partition size
at one world size (the largest given that is <= the cores, else the
smallest), and every world size at the smallest partition size; ``--grid``
measures every combination. The default sweep, the reference model
``astromae`` on full-size 25, 75 and 100 MB partitions at world sizes 1, 2
and 4, batch 512, 3 repeats, takes about 10 minutes on 2 cores.

Each configuration (data set, batch size B, repeat r) is measured as two
rows (``kind``), each with a warm and a cold figure
(``cosmicai.study.measure``): ``pipeline`` (the Step Functions pipeline on the
target, one rank per partition, Map MaxConcurrency ``--max-concurrency``,
default the cores; on aws W) and ``local`` (the same W x n samples as one
file through ``run_local``, ``cosmicai local``: the reference's "Local" row).
The target is opened once for the sweep (on aws: confirmed once, ``--yes``, and
the image built once); the stack is redeployed only when MaxConcurrency
changes. Before the first measurement an unrecorded warm-up execution (one
rank per worker, one batch of the largest batch size) starts the Lambda
workers, and the local worker runs the same batch once.

Order: data set by data set (world size, then partition size, ascending);
within one, by batch size, then repeat: pipeline, then local. A rerun with
the same ``--out`` skips every configuration that already has a succeeded row
(``results.KEY_COLUMNS``); failed rows are measured again and replaced;
when nothing is left to measure, nothing is redrawn (``--report-only`` redraws).

Artifacts in ``--out`` (default ``cosmicai-bench``): ``results.csv`` (every
run, then each configuration's median, min and max; rewritten atomically after
each row; columns in ``cosmicai.study.results``), ``runs/<run_id>/`` (each
pipeline run's folder as ``cosmicai run`` writes it: draw one with ``cosmicai
report``), ``report.md`` (``cosmicai.study.tables``) and the PNG figures of
``cosmicai.study.plots``. The data sets live in a temporary folder, one at a time.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from cosmicai.argtypes import positive_int
from cosmicai.study.results import (
    Config,
    OtherWork,
    config_key,
    merge,
    pending,
    read_results,
    write_results,
)
from cosmicai.study.tables import write_report
from inference.naming import DEFAULT_MODEL, SAMPLE_BYTES, parse_size


def _list(kind: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    """A comma-separated list of kind(item), duplicates dropped, order kept."""

    def parse(text: str) -> list[Any]:
        try:
            values = [kind(part.strip()) for part in text.split(",") if part.strip()]
        except (ValueError, argparse.ArgumentTypeError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        if not values:
            raise argparse.ArgumentTypeError("give at least one value")
        return list(dict.fromkeys(values))

    return parse


def _size(text: str) -> str:
    if parse_size(text) < SAMPLE_BYTES:
        raise ValueError(f"{text!r} is smaller than one sample (20,520 B)")
    return text


def _scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", default=None, help="embedded (default), localstack or aws")
    parser.add_argument("--endpoint", default=None, help="emulator endpoint (default: a running 'emulator up', else in-process)")
    parser.add_argument("--region", default=None, help="aws: the region (default: the standard chain's, else us-east-1)")
    parser.add_argument("--image-uri", default=None, help="aws: an Infer image already in ECR (default: build and push inference/Dockerfile)")
    parser.add_argument("--yes", action="store_true", help="aws: create resources and start the sweep's executions without asking")
    parser.add_argument("--partition-sizes", type=_list(_size), default=["25MB", "75MB", "100MB"],
                        help="nominal partition sizes, binary units (default 25MB,75MB,100MB, the reference's)")
    parser.add_argument("--world-sizes", type=_list(positive_int), default=[1, 2, 4],
                        help="partitions in the data set = ranks (default 1,2,4; the reference used 41)")
    parser.add_argument("--batch-sizes", type=_list(positive_int), default=[512], help="default 512 (the reference's)")
    parser.add_argument("--grid", action="store_true",
                        help="every partition size at every world size (default: each size at one world size, each world size at the smallest size)")
    parser.add_argument("--repeats", type=positive_int, default=3, help="runs of each configuration (default 3; the report shows the median and min-max)")
    parser.add_argument("--scale", type=_scale, default=1.0, help="data shrink factor: samples per partition = size x F / 20,520 B (default 1 = full size)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"{DEFAULT_MODEL} (default, the reference's network), tiny or a checkpoint file")
    parser.add_argument("--memory", type=positive_int, default=3008, help="Infer function MemorySize in MB (enforced on RSS; priced in the cost)")
    parser.add_argument("--timeout", type=positive_int, default=900, help="Infer function Timeout in seconds")
    parser.add_argument("--max-concurrency", type=positive_int, default=None, help="Map MaxConcurrency (default: the cores; aws: world size)")
    parser.add_argument("--no-local", action="store_true", help="skip the local single-process baseline")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold runs (a fresh `cosmicai run` / `cosmicai local` process per row)")
    parser.add_argument("--stack", default="cosmicai-bench", help="name prefix of the deployed resources")
    parser.add_argument("--bucket", default="cosmicai-bench", help="the S3 bucket the sweep uses")
    parser.add_argument("--out", type=Path, default=Path("cosmicai-bench"), help="results.csv, report.md, figures and runs/ (default cosmicai-bench)")
    parser.add_argument("--report-only", action="store_true", help="redraw report.md and the figures from an existing results.csv")


def datasets(args: argparse.Namespace, cores: int) -> list[tuple[str, int]]:
    """The (partition size, world size) pairs of the sweep, by world size then size."""
    sizes, worlds = sorted(args.partition_sizes, key=parse_size), sorted(args.world_sizes)
    if args.grid:
        pairs = [(size, world) for size in sizes for world in worlds]
    else:
        at_world = max((w for w in worlds if w <= cores), default=worlds[0])
        pairs = list(dict.fromkeys([(size, at_world) for size in sizes] + [(sizes[0], world) for world in worlds]))
    return sorted(pairs, key=lambda p: (p[1], parse_size(p[0])))


def plan(args: argparse.Namespace, target_name: str) -> list[Config]:
    """Every configuration of the sweep, in the order they run."""
    cores = os.cpu_count() or 1
    configs = []
    kinds = ["pipeline"] + ([] if args.no_local else ["local"])
    for size, world in datasets(args, cores):
        concurrency = args.max_concurrency or (world if target_name == "aws" else cores)
        for batch, repeat, kind in itertools.product(sorted(args.batch_sizes), range(1, args.repeats + 1), kinds):
            common = {"model": args.model, "partition_size": size, "scale": args.scale, "seed": args.seed, "world_size": world, "batch_size": batch, "repeat": repeat}
            if kind == "pipeline":
                configs.append(Config(target=target_name, kind=kind, memory_mb=args.memory, max_concurrency=concurrency, **common))
            else:
                configs.append(Config(target="local", kind=kind, memory_mb=None, max_concurrency=None, **common))
    return configs


@contextlib.contextmanager
def sweep_bar(total: int) -> Iterator[tuple[Callable[[str], None], Callable[[], None]]]:
    """One rich progress bar over the whole sweep: (describe(text), advance())."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from cosmicai.console import err

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err) as bar:
        task = bar.add_task("starting", total=total)
        yield (lambda text: bar.update(task, description=text)), (lambda: bar.advance(task))


def _warm_up(live: Any, stack: Any, deployment: Any, model: str, workers: int, batch: int) -> None:
    """An unrecorded execution, one rank per worker, one batch each: starts the Lambda workers and loads the model."""
    from cosmicai.runs import Progress, RunRequest, execute_run

    request = RunRequest(samples=workers * batch, world_size=workers, batch_size=batch, model=model, run_id=f"bench-warmup-{secrets.token_hex(3)}")
    with tempfile.TemporaryDirectory(prefix="cosmicai-warmup-") as tmp:
        execute_run(live, stack, request, Path(tmp), Progress(), deployment=deployment)


def _target_args(args: argparse.Namespace, target: Any, stack: Any) -> list[str]:
    """The target flags a cold `cosmicai run` gets: the same target as the sweep's."""
    argv = ["--target", target.name]
    for flag, value in (("--endpoint", args.endpoint), ("--region", args.region), ("--image-uri", getattr(stack, "image_uri", None))):
        if value:
            argv += [flag, str(value)]
    return argv + (["--yes"] if target.name == "aws" else [])


def run_sweep(args: argparse.Namespace, target: Any, todo: list[Config], rows: list[dict[str, Any]], results: Path) -> list[dict[str, Any]]:
    """Measure every configuration in ``todo`` on ``target``, saving results.csv after each; return all rows."""
    from cosmicai import deploy as deploy_mod
    from cosmicai.runs import Progress, open_target
    from cosmicai.study import measure

    pipeline = [c for c in todo if c.kind == "pipeline"]
    peak = max((c.max_concurrency or 1 for c in pipeline), default=1)
    batch = max(c.batch_size for c in todo)
    stack = deploy_mod.Stack(name=args.stack, bucket=args.bucket, infer_memory_mb=args.memory, infer_timeout_s=args.timeout, max_concurrency=peak)
    if pipeline and target.name == "aws":  # as `cosmicai run` does: confirm, then the image and the vendored zip
        from cosmicai import aws
        from cosmicai.console import err

        err.print(f"cosmicai bench: {2 * len(pipeline)} executions on AWS, the largest as estimated below")
        stack = aws.prepare_stack(target, stack, yes=args.yes, image_uri=args.image_uri, show=err.print,
                                  world_size=max(c.world_size for c in pipeline), samples_per_rank=max(c.samples_per_partition for c in pipeline))
    cold_args = _target_args(args, target, stack)
    threads = max(1, (os.cpu_count() or 1) // peak) if target.name == "embedded" else None  # the warm pool's threads per worker
    with contextlib.ExitStack() as resources, sweep_bar(len(todo)) as (describe, advance):
        scratch = Path(resources.enter_context(tempfile.TemporaryDirectory(prefix="cosmicai-bench-")))
        data = measure.Datasets(scratch, whole=any(c.kind == "local" for c in todo))
        live = deployment = local = None
        if pipeline:
            describe("starting the target")
            live, _ = resources.enter_context(open_target(target, capacity=peak))
            describe("deploying")
            deployment = deploy_mod.deploy(live, stack)
            describe("warm-up: starting the Lambda workers")
            _warm_up(live, stack, deployment, args.model, peak, batch)
        if any(c.kind == "local" for c in todo):
            describe("warm-up: the local worker")
            local = measure.LocalWorker(args.model)
            resources.callback(local.close)
            from inference.data import generate, save_partition

            save_partition(scratch / "warmup.pt", generate(batch, seed=args.seed))
            local.run(scratch / "warmup.pt", batch)  # unrecorded
        for index, config in enumerate(todo, 1):
            head = f"[{index}/{len(todo)}] {config.label()}"
            describe(f"{head}: data")
            parts, whole = data.get(config)
            row, loads, other = measure.base_row(config), [], OtherWork()
            if config.kind == "pipeline":
                if stack.max_concurrency != config.max_concurrency:
                    describe(f"{head}: redeploying (MaxConcurrency {config.max_concurrency})")
                    stack = replace(stack, max_concurrency=config.max_concurrency)
                    deployment = deploy_mod.deploy(live, stack)
                progress = Progress(stage=lambda text, h=head: describe(f"{h}: warm, {text}"), ranks=lambda done, total, h=head: describe(f"{h}: warm, ranks {done}/{total}"))
                row.update(threads=threads, **measure.warm_pipeline(live, stack, deployment, config, parts, args.out, progress))
            else:
                describe(f"{head}: warm")
                row.update(local.warm(config, whole) if local else {"status": "failed", "error": "no local worker"})
            loads.append(os.getloadavg()[0])
            if row.get("status") == "succeeded" and not args.no_cold:
                describe(f"{head}: cold (a fresh `cosmicai {'run' if config.kind == 'pipeline' else 'local'}` process)")
                cold = measure.cold_pipeline(config, parts, args.out, cold_args, stack, row["run_id"]) if config.kind == "pipeline" else measure.cold_local(config, whole)
                row.update(cold)
            rows = merge(rows, measure.finish_row(row, loads, other.cpus()))
            write_results(results, rows)
            advance()
    return rows


def _check_model(spec: str) -> None:
    from inference.naming import builtin_names, is_builtin

    if not is_builtin(spec) and not Path(spec).is_file():
        raise ValueError(f"--model {spec!r}: not a built-in model ({builtin_names()}) and no such checkpoint file")


def main(args: argparse.Namespace) -> int:
    from rich.console import (
        Console,  # not cosmicai.console: it imports torch and moto, which reports do not need
    )

    from cosmicai.targets import check_ready, resolve

    console = Console()
    results, report = args.out / "results.csv", args.out / "report.md"
    if args.report_only:
        written = write_report(read_results(results), args.out)
        console.print(f"redrew {', '.join(str(p) for p in written)}")
        return 0
    target = resolve(args.target, endpoint=args.endpoint, region=args.region)
    check_ready(target)
    rows = read_results(results) if results.exists() else []
    configs = plan(args, target.name)
    todo = pending(configs, rows)
    if todo:
        _check_model(args.model)
    console.print(f"{len(configs)} runs in the sweep: {len(configs) - len(todo)} already in {results}, {len(todo)} to measure")
    if not todo and report.is_file():
        console.print(f"nothing new: {report} is up to date ('--report-only' redraws it)")
        return 0
    started = time.perf_counter()
    if todo:
        rows = run_sweep(args, target, todo, rows, results)
        console.print(f"measured {len(todo)} rows in {(time.perf_counter() - started) / 60:.1f} minutes")
    keys = {c.key() for c in todo}
    failed = [r for r in rows if config_key(r) in keys and r.get("status") != "succeeded"]
    for row in failed:
        console.print(f"[red]failed[/]: {row['kind']} {row['partition_size']} x{row['world_size']} b{row['batch_size']} #{row['repeat']}: {row.get('error')}")
    if not any(row.get("status") == "succeeded" for row in rows):
        console.print(f"wrote {results}; no succeeded run to report")
        return 1
    written = write_report(rows, args.out)
    console.print(f"wrote {results}, {', '.join(str(p) for p in written)}")
    return 1 if failed else 0
