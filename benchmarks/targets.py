"""The same small pipeline on the embedded target and on host-mode LocalStack, in one run.

For each engine: start-up (until it answers), deploy, the execution (wall time
from start to summary), the per-rank orchestration overhead (execution wall x
MaxConcurrency - the ranks' handler durations, over the ranks: what a rank costs
beyond its own work), and the stop. The data, model and stack are the same for both.

    python benchmarks/targets.py [--ranks 16] [--samples-per-rank 32] [--max-concurrency 2]

LocalStack needs a Python >= 3.13 (its venv is created once, see ``cosmicai localstack up``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from cosmicai.deploy import Stack, deploy
from cosmicai.runs import RunRequest, execute_run
from cosmicai.targets import resolve
from emulator import localstack_host
from emulator.embedded import EmbeddedEmulator, free_port
from inference.data import generate, split


def _embedded(capacity: int) -> tuple[str, Callable[[], None]]:
    emulator = EmbeddedEmulator(capacity=capacity).start()
    return emulator.endpoint_url, emulator.stop


def _localstack(capacity: int) -> tuple[str, Callable[[], None]]:
    port = free_port()
    state = localstack_host.start(port)
    return state["endpoint"], lambda: localstack_host.stop(port)


ENGINES: dict[str, Callable[[int], tuple[str, Callable[[], None]]]] = {"embedded": _embedded, "localstack": _localstack}


def measure(name: str, parts: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Start the engine, deploy, run once, stop; the figures of each step."""
    stack = Stack(name="cosmicai-bench", bucket="cosmicai-bench", infer_memory_mb=2048, max_concurrency=args.max_concurrency)
    t0 = time.perf_counter()
    endpoint, stop = ENGINES[name](args.max_concurrency)
    row: dict[str, Any] = {"target": name, "start_s": time.perf_counter() - t0}
    try:
        target = resolve(name, endpoint=endpoint)
        t0 = time.perf_counter()
        deployment = deploy(target, stack)
        row["deploy_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        outcome = execute_run(target, stack, RunRequest(data=parts, model="tiny", batch_size=64), out / name, deployment=deployment)
        row["run_s"] = time.perf_counter() - t0
        records = json.loads((outcome.out_dir / "combined_data.json").read_text())
        summary = outcome.summary or {}
        busy = sum(r.get("lambda_duration_s") or 0.0 for r in records)
        row.update(status=summary.get("status"), ranks=summary.get("ranks_succeeded"), execution_s=summary.get("wall_time_s"),
                   overhead_ms=((summary.get("wall_time_s") or 0.0) * args.max_concurrency - busy) / args.ranks * 1000)
    finally:
        t0 = time.perf_counter()
        stop()
        row["stop_s"] = time.perf_counter() - t0
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=16)
    parser.add_argument("--samples-per-rank", type=int, default=32)
    parser.add_argument("--max-concurrency", type=int, default=2)
    parser.add_argument("--targets", default="embedded,localstack")
    args = parser.parse_args()
    names = [n for n in args.targets.split(",") if n]
    with tempfile.TemporaryDirectory() as tmp:
        parts = Path(tmp) / "parts"
        split(generate(args.ranks * args.samples_per_rank, seed=7), parts, partitions=args.ranks)
        localstack_host.ensure_venv(progress=lambda message: print(f"  {message}", flush=True)) if "localstack" in names else None
        rows = [measure(name, parts, Path(tmp) / "out", args) for name in names]
    print(f"\n{args.ranks} ranks x {args.samples_per_rank} samples, model tiny, MaxConcurrency {args.max_concurrency}")
    print(f"{'target':12s} {'start s':>8s} {'deploy s':>9s} {'execution s':>12s} {'run s':>7s} {'overhead ms/rank':>17s} {'stop s':>7s}  status")
    for r in rows:
        print(f"{r['target']:12s} {r['start_s']:8.2f} {r.get('deploy_s', 0):9.2f} {r.get('execution_s') or 0:12.2f} {r.get('run_s', 0):7.2f} "
              f"{r.get('overhead_ms', 0):17.1f} {r['stop_s']:7.2f}  {r.get('status')} ({r.get('ranks')}/{args.ranks})")


if __name__ == "__main__":
    main()
