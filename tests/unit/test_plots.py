"""The benchmark's results table, its statistics, resume logic, report, projection and figures; one run's figures.

Everything here is drawn from hand-made data (a results table, a run folder) or
from ``tests/data/bench-results.csv``, a small sweep recorded with
``cosmicai bench --model tiny --partition-sizes 1MB,2MB --world-sizes 1,2
--batch-sizes 64 --repeats 2 --scale 0.25`` on the embedded target.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import pytest

from cosmicai.cli import build_parser, main
from cosmicai.study import bench, measure, projection, tables
from cosmicai.study import results as bench_table
from cosmicai.study.report import load_run
from inference.cost import LAMBDA_COLD_START_S, estimate_cost, machine_cost

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
RECORDED = Path(__file__).resolve().parents[1] / "data" / "bench-results.csv"
REFERENCE_HEADER = "| Dataset | Source | Batch Size | Input Partitions | Avg Time (s) | Memory (MB) | Throughput (bps) | Monthly Cost |"
BENCH_FIGURES = ("time_vs_size.png", "time_vs_partitions.png", "memory.png", "throughput.png", "cost.png")
INFLATED = "times are inflated"


def bench_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["bench", *argv])


def row(kind: str = "pipeline", size: str = "25MB", world: int = 2, batch: int = 128, repeat: int = 1, status: str = "succeeded",
        warm: float = 2.0, cold: float | None = None, load: float = 0.5, cores: int = 2, other: float | None = 0.1) -> dict:
    """One results.csv run row with plausible figures: the cold run costs more than the warm loop."""
    config = bench_table.Config(
        target="embedded" if kind == "pipeline" else "local", kind=kind, model="tiny", partition_size=size, scale=0.05, seed=0,
        world_size=world, batch_size=batch, repeat=repeat, memory_mb=3008 if kind == "pipeline" else None,
        max_concurrency=2 if kind == "pipeline" else None,
    )
    samples = config.samples
    return {
        **measure.base_row(config),
        "run_id": f"{kind}-{size}-{world}-{batch}-{repeat}",
        "status": status,
        "error": None if status == "succeeded" else "warm run: rank 1: PartitionError",
        "threads": 1 if kind == "pipeline" else 2,
        "cold_s": cold if cold is not None else warm + (8.0 if kind == "pipeline" else 2.0),
        "warm_s": warm,
        "execution_s": warm + 0.5,
        "cpu_time_s": warm * 0.8,
        "exec_time_mean_s": 0.02 * batch / 32,
        "exec_time_p95_s": 0.025 * batch / 32,
        "sample_time_ms": 1000 * warm / samples,
        "peak_memory_mib": 450.0 + samples / 10,
        "rss_mib": 300.0,
        "throughput_bps": samples * 20_520 * 8 / warm,
        "samples_per_s": samples / warm,
        "cost_usd": 0.0002 * world if kind == "pipeline" else None,
        "load_avg_1m": load,
        "other_cpu": other,
        "cores": cores,
        "cpu": "Test CPU",
        "loaded": int(bench_table.is_loaded(load, cores, other)),
        "measured_at": "2026-12-03T10:00:00.000+00:00",
    }


@pytest.fixture()
def table() -> list[dict]:
    rows = []
    for world in (1, 2, 4):
        for size, scale in (("25MB", 1.0), ("50MB", 1.6), ("100MB", 2.9)):
            for batch in (32, 512):
                rows.append(row("pipeline", size, world, batch, warm=1.0 + scale * world / 2))
                rows.append(row("local", size, world, batch, warm=0.5 + scale * world))
    rows.append(row("pipeline", "25MB", 1, 32, repeat=2, warm=3.0))  # with repeat 1 (warm 1.5)
    rows.append(row("pipeline", "25MB", 1, 32, repeat=3, warm=2.0))
    rows.append(row("pipeline", "100MB", 4, 512, repeat=2, status="failed", warm=99.0))  # left out
    return rows


def is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


# -- results.csv: every repeat, then each configuration's median, min and max ---------------------


def test_samples_per_partition_follow_the_reference_sizes():
    assert bench_table.samples_per_partition("25MB", 1.0) == 1277  # 25 MiB / 20,520 B
    assert bench_table.samples_per_partition("100MB", 1.0) == 5110
    assert bench_table.samples_per_partition("25MB", 0.05) == 63
    assert bench_table.samples_per_partition("25MB", 1e-6) == 1  # at least one sample


def test_csv_round_trip_keeps_run_rows_columns_and_types(tmp_path, table):
    path = tmp_path / "results.csv"
    bench_table.write_results(path, table)
    assert path.read_text().splitlines()[0].split(",") == list(bench_table.COLUMNS)
    back = bench_table.read_results(path)
    assert len(back) == len(table) and {r["stat"] for r in back} == {"run"}  # the statistic rows are recomputed, not read
    first = back[0]
    assert isinstance(first["world_size"], int) and isinstance(first["scale"], float) and isinstance(first["warm_s"], float)
    assert isinstance(first["cold_s"], float) and isinstance(first["loaded"], int) and first["cpu"] == "Test CPU"
    assert back[1]["memory_mb"] is None and back[1]["cost_usd"] is None  # local rows: no MemorySize, no AWS cost
    assert first["samples"] == 63 and first["data_mib"] == pytest.approx(63 * 20_520 / 2**20)


def test_results_csv_records_every_repeat_and_each_configurations_median_min_and_max(tmp_path, table):
    path = tmp_path / "results.csv"
    bench_table.write_results(path, table)
    written = csv_rows(path)
    config = {"kind": "pipeline", "partition_size": "25MB", "world_size": "1", "batch_size": "32"}
    mine = [r for r in written if all(r[k] == v for k, v in config.items())]
    assert sorted(r["repeat"] for r in mine if r["stat"] == "run") == ["1", "2", "3"]
    stats = {r["stat"]: r for r in mine if r["stat"] != "run"}
    assert set(stats) == {"median", "min", "max"} and all(r["repeat"] == "" and r["runs"] == "3" for r in stats.values())
    assert [float(stats[s]["warm_s"]) for s in ("min", "median", "max")] == [1.5, 2.0, 3.0]
    assert float(stats["median"]["cold_s"]) == 10.0  # 2.0 + 8
    failed = [r for r in written if r["kind"] == "pipeline" and r["partition_size"] == "100MB" and r["world_size"] == "4" and r["batch_size"] == "512"]
    assert [r["status"] for r in failed if r["stat"] == "run"] == ["succeeded", "failed"]
    assert all(r["runs"] == "1" and float(r["warm_s"]) != 99.0 for r in failed if r["stat"] != "run")  # failures are left out
    assert len(written) == len(table) + 3 * 36


def test_aggregate_takes_median_min_max_and_counts_loaded_runs(table):
    table.append(row("local", "25MB", 1, 32, repeat=2, warm=9.0, load=3.5, other=1.2))
    aggregated = bench_table.aggregate(table)
    assert len(aggregated) == 36  # 3 worlds x 3 sizes x 2 batches x 2 kinds
    first = next(r for r in aggregated if r["kind"] == "pipeline" and r["partition_size"] == "25MB" and r["world_size"] == 1 and r["batch_size"] == 32)
    assert (first["runs"], first["warm_s"], first["warm_s_min"], first["warm_s_max"], first["loaded"]) == (3, 2.0, 1.5, 3.0, 0)
    local = next(r for r in aggregated if r["kind"] == "local" and r["partition_size"] == "25MB" and r["world_size"] == 1 and r["batch_size"] == 32)
    assert (local["runs"], local["loaded"], local["load_avg_1m_max"]) == (2, 1, 3.5)


@pytest.mark.parametrize(("load", "cores", "loaded"), [(0.4, 2, False), (2.0, 2, False), (2.01, 2, True), (7.9, 8, False), (None, 2, False)])
def test_a_run_is_flagged_only_when_the_load_average_exceeds_the_cores(load, cores, loaded):
    assert bench_table.is_loaded(load, cores) is loaded


def test_finish_row_records_the_highest_load_seen_and_flags_it(monkeypatch):
    monkeypatch.setattr(measure, "machine_load", lambda: (1.0, 2))
    quiet = measure.finish_row({}, [0.5])
    busy = measure.finish_row({}, [3.2])
    assert (quiet["load_avg_1m"], quiet["cores"], quiet["loaded"]) == (1.0, 2, 0)
    assert (busy["load_avg_1m"], busy["loaded"]) == (3.2, 1)


def test_read_results_rejects_a_missing_or_foreign_file(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        bench_table.read_results(tmp_path / "results.csv")
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a cosmicai bench results.csv"):
        bench_table.read_results(tmp_path / "other.csv")


@pytest.mark.parametrize(("value", "text"), [(0.384060558, "$0.384"), (1.0705, "$1.07"), (0.000148528, "$0.000149"), (1234.5, "$1,234.50"),
                                             (0.0, "$0.00"), (None, "—")])
def test_money_is_rounded_to_what_matters(value, text):
    assert bench_table.money(value) == text


def test_spread_shows_the_median_with_min_and_max():
    assert bench_table.spread({"t": 2.0, "t_min": 1.5, "t_max": 3.0}, "t") == "2 (1.5–3)"
    assert bench_table.spread({"t": 2.0, "t_min": 2.0, "t_max": 2.0}, "t") == "2"
    assert bench_table.spread({"t": None}, "t") == "—"


# -- the sweep's plan and resume ------------------------------------------------------------------


def test_the_default_sweep_is_the_reference_model_on_the_figures_two_axes(monkeypatch):
    monkeypatch.setattr(bench.os, "cpu_count", lambda: 2)
    configs = bench.plan(bench_args(), "embedded")
    assert {(c.model, c.scale, c.batch_size) for c in configs} == {("astromae", 1.0, 512)}
    pairs = list(dict.fromkeys((c.partition_size, c.world_size) for c in configs))
    assert pairs == [("25MB", 1), ("25MB", 2), ("75MB", 2), ("100MB", 2), ("25MB", 4)]  # sizes at 2 ranks, ranks at 25MB
    assert len(configs) == 5 * 3 * 2  # data sets x repeats x kinds
    assert {c.max_concurrency for c in configs if c.kind == "pipeline"} == {2}  # the cores, for every world size: 1 thread per worker
    first = configs[:6]
    assert [(c.kind, c.repeat) for c in first] == [("pipeline", 1), ("local", 1), ("pipeline", 2), ("local", 2), ("pipeline", 3), ("local", 3)]


def test_grid_measures_every_combination_and_no_local_drops_the_baseline(monkeypatch):
    monkeypatch.setattr(bench.os, "cpu_count", lambda: 2)
    args = bench_args("--grid", "--partition-sizes", "50MB,25MB", "--batch-sizes", "128,64", "--world-sizes", "2,1", "--repeats", "2")
    configs = bench.plan(args, "embedded")
    assert len(configs) == 2 * 2 * 2 * 2 * 2  # sizes x worlds x batches x repeats x kinds
    assert [(c.partition_size, c.world_size) for c in configs[::8]] == [("25MB", 1), ("50MB", 1), ("25MB", 2), ("50MB", 2)]
    assert [(c.kind, c.batch_size, c.repeat) for c in configs[:4]] == [("pipeline", 64, 1), ("local", 64, 1), ("pipeline", 64, 2), ("local", 64, 2)]
    assert {c.target for c in configs if c.kind == "local"} == {"local"}
    assert {c.kind for c in bench.plan(bench_args("--no-local"), "embedded")} == {"pipeline"}


def test_rerun_skips_configurations_already_measured(tmp_path, monkeypatch):
    monkeypatch.setattr(bench.os, "cpu_count", lambda: 2)  # MaxConcurrency = the cores = the rows' 2
    args = bench_args("--partition-sizes", "25MB", "--batch-sizes", "64,128", "--world-sizes", "2", "--repeats", "1", "--model", "tiny", "--scale", "0.05")
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
        {"batch_size": 128}, {"world_size": 4}, {"scale": 0.1}, {"model": "astromae"}, {"repeat": 2},
        {"memory_mb": 8192}, {"max_concurrency": 1}, {"seed": 1}, {"target": "localstack"}, {"partition_size": "50MB"},
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
        (["--repeats", "0"], "--repeats"),
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


def test_the_warm_time_of_a_pipeline_spans_its_ranks_loops():
    ranks = [
        {"started_at": "2026-12-03T10:00:00.000+00:00", "finished_at": "2026-12-03T10:00:02.000+00:00", "wall_time_s": 2.0, "num_samples": 100},
        {"started_at": "2026-12-03T10:00:02.100+00:00", "finished_at": "2026-12-03T10:00:03.500+00:00", "wall_time_s": 1.4, "num_samples": 100},
    ]
    assert measure.loop_span(ranks) == pytest.approx(3.5)  # two waves: the first loop's start to the last loop's end
    assert measure.loop_span(ranks[:1]) == pytest.approx(2.0)
    assert measure.sample_time_ms(ranks) == pytest.approx((20.0 + 14.0) / 2)
    assert measure.loop_span([]) is None


# -- report.md: the seed report's table beside ours, cold and warm, the projection --------------------


def test_the_report_puts_the_seed_reports_rows_beside_ours_with_every_column_defined(tmp_path, table):
    bench_table.write_results(tmp_path / "results.csv", table)
    written = tables.write_report(bench_table.read_results(tmp_path / "results.csv"), tmp_path)
    assert [p.name for p in written] == ["report.md", *BENCH_FIGURES]
    assert all(is_png(tmp_path / name) for name in BENCH_FIGURES)
    report = (tmp_path / "report.md").read_text()
    assert REFERENCE_HEADER in report
    lines = report.splitlines()
    reference = lines.index("| 25MB | reference (seed report: AWS Lambda) | 512 | High (~41) | 2.54 | 7 | 246M | $1.75 |")
    assert lines[reference + 1].startswith("| 25MB ×0.05 | ours: pipeline (embedded) | 32 | 1 | 0.02 |")  # ours right after it
    assert "| 100MB (Local) | reference (seed report: AWS Lambda) | 512 | 3 | 12.55 | 25.336 | 5.5M | $0.00 |" in report
    assert "| 100MB ×0.05 (Local) | ours: local | 512 | 4 |" in report
    monthly = 0.0002 * 30  # one pipeline run of world size 1 at AWS prices, 30 runs a month
    assert f"| 25MB ×0.05 | ours: pipeline (embedded) | 32 | 1 | 0.02 | {450 + 63 / 10:,.0f} | " in report
    assert f"| {tables.money(monthly)} |" in report
    for column in ("**Dataset**", "**Source**", "**Batch Size**", "**Input Partitions**", "**Avg Time (s)**", "**Memory (MB)**",
                   "**Throughput (bps)**", "**Monthly Cost**", "**Cold (s)**", "**Warm (s)**", "**Projection**"):
        assert column in report, column
    for name in BENCH_FIGURES:
        assert f"]({name})" in report
    assert "(1 failed, left out below)" in report and "median" in report
    assert INFLATED not in report and "⚠" not in report  # load 0.5 on 2 cores


def test_the_cold_and_warm_table_pairs_each_pipeline_configuration_with_its_local_twin(table):
    text = tables.cold_warm_table(bench_table.aggregate(table))
    line = next(x for x in text.splitlines() if x.startswith("| 25MB ×0.05 | 1 | 32 |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    # pipeline cold 10 (9.5–11), warm 2 (1.5–3); local cold 3.5, warm 1.5; ratios of the medians
    assert cells[4:10] == ["10 (9.5–11)", "2 (1.5–3)", "3.5", "1.5", f"{10 / 3.5:.2f}", f"{2 / 1.5:.2f}"]
    assert cells[-1] == "3 / 1"


def test_the_inflated_sentence_appears_only_when_other_work_competed(tmp_path, table):
    table.append(row("local", "25MB", 1, 32, repeat=3, warm=9.0, load=2.4, other=0.2))  # the bench's own load: no warning
    quiet = tables.load_sentence(table)
    assert INFLATED not in quiet and "at most 0.20 CPU" in quiet and "peaked at 2.40 on 2 cores" in quiet
    table.append(row("local", "25MB", 1, 32, repeat=2, warm=9.0, load=2.7, other=0.9))
    busy = tables.load_sentence(table)
    assert INFLATED in busy and "1 of" in busy and "up to 0.90" in busy
    bench_table.write_results(tmp_path / "results.csv", table)
    tables.write_report(bench_table.read_results(tmp_path / "results.csv"), tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert INFLATED in report and "| 25MB ×0.05 (Local) ⚠ | ours: local | 32 | 1 |" in report


def test_rows_without_other_work_recorded_fall_back_to_the_load_average():
    assert tables.load_sentence([row(load=1.5, other=None)]).startswith("The machine's 1-minute load average stayed at or below")
    assert INFLATED in tables.load_sentence([row(load=2.7, other=None)])


@pytest.mark.parametrize(("load", "cores", "other", "loaded"), [(3.0, 2, 0.2, False), (1.0, 2, 0.6, True), (2.01, 2, None, True)])
def test_other_work_decides_the_flag_when_it_was_recorded(load, cores, other, loaded):
    assert bench_table.is_loaded(load, cores, other) is loaded


def test_other_work_is_the_machines_busy_time_less_this_process_trees(monkeypatch):
    readings = iter([(100.0, 50.0, 10.0), (104.0, 60.0, 16.0)])  # (clock, machine busy CPU s, ours CPU s): start, end
    current = next(readings)
    monkeypatch.setattr(bench_table.time, "perf_counter", lambda: current[0])
    monkeypatch.setattr(bench_table.OtherWork, "_machine", staticmethod(lambda: current[1]))
    monkeypatch.setattr(bench_table.OtherWork, "_ours", staticmethod(lambda: current[2]))
    meter = bench_table.OtherWork()
    current = next(readings)
    assert meter.cpus() == pytest.approx((10.0 - 6.0) / 4.0)  # 4 CPU s of others' work in 4 s: one CPU's worth


def test_a_reaped_child_counts_as_ours():
    import subprocess
    import sys

    before = bench_table.OtherWork._ours()
    subprocess.run([sys.executable, "-c", "import time\nend = time.process_time() + 0.6\nwhile time.process_time() < end: pass"], check=True)
    assert bench_table.OtherWork._ours() - before >= 0.5


def test_the_projection_prices_the_same_work_on_a_lambda_fleet_and_on_this_machine(table):
    aggregated = bench_table.aggregate(table)
    rows = projection.projections(aggregated)
    assert len(rows) == 18  # one per configuration: the pipeline row and its local twin together
    one = next(r for r in rows if r["partition_size"] == "50MB" and r["world_size"] == 2 and r["batch_size"] == 512)
    n = bench_table.samples_per_partition("50MB", 0.05)
    warm = 1.0 + 1.6 * 2 / 2
    per_sample_ms = 1000 * warm / (2 * n)
    assert one["sample_time_ms"] == pytest.approx(per_sample_ms)
    rank_s = LAMBDA_COLD_START_S + n * per_sample_ms / 1000
    assert one["fleet_s"] == pytest.approx(rank_s)
    assert one["fleet_usd"] == pytest.approx(estimate_cost(world_size=2, seconds_per_rank=rank_s, memory_mb=3008)["total"])
    local_cold = 0.5 + 1.6 * 2 + 2.0
    assert (one["machine_source"], one["machine_s"]) == ("local, cold", pytest.approx(local_cold))
    assert one["machine_usd"] == pytest.approx(machine_cost(local_cold, 2))
    text = tables.projection_table(aggregated)
    assert "| Dataset | Input Partitions | Batch Size | Samples | Per-sample time (ms, one worker) | Lambda fleet: time (s) | Lambda fleet: cost |" in text
    assert f"| {tables.money(one['fleet_usd'])} | {local_cold:.3g} (local, cold) | {tables.money(one['machine_usd'])} |" in text


def test_without_a_local_row_the_machine_figure_is_the_pipelines_cold_time(table):
    pipeline_only = [r for r in bench_table.aggregate(table) if r["kind"] == "pipeline"]
    one = projection.projections(pipeline_only)[0]  # the smallest: 25MB x1, batch 32, cold 9.5, 11 and 10 s
    assert (one["partition_size"], one["world_size"], one["batch_size"]) == ("25MB", 1, 32)
    assert (one["machine_source"], one["machine_s"], one["machine_s_min"], one["machine_s_max"]) == ("pipeline, cold", 10.0, 9.5, 11.0)


def test_report_renders_from_the_recorded_sweep(tmp_path):
    rows = bench_table.read_results(RECORDED)
    assert {r["kind"] for r in rows} == {"pipeline", "local"} and all(r["status"] == "succeeded" for r in rows)
    assert all(r["cold_s"] and r["warm_s"] and r["cold_s"] > r["warm_s"] for r in rows)  # a fresh process costs more than the loop
    written = tables.write_report(rows, tmp_path)
    assert all(is_png(p) for p in written[1:])
    assert REFERENCE_HEADER in (tmp_path / "report.md").read_text()


def test_bench_report_only_redraws_through_the_cli(tmp_path):
    bench_table.write_results(tmp_path / "results.csv", [row(kind, size) for kind in ("pipeline", "local") for size in ("25MB", "50MB")])
    assert main(["bench", "--report-only", "--out", str(tmp_path)]) == 0
    assert all(is_png(tmp_path / name) for name in BENCH_FIGURES)
    assert (tmp_path / "report.md").is_file()


def test_a_report_of_local_rows_only_still_draws_every_figure(tmp_path):
    written = tables.write_report([row("local", size, world) for size in ("25MB", "50MB") for world in (1, 2)], tmp_path)
    assert all(is_png(p) for p in written[1:])


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
