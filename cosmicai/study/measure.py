"""The sweep's measurements: one configuration's row, its warm figure and its cold figure, pipeline or local.

Both kinds are measured with the same two definitions (columns in ``cosmicai.study.results``):

- **warm** (``warm_s``): the inference loop alone. Pipeline: one execution on
  the bench's already running target, whose Lambda workers are warm; from the
  first rank's loop start to the last rank's loop end. Local: ``run_local`` in
  one long-lived process (``LocalWorker``) that has run a warm-up already.
- **cold** (``cold_s``): a fresh process, as a user feels it: the wall time of
  ``cosmicai run --data PARTS`` (pipeline: the command starts its own emulator
  on the embedded target, deploys, starts cold workers, runs, fetches) or of
  ``cosmicai local --data ALL.pt`` (local), each a new ``python -m
  cosmicai.cli`` process. Peak memory comes from this run: fresh processes,
  whose peak is this run's alone.

Artifacts: each pipeline run's folder under ``<out>/runs/<run_id>`` (the cold
one's id ends in ``-cold``), as ``cosmicai run`` writes it. ``Datasets`` writes
the current data set into a temporary folder: ``parts/1.pt..W.pt`` and
``all.pt`` (the same samples in one file).
``python -m cosmicai.study.measure MODEL`` is the local worker: it reads
``PATH BATCH`` lines and answers each with ``run_local``'s record as one JSON line.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cosmicai.study.results import MIB, Config, cpu_name, is_loaded, machine_load
from inference.naming import SAMPLE_BYTES
from inference.records import utc_now

HANG_GUARD_S = 24 * 3600  # only stops a hung process
SAMPLE_BITS = SAMPLE_BYTES * 8


class Datasets:
    """The current data set on disk: ``parts/1.pt..W.pt`` and ``all.pt`` (the same samples in one file)."""

    def __init__(self, root: Path, whole: bool = True) -> None:
        self.root = root
        self.whole = whole  # write all.pt (only the local baseline reads it)
        self.current: tuple | None = None

    def get(self, config: Config) -> tuple[Path, Path]:
        from inference.data import generate, save_partition, split

        folder = self.root / "data"
        parts, whole = folder / "parts", folder / "all.pt"
        if self.current != config.dataset:
            tensors = generate(config.samples, seed=config.seed)
            split(tensors, parts, partitions=config.world_size)
            if self.whole:
                save_partition(whole, tensors)
            self.current = config.dataset
        return parts, whole


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def run_id(config: Config) -> str:
    return f"bench-{config.kind}-{_slug(config.partition_size)}-w{config.world_size}-b{config.batch_size}-r{config.repeat}-{secrets.token_hex(3)}"


def base_row(config: Config) -> dict[str, Any]:
    row = asdict(config)
    row.update(stat="run", samples=config.samples, samples_per_partition=config.samples_per_partition,
               data_mib=config.samples_per_partition * SAMPLE_BYTES / MIB)
    return row


def finish_row(row: dict[str, Any], loads: Sequence[float], other_cpu: float | None = None) -> dict[str, Any]:
    """The row with the highest load average seen after its runs, other processes' CPU use during them
    (``results.OtherWork``), the core count, the flag and the time."""
    load, cores = machine_load()
    load = max([load, *loads])
    return {**row, "load_avg_1m": load, "other_cpu": other_cpu, "cores": cores, "cpu": cpu_name(),
            "loaded": int(is_loaded(load, cores, other_cpu)), "measured_at": utc_now()}


def _rates(samples: int, warm_s: float | None) -> dict[str, Any]:
    if not warm_s:
        return {"throughput_bps": None, "samples_per_s": None}
    return {"throughput_bps": samples * SAMPLE_BITS / warm_s, "samples_per_s": samples / warm_s}


def _seconds(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def loop_span(records: Sequence[dict[str, Any]]) -> float | None:
    """First loop start to last loop end over the ranks (at least the longest loop: timestamps are in ms)."""
    if not records:
        return None
    longest = max(r.get("wall_time_s") or 0.0 for r in records)
    try:
        span = max(_seconds(r["finished_at"]) for r in records) - min(_seconds(r["started_at"]) for r in records)
    except (KeyError, ValueError, AttributeError):
        return longest
    return max(span, longest)


def sample_time_ms(records: Sequence[dict[str, Any]]) -> float | None:
    times = [1000 * r["wall_time_s"] / r["num_samples"] for r in records if r.get("num_samples") and r.get("wall_time_s")]
    return sum(times) / len(times) if times else None


# -- pipeline ----------------------------------------------------------------------------------


def warm_pipeline(live: Any, stack: Any, deployment: Any, config: Config, parts: Path, out: Path, progress: Any) -> dict[str, Any]:
    """One execution on the bench's target (warm workers); the row's warm figures, or status failed."""
    from cosmicai.runs import RunRequest, execute_run

    rid = run_id(config)
    request = RunRequest(data=parts, batch_size=config.batch_size, max_concurrency=config.max_concurrency, model=config.model, run_id=rid)
    outcome = execute_run(live, stack, request, out / "runs" / rid, progress, deployment=deployment)
    summary = outcome.summary
    if summary is None:
        execution = outcome.execution
        return {"run_id": rid, "status": "failed", "error": f"warm run: no summary: {execution.error if execution else 'FAILED'}"}
    combined = outcome.out_dir / "combined_data.json"
    records = [r for r in (json.loads(combined.read_text()) if combined.exists() else []) if r.get("status") == "succeeded"]
    failed = summary["ranks_failed"]
    warm = loop_span(records)
    return {
        "run_id": rid,
        "status": "succeeded" if outcome.exit_code == 0 else "failed",
        "error": ("warm run: " + "; ".join(f"rank {f['rank']}: {f['error']['type']}" for f in failed))[:300] if failed else None,
        "samples": summary["samples_total"],
        "warm_s": warm,
        "execution_s": summary["wall_time_s"],
        "cpu_time_s": sum(r.get("total_cpu_time (seconds)") or 0.0 for r in records),
        "exec_time_mean_s": summary["execution_time_mean_s"],
        "exec_time_p95_s": summary["execution_time_p95_s"],
        "sample_time_ms": sample_time_ms(records),
        "peak_memory_mib": summary["peak_rss_mb_max"],
        "rss_mib": max((r.get("total_cpu_memory (MB)") or 0.0 for r in records), default=None),
        "cost_usd": summary["cost_usd"]["total"],
        **_rates(summary["samples_total"], warm),
    }


def _cli(argv: Sequence[str]) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``python -m cosmicai.cli ARGV`` as a fresh process; (its wall time, the finished process)."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cosmicai.cli", *argv], capture_output=True, text=True, timeout=HANG_GUARD_S, check=False)
    return time.perf_counter() - started, done


def _failure(what: str, done: subprocess.CompletedProcess) -> dict[str, Any]:
    lines = (done.stderr or "").strip().splitlines()
    return {"status": "failed", "error": f"{what}: {lines[-1] if lines else f'exit code {done.returncode}'}"[:300]}


def cold_pipeline(config: Config, parts: Path, out: Path, target_args: Sequence[str], stack: Any, warm_id: str) -> dict[str, Any]:
    """``cosmicai run`` over the same partitions in a fresh process (its folder: ``runs/<warm_id>-cold``): the row's cold figures."""
    rid = f"{warm_id}-cold"
    argv = ["run", "--data", str(parts), "--batch-size", str(config.batch_size), "--model", config.model,
            "--max-concurrency", str(config.max_concurrency), "--memory", str(stack.infer_memory_mb), "--timeout", str(stack.infer_timeout_s),
            "--stack", f"{stack.name}-cold", "--bucket", stack.bucket, "--run-id", rid, "--out", str(out / "runs" / rid), "--json", *target_args]
    seconds, done = _cli(argv)
    if done.returncode != 0:
        return _failure("cold run", done)
    summary = json.loads(done.stdout)
    return {"cold_s": seconds, "peak_memory_mib": summary.get("peak_rss_mb_max")}


# -- local -------------------------------------------------------------------------------------


def _local_fields(record: dict[str, Any]) -> dict[str, Any]:
    samples, warm = record["num_samples"], record["wall_time_s"]
    return {
        "status": "succeeded",
        "error": None,
        "samples": samples,
        "threads": record.get("threads"),
        "warm_s": warm,
        "execution_s": (record.get("load_time_s") or 0.0) + warm,
        "cpu_time_s": record["total_cpu_time (seconds)"],
        "exec_time_mean_s": record["execution_time (seconds/batch)"],
        "exec_time_p95_s": record["execution_time (seconds/batch)"],
        "sample_time_ms": 1000 * warm / samples if samples else None,
        "peak_memory_mib": record["peak_rss_mb"],
        "rss_mib": record["total_cpu_memory (MB)"],
        "cost_usd": None,
        **_rates(samples, warm),
    }


class LocalWorker:
    """One long-lived local process (``python -m cosmicai.study.measure MODEL``): warm runs of ``run_local``."""

    def __init__(self, model: str) -> None:
        self.model = model
        self._stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 (the worker's stderr, open while it lives; closed by close())
        self.process = subprocess.Popen([sys.executable, "-m", "cosmicai.study.measure", model], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=self._stderr, text=True)

    def run(self, path: Path, batch_size: int) -> dict[str, Any]:
        """``run_local``'s record of one request; RuntimeError with the worker's last error line when it died."""
        assert self.process.stdin and self.process.stdout
        try:
            self.process.stdin.write(f"{path}\t{batch_size}\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            self.process.wait(timeout=HANG_GUARD_S)
            self._stderr.seek(0)
            lines = self._stderr.read().strip().splitlines()
            raise RuntimeError(lines[-1] if lines else f"local worker ended with exit code {self.process.returncode}")
        return json.loads(line)

    def warm(self, config: Config, whole: Path) -> dict[str, Any]:
        try:
            rid = f"local-{_slug(config.partition_size)}-w{config.world_size}-b{config.batch_size}-r{config.repeat}"
            return {"run_id": rid, **_local_fields(self.run(whole, config.batch_size))}
        except RuntimeError as exc:
            return {"status": "failed", "error": f"warm run: {exc}"[:300]}

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stderr.close()


def cold_local(config: Config, whole: Path) -> dict[str, Any]:
    """``cosmicai local`` over the same samples in a fresh process: the row's cold figures."""
    seconds, done = _cli(["local", "--data", str(whole), "--batch-size", str(config.batch_size), "--model", config.model, "--json"])
    if done.returncode != 0:
        return _failure("cold run", done)
    record = json.loads(done.stdout)
    return {"cold_s": seconds, "peak_memory_mib": record.get("peak_rss_mb")}


def worker(argv: Sequence[str]) -> int:
    """The local worker's loop: ``PATH<TAB>BATCH`` on stdin, one JSON record per line on stdout."""
    from inference.local import run_local

    (model,) = argv
    for line in sys.stdin:
        path, batch = line.rstrip("\n").split("\t")
        sys.stdout.write(json.dumps(run_local(path, batch_size=int(batch), model=model)) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(worker(sys.argv[1:]))
