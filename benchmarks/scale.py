"""Scale: many ranks of tiny partitions through the embedded pipeline (default 1,200).

Prints the execution's wall time, the per-rank orchestration overhead and the
emulator process's peak RSS (this process hosts moto; workers are separate).
Per-rank overhead = (execution wall time x MaxConcurrency - sum of the ranks'
handler durations) / ranks: the time a rank costs beyond its own work.

Usage: python benchmarks/scale.py [--ranks 1200] [--samples-per-rank 4] [--max-concurrency 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

from cosmicai.deploy import Stack
from cosmicai.runs import Progress, RunRequest, execute_run, open_target
from cosmicai.targets import resolve
from inference.data import generate, split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=1200)
    parser.add_argument("--samples-per-rank", type=int, default=4)
    parser.add_argument("--max-concurrency", type=int, default=2)
    args = parser.parse_args()
    stack = Stack(name="cosmicai-scale", bucket="cosmicai-scale", infer_memory_mb=2048, max_concurrency=args.max_concurrency)
    last = [0.0]

    def ranks(done: int, total: int) -> None:
        if time.time() - last[0] > 10:
            last[0] = time.time()
            print(f"  {done}/{total} ranks done", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        parts = Path(tmp) / "parts"
        split(generate(args.ranks * args.samples_per_rank, seed=7), parts, partitions=args.ranks)
        started = time.perf_counter()
        with open_target(resolve("embedded"), capacity=args.max_concurrency) as (target, _):
            outcome = execute_run(target, stack, RunRequest(data=parts, model="tiny", batch_size=64), Path(tmp) / "out", Progress(stage=print, ranks=ranks))
            records = json.loads((outcome.out_dir / "combined_data.json").read_text())
        total = time.perf_counter() - started
    summary = outcome.summary
    wall = summary["wall_time_s"]
    busy = sum(r.get("lambda_duration_s") or 0.0 for r in records)
    overhead_ms = (wall * args.max_concurrency - busy) / args.ranks * 1000
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"status {summary['status']}: {summary['ranks_succeeded']}/{summary['world_size']} ranks summarized, {len(records)} records, {summary['samples_total']} samples")
    print(f"execution wall time     : {wall:.1f} s (whole command {total:.1f} s)")
    print(f"per-rank overhead       : {overhead_ms:.1f} ms (wall/rank {wall / args.ranks * 1000:.1f} ms, handler mean {busy / max(len(records), 1) * 1000:.1f} ms)")
    print(f"emulator peak RSS       : {peak_mb:.0f} MiB (this process: moto + orchestration)")


if __name__ == "__main__":
    main()
