"""`cosmicai bench` and `cosmicai report` end to end on the embedded target, as subprocesses.

Each command runs in its own process: an embedded emulator is one per process
and this test session already runs one. The tiny `cosmicai run` whose folder
`cosmicai report` draws starts in the background (module fixture ``cli_run``)
while the sweep runs, to keep the module short. No wall-clock figure is asserted.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HANG_GUARD_S = 300  # only stops a hung command; not a speed requirement
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SWEEP = ["--model", "tiny", "--partition-sizes", "25MB", "--batch-sizes", "64,128", "--world-sizes", "2", "--scale", "0.01"]


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_", "COSMICAI_"))}
    env["COSMICAI_HOME"] = str(home)  # never pick up an emulator someone started with `emulator up`
    return env


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cosmicai.cli", *args], env=_env(cwd / "home"), cwd=cwd, capture_output=True, text=True, timeout=HANG_GUARD_S)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """A tiny `cosmicai run` (2 ranks) started in the background; yields (process, its run folder)."""
    cwd = tmp_path_factory.mktemp("cli-run")
    out = cwd / "run"
    args = ["run", "--model", "tiny", "--samples", "64", "--world-size", "2", "--out", str(out), "--json"]
    process = subprocess.Popen([sys.executable, "-m", "cosmicai.cli", *args], env=_env(cwd / "home"), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    yield process, out
    if process.poll() is None:
        process.kill()
    process.communicate()


def test_bench_sweep_writes_results_and_report_and_a_rerun_measures_nothing(tmp_path, cli_run):
    first = _cli("bench", *SWEEP, "--out", "sweep", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    sweep = tmp_path / "sweep"
    rows = _rows(sweep / "results.csv")
    assert sorted((r["kind"], r["batch_size"]) for r in rows) == [("local", "128"), ("local", "64"), ("pipeline", "128"), ("pipeline", "64")]
    for row in rows:
        assert row["status"] == "succeeded", row
        assert (row["partition_size"], row["scale"], row["world_size"], row["model"]) == ("25MB", "0.01", "2", "tiny")
        assert row["samples"] == "24"  # 2 partitions of floor(25 MiB x 0.01 / 20,520 B) = 12 samples
        for column in ("wall_time_s", "exec_time_mean_s", "exec_time_p95_s", "peak_memory_mib", "throughput_bps", "samples_per_s"):
            assert float(row[column]) > 0, (column, row)
    pipeline = [r for r in rows if r["kind"] == "pipeline"]
    assert all(r["target"] == "embedded" and float(r["cost_usd"]) > 0 and r["max_concurrency"] for r in pipeline)
    assert all(r["target"] == "local" and r["cost_usd"] == "" for r in rows if r["kind"] == "local")
    for row in pipeline:  # each pipeline run's folder, as `cosmicai run` writes it
        summary = json.loads((sweep / "runs" / row["run_id"] / "summary.json").read_text())
        assert summary["samples_total"] == 24 and summary["ranks_succeeded"] == 2
    report = (sweep / "report.md").read_text()
    assert "| Dataset | Batch Size | Input Partitions | Avg Time (s) | Memory (MB) | Throughput (bps) | Cost |" in report
    assert "| 25MB ×0.01 (Local) | 64 | 2 |" in report
    for name in ("time_vs_size.png", "time_vs_partitions.png", "cost_vs_size.png", "memory_throughput_vs_size.png"):
        assert _is_png(sweep / name), name

    again = _cli("bench", *SWEEP, "--out", "sweep", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 already in" in again.stdout and "0 to measure" in again.stdout
    assert _rows(sweep / "results.csv") == rows
    assert sorted(p.name for p in (sweep / "runs").iterdir()) == sorted(r["run_id"] for r in pipeline)


def test_cosmicai_report_draws_a_cli_runs_folder(tmp_path, cli_run):
    process, run_dir = cli_run
    stdout, stderr = process.communicate(timeout=HANG_GUARD_S)
    assert process.returncode == 0, stderr[-3000:]
    assert json.loads(stdout)["ranks_succeeded"] == 2
    drawn = _cli("report", str(run_dir), cwd=tmp_path)
    assert drawn.returncode == 0, drawn.stderr[-3000:]
    for name in ("timeline.png", "throughput.png", "memory.png"):
        assert _is_png(run_dir / name), name
    assert (run_dir / "summary.json").is_file()  # beside the run's summary
