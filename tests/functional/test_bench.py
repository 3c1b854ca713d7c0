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
SWEEP = ["--model", "tiny", "--partition-sizes", "25MB", "--batch-sizes", "64", "--world-sizes", "2", "--scale", "0.01", "--repeats", "2"]


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_", "COSMICAI_"))}
    env["COSMICAI_HOME"] = str(home)  # never pick up an emulator someone started with `emulator up`
    return env


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cosmicai.cli", *args], env=_env(cwd / "home"), cwd=cwd, capture_output=True, text=True, timeout=HANG_GUARD_S, check=False)


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


def test_bench_sweep_records_every_repeat_and_its_spread_and_a_rerun_measures_nothing(tmp_path, cli_run):
    first = _cli("bench", *SWEEP, "--out", "sweep", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    sweep = tmp_path / "sweep"
    written = _rows(sweep / "results.csv")
    runs = [r for r in written if r["stat"] == "run"]
    assert sorted((r["kind"], r["repeat"]) for r in runs) == [("local", "1"), ("local", "2"), ("pipeline", "1"), ("pipeline", "2")]
    for row in runs:
        assert row["status"] == "succeeded", row
        assert (row["partition_size"], row["scale"], row["world_size"], row["batch_size"], row["model"]) == ("25MB", "0.01", "2", "64", "tiny")
        assert row["samples"] == "24"  # 2 partitions of floor(25 MiB x 0.01 / 20,520 B) = 12 samples
        for column in ("cold_s", "warm_s", "exec_time_mean_s", "sample_time_ms", "peak_memory_mib", "throughput_bps", "samples_per_s", "load_avg_1m"):
            assert float(row[column]) > 0, (column, row)
        assert float(row["cold_s"]) > float(row["warm_s"])  # a fresh process costs more than the loop alone
        assert row["loaded"] in ("0", "1") and int(row["cores"]) >= 1
    for kind in ("pipeline", "local"):  # the spread of the repeats, per configuration
        stats = {r["stat"]: r for r in written if r["kind"] == kind and r["stat"] != "run"}
        assert set(stats) == {"median", "min", "max"} and all(r["runs"] == "2" for r in stats.values())
        for column in ("cold_s", "warm_s"):
            values = sorted(float(r[column]) for r in runs if r["kind"] == kind)
            assert [float(stats[s][column]) for s in ("min", "median", "max")] == pytest.approx([values[0], sum(values) / 2, values[1]])
    pipeline = [r for r in runs if r["kind"] == "pipeline"]
    assert all(r["target"] == "embedded" and float(r["cost_usd"]) > 0 and r["max_concurrency"] for r in pipeline)
    assert all(r["target"] == "local" and r["cost_usd"] == "" for r in runs if r["kind"] == "local")
    for row in pipeline:  # each pipeline run's folders, warm and cold, as `cosmicai run` writes them
        for run_id in (row["run_id"], row["run_id"] + "-cold"):
            summary = json.loads((sweep / "runs" / run_id / "summary.json").read_text())
            assert summary["samples_total"] == 24 and summary["ranks_succeeded"] == 2
    report = (sweep / "report.md").read_text()
    assert "| Dataset | Source | Batch Size | Input Partitions | Avg Time (s) | Memory (MB) | Throughput (bps) | Monthly Cost |" in report
    assert "| 25MB ×0.01 (Local)" in report and "| 25MB | reference (seed report: AWS Lambda) | 512 | High (~41) | 2.54 |" in report
    for name in ("time_vs_size.png", "time_vs_partitions.png", "memory.png", "throughput.png", "cost.png"):
        assert _is_png(sweep / name), name

    again = _cli("bench", *SWEEP, "--out", "sweep", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 already in" in again.stdout and "0 to measure" in again.stdout
    assert _rows(sweep / "results.csv") == written
    assert len(list((sweep / "runs").iterdir())) == 2 * len(pipeline)


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
