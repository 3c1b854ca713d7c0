"""`cosmicai bench`: the reference's performance study as one command, on any target.

A sweep is every combination of partition size P, world size W, batch size B
and repeat r. **The data set of (P, W) is W partitions of P each**, as in the
reference, where each of the world_size ranks read one 25/75/100 MB partition:
a partition holds ``n = max(1, floor(parse_size(P) x F / 20,520 B))`` samples
(F = ``--scale``, binary units: 25MB = 25 MiB = 1,277 samples at F = 1), the
data set ``W x n`` samples, and each pipeline rank infers exactly one
partition. Data are synthetic and deterministic (``--seed``).

Each configuration is measured twice (``kind``):

- ``pipeline``: one execution through the real pipeline (``execute_run``) on
  the target, one rank per partition, Map MaxConcurrency = ``--max-concurrency``
  (default: min(cores, W); on aws W). The target is opened once for the sweep
  (on aws: confirmed once, ``--yes``, and the image built once, as ``cosmicai
  run`` does); the stack is redeployed only when MaxConcurrency changes (it is
  deploy-time). Before the first measurement an unrecorded warm-up execution
  starts the Lambda workers, so no configuration carries their cold start.
- ``local``: the same W x n samples as one data file through
  ``inference.local.run_local`` (``cosmicai local``: the reference's "Local"
  row). One fresh process per data set runs its batch sizes and repeats in
  turn, after one unrecorded sample (as the warm-up does for the workers);
  its peak memory is that process's own, like a warm worker's.

Order: world size, then partition size (ascending); within a data set the
pipeline runs, then the local runs, each by batch size, then repeat. A
rerun with the same ``--out`` skips every configuration that already has a
succeeded row (keyed on ``bench_table.KEY_COLUMNS``); failed rows are measured
again and replaced; when nothing is left to measure, nothing is redrawn
(``--report-only`` redraws).

Artifacts in ``--out`` (default ``cosmicai-bench``): ``results.csv`` (one row
per run, rewritten atomically after each run),
``runs/<run_id>/`` (each pipeline run's folder as ``cosmicai run`` writes it:
draw one with ``cosmicai report``), and ``report.md`` (``cosmicai.study.results``)
with the PNG figures of ``cosmicai.study.plots``. The data sets live in a temporary
folder, one at a time.

Columns of ``results.csv`` and the report: ``cosmicai.study.results``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import secrets
import subprocess
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from cosmicai.argtypes import positive_int
from cosmicai.study.results import MIB, Config, config_key, merge, pending, read_results, write_results
from cosmicai.study.tables import write_report
from inference.naming import SAMPLE_BYTES, parse_size
from inference.records import utc_now

LOCAL_TIMEOUT_S = 24 * 3600  # only stops a hung baseline


# -- the sweep -------------------------------------------------------------------------


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
    parser.add_argument("--partition-sizes", type=_list(_size), default=["25MB", "50MB", "75MB", "100MB"],
                        help="nominal partition sizes, binary units (default 25MB,50MB,75MB,100MB)")
    parser.add_argument("--batch-sizes", type=_list(positive_int), default=[32, 128, 256, 512], help="default 32,128,256,512")
    parser.add_argument("--world-sizes", type=_list(positive_int), default=[1, 2, 4],
                        help="partitions in the data set = ranks (default 1,2,4; the reference used 41)")
    parser.add_argument("--repeats", type=positive_int, default=1, help="runs of each configuration (default 1)")
    parser.add_argument("--scale", type=_scale, default=0.05, help="data shrink factor: samples per partition = size x F / 20,520 B (default 0.05; 1 = full size)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data")
    parser.add_argument("--model", default="tiny", help="tiny (default), full (the reference's network) or a checkpoint file")
    parser.add_argument("--memory", type=positive_int, default=3008, help="Infer function MemorySize in MB (enforced on RSS; priced in the cost)")
    parser.add_argument("--timeout", type=positive_int, default=900, help="Infer function Timeout in seconds")
    parser.add_argument("--max-concurrency", type=positive_int, default=None, help="Map MaxConcurrency (default: min(cores, world size); aws: world size)")
    parser.add_argument("--no-local", action="store_true", help="skip the local single-process baseline")
    parser.add_argument("--stack", default="cosmicai-bench", help="name prefix of the deployed resources")
    parser.add_argument("--bucket", default="cosmicai-bench", help="the S3 bucket the sweep uses")
    parser.add_argument("--out", type=Path, default=Path("cosmicai-bench"), help="results.csv, report.md, figures and runs/ (default cosmicai-bench)")
    parser.add_argument("--report-only", action="store_true", help="redraw report.md and the figures from an existing results.csv")


def plan(args: argparse.Namespace, target_name: str) -> list[Config]:
    """Every configuration of the sweep, in the order they run (per data set: pipeline runs, then local runs)."""
    configs = []
    for world in sorted(args.world_sizes):
        concurrency = args.max_concurrency or (world if target_name == "aws" else max(1, min(os.cpu_count() or 1, world)))
        for size in sorted(args.partition_sizes, key=parse_size):
            common = [
                dict(model=args.model, partition_size=size, scale=args.scale, seed=args.seed, world_size=world, batch_size=batch, repeat=repeat)
                for batch in sorted(args.batch_sizes)
                for repeat in range(1, args.repeats + 1)
            ]
            configs += [Config(target=target_name, kind="pipeline", memory_mb=args.memory, max_concurrency=concurrency, **c) for c in common]
            if not args.no_local:
                configs += [Config(target="local", kind="local", memory_mb=None, max_concurrency=None, **c) for c in common]
    return configs


class Datasets:
    """The current data set on disk: ``parts/1.pt..W.pt``, ``all.pt`` (the same samples in one file), ``warm.pt`` (its first sample)."""

    def __init__(self, root: Path, whole: bool = True) -> None:
        self.root = root
        self.whole = whole  # write all.pt and warm.pt (only the local baseline reads them)
        self.current: tuple | None = None

    def get(self, config: Config) -> tuple[Path, Path, Path]:
        from inference.data import generate, save_partition, split

        folder = self.root / "data"
        parts, whole, warm = folder / "parts", folder / "all.pt", folder / "warm.pt"
        if self.current != config.dataset:
            tensors = generate(config.samples, seed=config.seed)
            split(tensors, parts, partitions=config.world_size)
            if self.whole:
                save_partition(whole, tensors)
                save_partition(warm, {k: v[:1] for k, v in tensors.items()})
            self.current = config.dataset
        return parts, whole, warm


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def _base_row(config: Config) -> dict[str, Any]:
    row = asdict(config)
    row.update(samples=config.samples, samples_per_partition=config.samples_per_partition,
               data_mib=config.samples_per_partition * SAMPLE_BYTES / MIB, load_avg_1m=os.getloadavg()[0], measured_at=utc_now())
    return row


def measure_pipeline(live: Any, stack: Any, deployment: Any, config: Config, parts: Path, out: Path, progress: Any) -> dict[str, Any]:
    """One execution through the pipeline; its row (the run's folder goes to out/runs/<run_id>)."""
    from cosmicai.runs import RunRequest, execute_run

    run_id = f"bench-{_slug(config.partition_size)}-w{config.world_size}-b{config.batch_size}-r{config.repeat}-{secrets.token_hex(3)}"
    request = RunRequest(data=parts, batch_size=config.batch_size, max_concurrency=config.max_concurrency, model=config.model, run_id=run_id)
    outcome = execute_run(live, stack, request, out / "runs" / run_id, progress, deployment=deployment)
    row = {**_base_row(config), "run_id": run_id}
    summary = outcome.summary
    if summary is None:
        execution = outcome.execution
        return {**row, "status": "failed", "error": f"no summary: {execution.error if execution else 'FAILED'}"}
    combined = outcome.out_dir / "combined_data.json"
    records = [r for r in (json.loads(combined.read_text()) if combined.exists() else []) if r.get("status") == "succeeded"]
    failed = summary["ranks_failed"]
    row.update(
        status="succeeded" if outcome.exit_code == 0 else "failed",
        error="; ".join(f"rank {f['rank']}: {f['error']['type']}" for f in failed)[:300] or None,
        samples=summary["samples_total"],
        wall_time_s=summary["wall_time_s"],
        cpu_time_s=sum(r.get("total_cpu_time (seconds)") or 0.0 for r in records),
        exec_time_mean_s=summary["execution_time_mean_s"],
        exec_time_p95_s=summary["execution_time_p95_s"],
        peak_memory_mib=summary["peak_rss_mb_max"],
        rss_mib=max((r.get("total_cpu_memory (MB)") or 0.0 for r in records), default=None),
        throughput_bps=summary["throughput_bps"],
        loop_throughput_bps=summary["throughput_bps_sum"],
        samples_per_s=summary["sample_persec"],
        cost_usd=summary["cost_usd"]["total"],
    )
    return row


def measure_local(configs: Sequence[Config], whole: Path, warm: Path) -> Iterator[dict[str, Any]]:
    """The local baseline of one data set: one fresh process runs ``inference.local.run_local`` over
    ``whole`` for each configuration in turn (after one unrecorded sample from ``warm``); yields rows."""
    model = configs[0].model
    command = [sys.executable, "-m", "cosmicai.study.bench", str(whole), str(warm), model, ",".join(str(c.batch_size) for c in configs)]
    with tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
        try:
            for config in configs:
                line = process.stdout.readline() if process.stdout else ""
                if not line:
                    process.wait(timeout=LOCAL_TIMEOUT_S)
                    stderr.seek(0)
                    lines = stderr.read().strip().splitlines()
                    error = (lines[-1] if lines else f"local process ended with exit code {process.returncode}")[:300]
                    yield {**_local_base(config), "status": "failed", "error": error}
                    continue
                yield _local_row(config, json.loads(line))
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()


def _local_base(config: Config) -> dict[str, Any]:
    return {**_base_row(config), "run_id": f"local-{_slug(config.partition_size)}-w{config.world_size}-b{config.batch_size}-r{config.repeat}"}


def _local_row(config: Config, record: dict[str, Any]) -> dict[str, Any]:
    wall = (record.get("load_time_s") or 0.0) + record["wall_time_s"]
    samples = record["num_samples"]
    return {
        **_local_base(config),
        "status": "succeeded",
        "samples": samples,
        "wall_time_s": wall,
        "cpu_time_s": record["total_cpu_time (seconds)"],
        "exec_time_mean_s": record["execution_time (seconds/batch)"],
        "exec_time_p95_s": record["execution_time (seconds/batch)"],
        "peak_memory_mib": record["peak_rss_mb"],
        "rss_mib": record["total_cpu_memory (MB)"],
        "throughput_bps": samples * SAMPLE_BYTES * 8 / wall if wall else None,
        "loop_throughput_bps": record["throughput_bps"],
        "samples_per_s": samples / wall if wall else None,
        "cost_usd": None,
    }


def local_worker(argv: Sequence[str]) -> int:
    """``python -m cosmicai.study.bench ALL.pt WARM.pt MODEL B1,B2,..``: one JSON record per batch size on stdout."""
    from inference.local import run_local

    whole, warm, model, batches = argv
    run_local(warm, batch_size=1, model=model)  # unrecorded: one-time initialization, as the warm-up does for the workers
    for batch in batches.split(","):
        sys.stdout.write(json.dumps(run_local(whole, batch_size=int(batch), model=model)) + "\n")
        sys.stdout.flush()
    return 0


@contextlib.contextmanager
def sweep_bar(total: int) -> Iterator[tuple[Callable[[str], None], Callable[[], None]]]:
    """One rich progress bar over the whole sweep: (describe(text), advance())."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from cosmicai.console import err

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err) as bar:
        task = bar.add_task("starting", total=total)
        yield (lambda text: bar.update(task, description=text)), (lambda: bar.advance(task))


def _warm_up(live: Any, stack: Any, deployment: Any, model: str, workers: int, describe: Callable[[str], None]) -> None:
    """An unrecorded execution with one rank per worker: starts the Lambda workers and loads the model."""
    from cosmicai.runs import Progress, RunRequest, execute_run

    describe("warm-up: starting the Lambda workers")
    request = RunRequest(samples=workers, world_size=workers, batch_size=1, model=model, run_id=f"bench-warmup-{secrets.token_hex(3)}")
    with tempfile.TemporaryDirectory(prefix="cosmicai-warmup-") as tmp:
        execute_run(live, stack, request, Path(tmp), Progress(), deployment=deployment)


def run_sweep(args: argparse.Namespace, target: Any, todo: list[Config], rows: list[dict[str, Any]], results: Path) -> list[dict[str, Any]]:
    """Measure every configuration in ``todo`` on ``target``, saving results.csv after each; return all rows."""
    from cosmicai import deploy as deploy_mod
    from cosmicai.runs import Progress, open_target

    pipeline = [c for c in todo if c.kind == "pipeline"]
    peak = max((c.max_concurrency or 1 for c in pipeline), default=1)
    stack = deploy_mod.Stack(name=args.stack, bucket=args.bucket, infer_memory_mb=args.memory, infer_timeout_s=args.timeout, max_concurrency=peak)
    if pipeline and target.name == "aws":  # as `cosmicai run` does: confirm, then the image and the vendored zip
        from cosmicai import aws
        from cosmicai.console import err

        err.print(f"cosmicai bench: {len(pipeline)} executions on AWS, the largest as estimated below")
        stack = aws.prepare_stack(target, stack, yes=args.yes, image_uri=args.image_uri, show=err.print,
                                  world_size=max(c.world_size for c in pipeline), samples_per_rank=max(c.samples_per_partition for c in pipeline))
    with contextlib.ExitStack() as resources, sweep_bar(len(todo)) as (describe, advance):
        scratch = Path(resources.enter_context(tempfile.TemporaryDirectory(prefix="cosmicai-bench-")))
        datasets = Datasets(scratch, whole=any(c.kind == "local" for c in todo))
        live = deployment = None

        def _pipeline(config: Config, index: int, parts: Path) -> dict[str, Any]:
            nonlocal stack, deployment
            head = f"[{index}/{len(todo)}] {config.label()}"
            if stack.max_concurrency != config.max_concurrency:
                describe(f"{head}: redeploying (MaxConcurrency {config.max_concurrency})")
                stack = replace(stack, max_concurrency=config.max_concurrency)
                deployment = deploy_mod.deploy(live, stack)
            progress = Progress(stage=lambda text: describe(f"{head}: {text}"), ranks=lambda done, total: describe(f"{head}: ranks {done}/{total}"))
            return measure_pipeline(live, stack, deployment, config, parts, args.out, progress)

        if pipeline:
            describe("starting the target")
            live, _ = resources.enter_context(open_target(target, capacity=peak))
            describe("deploying")
            deployment = deploy_mod.deploy(live, stack)
            _warm_up(live, stack, deployment, args.model, peak, describe)
        done = 0
        for (kind, _), group in itertools.groupby(todo, key=lambda c: (c.kind, c.dataset)):
            group, first = list(group), done + 1
            describe(f"[{first}/{len(todo)}] {group[0].label()}: data")
            parts, whole, warm = datasets.get(group[0])
            if kind == "local":
                describe(f"[{first}-{first + len(group) - 1}/{len(todo)}] local {group[0].partition_size} x{group[0].world_size}: one process, {len(group)} runs")
                measured: Iterable[dict[str, Any]] = measure_local(group, whole, warm)
            else:
                measured = (_pipeline(config, first + i, parts) for i, config in enumerate(group))
            for row in measured:
                rows = merge(rows, {**row, "measured_at": utc_now()})
                write_results(results, rows)
                done += 1
                advance()
    return rows


def _check_model(spec: str) -> None:
    from inference.model import builtin_names, is_builtin

    if not is_builtin(spec) and not Path(spec).is_file():
        raise ValueError(f"--model {spec!r}: not a built-in model ({builtin_names()}) and no such checkpoint file")


def main(args: argparse.Namespace) -> int:
    from rich.console import Console  # not cosmicai.console: it imports torch and moto, which reports do not need

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
    if todo:
        rows = run_sweep(args, target, todo, rows, results)
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


if __name__ == "__main__":
    raise SystemExit(local_worker(sys.argv[1:]))
