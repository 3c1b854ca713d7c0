"""The benchmark's results table, its resume logic and its report; one run's figures.

Everything here is drawn from hand-made data (a results table, a run folder) or
from ``tests/data/bench-results.csv``, a small sweep recorded with
``cosmicai bench --model tiny --partition-sizes 25MB,50MB --batch-sizes 64,256
--world-sizes 1,2 --scale 0.01`` on the embedded target.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from cosmicai.study import bench, tables, results as bench_table
from cosmicai.cli import build_parser, main
from cosmicai.study.report import load_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RECORDED = Path(__file__).resolve().parents[1] / "data" / "bench-results.csv"
REFERENCE_HEADER = "| Dataset | Batch Size | Input Partitions | Avg Time (s) | Memory (MB) | Throughput (bps) | Cost |"
BENCH_FIGURES = ("time_vs_size.png", "time_vs_partitions.png", "cost_vs_size.png", "memory_throughput_vs_size.png")


def bench_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["bench", *argv])


def row(kind: str = "pipeline", size: str = "25MB", world: int = 2, batch: int = 128, repeat: int = 1, status: str = "succeeded", wall: float = 2.0) -> dict:
    """One results.csv row with plausible figures: larger data and more ranks take longer."""
    config = bench_table.Config(
        target="embedded" if kind == "pipeline" else "local", kind=kind, model="tiny", partition_size=size, scale=0.05, seed=0,
        world_size=world, batch_size=batch, repeat=repeat, memory_mb=3008 if kind == "pipeline" else None,
        max_concurrency=min(2, world) if kind == "pipeline" else None,
    )
    samples = config.samples
    return {
        **bench._base_row(config),
        "run_id": f"{kind}-{size}-{world}-{batch}-{repeat}",
        "status": status,
        "error": None if status == "succeeded" else "rank 1: PartitionError",
        "wall_time_s": wall,
        "cpu_time_s": wall * 0.8,
        "exec_time_mean_s": 0.02 * batch / 32,
        "exec_time_p95_s": 0.025 * batch / 32,
        "peak_memory_mib": 450.0 + samples / 10,
        "rss_mib": 300.0,
        "throughput_bps": samples * 20_520 * 8 / wall,
        "loop_throughput_bps": samples * 20_520 * 8 / wall * 3,
        "samples_per_s": samples / wall,
        "cost_usd": 0.0002 * world if kind == "pipeline" else None,
    }


@pytest.fixture()
def table() -> list[dict]:
    rows = []
    for world in (1, 2, 4):
        for size, scale in (("25MB", 1.0), ("50MB", 1.6), ("100MB", 2.9)):
            for batch in (32, 512):
                rows.append(row("pipeline", size, world, batch, wall=1.0 + scale * world / 2))
                rows.append(row("local", size, world, batch, wall=0.5 + scale * world))
    rows.append(row("pipeline", "25MB", 1, 32, repeat=2, wall=3.0))  # averaged with repeat 1 (wall 1.5)
    rows.append(row("pipeline", "100MB", 4, 512, repeat=2, status="failed", wall=99.0))  # left out
    return rows


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


# -- results.csv ---------------------------------------------------------------------


def test_samples_per_partition_follow_the_reference_sizes():
    assert bench_table.samples_per_partition("25MB", 1.0) == 1277  # 25 MiB / 20,520 B
    assert bench_table.samples_per_partition("100MB", 1.0) == 5110
    assert bench_table.samples_per_partition("25MB", 0.05) == 63
    assert bench_table.samples_per_partition("25MB", 1e-6) == 1  # at least one sample


def test_csv_round_trip_keeps_columns_and_types(tmp_path, table):
    path = tmp_path / "results.csv"
    bench_table.write_results(path, table)
    assert path.read_text().splitlines()[0].split(",") == list(bench_table.COLUMNS)
    back = bench_table.read_results(path)
    assert len(back) == len(table)
    first = back[0]
    assert isinstance(first["world_size"], int) and isinstance(first["scale"], float) and isinstance(first["wall_time_s"], float)
    assert back[1]["memory_mb"] is None and back[1]["cost_usd"] is None  # local rows: no MemorySize, no AWS cost
    assert first["samples"] == 63 and first["data_mib"] == pytest.approx(63 * 20_520 / 2**20)


def test_read_results_rejects_a_missing_or_foreign_file(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        bench_table.read_results(tmp_path / "results.csv")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a cosmicai bench results.csv"):
        bench_table.read_results(tmp_path / "other.csv")


# -- resume: skip what is measured ---------------------------------------------------------


def test_plan_covers_every_configuration_in_order():
    args = bench_args("--partition-sizes", "50MB,25MB", "--batch-sizes", "128,64", "--world-sizes", "2,1", "--repeats", "2")
    configs = bench.plan(args, "embedded")
    assert len(configs) == 2 * 2 * 2 * 2 * 2  # sizes x batches x worlds x repeats x kinds
    assert [c.world_size for c in configs[:16]] == [1] * 16
    first = configs[:8]  # data set (25MB, world 1): pipeline runs, then local runs, by batch then repeat
    assert [(c.kind, c.partition_size, c.batch_size, c.repeat) for c in first] == [
        ("pipeline", "25MB", 64, 1), ("pipeline", "25MB", 64, 2), ("pipeline", "25MB", 128, 1), ("pipeline", "25MB", 128, 2),
        ("local", "25MB", 64, 1), ("local", "25MB", 64, 2), ("local", "25MB", 128, 1), ("local", "25MB", 128, 2),
    ]
    assert {c.target for c in configs if c.kind == "local"} == {"local"}
    assert all(c.scale == 0.05 and c.model == "tiny" for c in configs)  # the defaults
    assert len(bench.plan(bench_args("--no-local", "--world-sizes", "2"), "embedded")) == 4 * 4


def test_rerun_skips_configurations_already_measured(tmp_path):
    args = bench_args("--partition-sizes", "25MB", "--batch-sizes", "64,128", "--world-sizes", "2")
    configs = bench.plan(args, "embedded")
    assert len(configs) == 4
    path = tmp_path / "results.csv"
    bench_table.write_results(path, [row("pipeline", "25MB", 2, 64), row("local", "25MB", 2, 64)])
    todo = bench_table.pending(configs, bench_table.read_results(path))  # read back: keys compare as written to CSV
    assert [(c.kind, c.batch_size) for c in todo] == [("pipeline", 128), ("local", 128)]


def test_the_key_is_the_configuration_normalized():
    measured = [{**row("pipeline", "25MB", 2, 64), "partition_size": "25MiB", "scale": "0.05", "world_size": "2"}]
    same = bench_table.Config("embedded", "pipeline", "tiny", "25MB", 0.05, 0, 2, 64, 1, 3008, 2)
    assert bench_table.pending([same], measured) == []
    for changed in (
        dict(batch_size=128), dict(world_size=4), dict(scale=0.1), dict(model="full"), dict(repeat=2),
        dict(memory_mb=8192), dict(max_concurrency=1), dict(seed=1), dict(target="localstack"), dict(partition_size="50MB"),
    ):
        other = bench_table.Config(**{**same.__dict__, **changed})
        assert bench_table.pending([other], measured) == [other], changed


def test_failed_rows_are_measured_again_and_replaced():
    failed = row("pipeline", "25MB", 2, 64, status="failed")
    config = bench_table.Config("embedded", "pipeline", "tiny", "25MB", 0.05, 0, 2, 64, 1, 3008, 2)
    assert bench_table.pending([config], [failed]) == [config]
    rows = bench_table.merge([failed, row("local", "25MB", 2, 64)], {**failed, "status": "succeeded", "run_id": "again"})
    assert [(r["kind"], r["status"], r["run_id"]) for r in rows] == [("local", "succeeded", "local-25MB-2-64-1"), ("pipeline", "succeeded", "again")]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--batch-sizes", "0"], "--batch-sizes"),
        (["--partition-sizes", "25XB"], "--partition-sizes"),
        (["--partition-sizes", "1KB"], "smaller than one sample"),
        (["--scale", "0"], "--scale"),
        (["--world-sizes", ""], "--world-sizes"),
    ],
)
def test_bad_sweep_options_exit_2_with_one_line(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_report_only_without_results_exits_2(tmp_path, capsys):
    assert main(["bench", "--report-only", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "results.csv: no such file" in err[0]


# -- report.md and the figures ------------------------------------------------------------


def test_aggregate_averages_repeats_and_leaves_out_failures(table):
    aggregated = bench_table.aggregate(table)
    assert len(aggregated) == 36  # 3 worlds x 3 sizes x 2 batches x 2 kinds
    first = next(r for r in aggregated if r["kind"] == "pipeline" and r["partition_size"] == "25MB" and r["world_size"] == 1 and r["batch_size"] == 32)
    assert first["runs"] == 2 and first["wall_time_s"] == pytest.approx((1.5 + 3.0) / 2)
    failed_twin = next(r for r in aggregated if r["kind"] == "pipeline" and r["partition_size"] == "100MB" and r["world_size"] == 4 and r["batch_size"] == 512)
    assert failed_twin["runs"] == 1 and failed_twin["wall_time_s"] != 99.0


def test_bench_report_writes_the_reference_table_with_units_and_pngs(tmp_path, table):
    bench_table.write_results(tmp_path / "results.csv", table)
    written = tables.write_report(bench_table.read_results(tmp_path / "results.csv"), tmp_path)
    assert [p.name for p in written] == ["report.md", *BENCH_FIGURES]
    assert all(is_png(tmp_path / name) for name in BENCH_FIGURES)
    report = (tmp_path / "report.md").read_text()
    assert REFERENCE_HEADER in report
    assert "| 25MB ×0.05 | 32 | 1 |" in report and "| 100MB ×0.05 (Local) | 512 | 4 |" in report
    for unit in ("MiB", "2^20", "**bits** per second", "**wall-clock**", "Not CPU time", "USD"):
        assert unit in report, unit
    for name in BENCH_FIGURES:
        assert f"]({name})" in report
    assert "(1 failed, left out below)" in report


def test_report_renders_from_the_recorded_sweep(tmp_path):
    rows = bench_table.read_results(RECORDED)
    assert {r["kind"] for r in rows} == {"pipeline", "local"} and all(r["status"] == "succeeded" for r in rows)
    written = tables.write_report(rows, tmp_path)
    assert all(is_png(p) for p in written[1:])
    assert REFERENCE_HEADER in (tmp_path / "report.md").read_text()


def test_bench_report_only_redraws_through_the_cli(tmp_path):
    bench_table.write_results(tmp_path / "results.csv", [row(kind, size) for kind in ("pipeline", "local") for size in ("25MB", "50MB")])
    assert main(["bench", "--report-only", "--out", str(tmp_path)]) == 0
    assert all(is_png(tmp_path / name) for name in BENCH_FIGURES)
    assert (tmp_path / "report.md").is_file()


def test_bench_report_with_no_succeeded_run_says_so(tmp_path):
    with pytest.raises(ValueError, match="no succeeded runs"):
        tables.write_report([row(status="failed")], tmp_path)


# -- one run: cosmicai report RUN_DIR --------------------------------------------------------


def write_run(folder: Path) -> Path:
    """A run of 4 ranks: rank 1 cold, rank 2 warm, rank 3 failed (record), rank 4 missing."""
    def ok(rank: int, start: str, end: str, cold: bool) -> dict:
        return {
            "rank": rank, "world_size": 4, "status": "succeeded", "error": None, "num_samples": 32, "started_at": start,
            "finished_at": end, "load_time_s": 1.5 if cold else 0.2, "cold_start": cold, "lambda_duration_s": 3.0 if cold else 1.5,
            "throughput_bps": 32 * 20_520 * 8 / 1.0, "sample_persec": 32.0, "peak_rss_mb": 480.0, "total_cpu_memory (MB)": 300.0,
            "lambda_memory_mb": 3008, "execution_time (seconds/batch)": 1.0,
        }

    (folder / "ranks").mkdir(parents=True)
    records = [
        ok(1, "2025-03-01T12:00:02.000+00:00", "2025-03-01T12:00:03.000+00:00", True),
        ok(2, "2025-03-01T12:00:01.000+00:00", "2025-03-01T12:00:02.000+00:00", False),
        {"rank": 3, "world_size": 4, "status": "failed", "error": {"type": "PartitionError", "message": "bad"}, "finished_at": "2025-03-01T12:00:01.500+00:00"},
    ]
    for record in records:
        (folder / "ranks" / f"{record['rank']}.json").write_text(json.dumps(record))
    (folder / "combined_data.json").write_text(json.dumps(records))
    summary = {
        "run_id": "hand-made", "status": "FAILED", "world_size": 4, "ranks_succeeded": 2,
        "ranks_failed": [{"rank": 3, "error": {"type": "PartitionError", "message": "bad"}}, {"rank": 4, "error": {"type": "MissingResult", "message": "none"}}],
        "execution_start": "2025-03-01T12:00:00.000+00:00", "finished_at": "2025-03-01T12:00:04.000+00:00",
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def test_load_run_lists_every_rank_with_failed_and_missing_ones(tmp_path):
    summary, records = load_run(write_run(tmp_path / "run"))
    assert summary["run_id"] == "hand-made"
    assert [(r["rank"], r["status"]) for r in records] == [(1, "succeeded"), (2, "succeeded"), (3, "failed"), (4, "missing")]


def test_cosmicai_report_draws_three_pngs_beside_the_summary(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    assert main(["report", str(run)]) == 0
    assert all(is_png(run / name) for name in ("timeline.png", "throughput.png", "memory.png"))
    assert "4 ranks (2 failed)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: None, "no such run folder"),
        (lambda d: d.mkdir(), "not a run folder"),
        (lambda d: (d.mkdir(), (d / "summary.json").write_text("{not json")), "not valid JSON"),
        (lambda d: (d.mkdir(), (d / "summary.json").write_text(json.dumps({"run_id": "x", "ranks_failed": []}))), "no rank records"),
    ],
)
def test_cosmicai_report_on_a_bad_folder_exits_2_with_one_line(tmp_path, capsys, setup, message):
    folder = tmp_path / "run"
    setup(folder)
    assert main(["report", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not list(tmp_path.rglob("*.png"))
