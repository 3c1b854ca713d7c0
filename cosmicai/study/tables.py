"""``report.md`` of a benchmark sweep: the reference's table, a detail table, the definitions, the figures.

The reference's table has its columns: Dataset, Batch Size, Input Partitions,
Avg Time (s), Memory (MB), Throughput (bps), Cost. ``write_report`` draws the
figures (``cosmicai.study.plots.bench_figures``) and writes ``report.md`` beside them.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Iterable, Sequence

from cosmicai.study.results import aggregate, setup_line, si


def _num(value: Any, digits: int = 2) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _dataset(row: dict[str, Any]) -> str:
    scale = "" if row.get("scale") in (None, 1.0) else f" ×{row['scale']:g}"
    return f"{row['partition_size']}{scale}" + (" (Local)" if row["kind"] == "local" else "")


REFERENCE_COLUMNS = ("Dataset", "Batch Size", "Input Partitions", "Avg Time (s)", "Memory (MB)", "Throughput (bps)", "Cost")

DEFINITIONS = """\
## Definitions and units

- **Dataset**: the nominal partition size (binary units: 25MB = 25 MiB) and the data scale: a partition holds
  max(1, floor(size x scale / 20,520 B)) samples. The data set of a run is *Input Partitions* such partitions;
  each pipeline rank reads one. "(Local)" rows infer the same data set in one local process (`cosmicai local`).
- **Avg Time (s)**: execution time per batch in seconds of **wall-clock** time (the rank's inference loop / its
  batches), the mean over ranks and repeats — the reference's "Avg Time". Not CPU time (CPU time, summed over
  ranks, is the `CPU time (s)` column below and `cpu_time_s` in results.csv).
- **Run wall time (s)**: pipeline: from the execution's start to the summary (includes orchestration, S3 I/O
  and waves of ranks when world size > MaxConcurrency); local: data + model load + inference loop.
- **Memory (MB)**: MB = MiB = 2^20 bytes. Peak resident set size (RSS), the maximum over ranks. A warm Lambda
  worker's peak covers its earlier invocations (like Lambda's "Max Memory Used"); `rss_mib` in results.csv is the
  RSS right after this run's loop.
- **Throughput (bps)**: **bits** per second (bytes x 8; one sample = 20,520 B) over the run wall time
  (M = 10^6). `loop_throughput_bps` in results.csv is the reference's figure: the sum over ranks of each rank's
  bits over its own inference loop.
- **Cost**: USD for one run at AWS list prices (us-east-1; Lambda GB-s at the Infer MemorySize + requests, Step
  Functions state transitions, S3 requests; see `inference/cost.py`); not a monthly figure. Local rows cost nothing
  on AWS (—).
"""


def markdown_table(header: Sequence[str], body: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def reference_table(rows: Sequence[dict[str, Any]]) -> str:
    """The reference's table: Dataset, Batch Size, Input Partitions, Avg Time (s), Memory (MB), Throughput (bps), Cost."""
    body = [
        (
            _dataset(r), str(r["batch_size"]), str(r["world_size"]), _num(r["exec_time_mean_s"], 3), _num(r["peak_memory_mib"], 1),
            si(r["throughput_bps"]), "—" if r["kind"] == "local" or r["cost_usd"] is None else f"${r['cost_usd']:.6f}",
        )
        for r in rows
    ]
    return markdown_table(REFERENCE_COLUMNS, body)


def detail_table(rows: Sequence[dict[str, Any]]) -> str:
    header = ("kind", "Dataset", "Batch Size", "Input Partitions", "samples", "run wall time (s)", "p95 time/batch (s)",
              "CPU time (s)", "samples/s", "loop throughput (bps)", "pipeline / local wall time", "runs")
    local = {(r["partition_size"], r["scale"], r["world_size"], r["batch_size"], r["model"]): r for r in rows if r["kind"] == "local"}
    body = []
    for r in rows:
        twin = local.get((r["partition_size"], r["scale"], r["world_size"], r["batch_size"], r["model"]))
        ratio = "—"
        if r["kind"] == "pipeline" and twin and r["wall_time_s"] and twin["wall_time_s"]:
            ratio = f"{r['wall_time_s'] / twin['wall_time_s']:.2f}x"
        body.append((
            r["kind"], _dataset(r), str(r["batch_size"]), str(r["world_size"]), _num(r["samples"], 0), _num(r["wall_time_s"]),
            _num(r["exec_time_p95_s"], 3), _num(r["cpu_time_s"]), _num(r["samples_per_s"], 1), si(r["loop_throughput_bps"]), ratio, str(r["runs"]),
        ))
    return markdown_table(header, body)


def write_report(rows: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    """Draw the sweep's figures and write ``report.md`` into ``out``; return the paths written."""
    table = aggregate(rows)
    if not table:
        raise ValueError(f"{out / 'results.csv'}: no succeeded runs to report")
    from cosmicai.study.plots import bench_figures  # matplotlib: only when a report is drawn

    out.mkdir(parents=True, exist_ok=True)
    figures = bench_figures(table, out)
    failed = sum(1 for r in rows if r.get("status") != "succeeded")
    captions = {
        "time_vs_size.png": "Execution time per batch and run wall time against the data per partition, one line per batch size, one panel per world size.",
        "time_vs_partitions.png": "Run wall time and execution time per batch against the number of input partitions (ranks), one line per partition size.",
        "cost_vs_size.png": "Cost of one pipeline run on AWS at list prices against the data per partition.",
        "memory_throughput_vs_size.png": "Peak memory (MiB) and end-to-end throughput (bits/s) against the data per partition.",
    }
    loads = [r["load_avg_1m"] for r in rows if r.get("load_avg_1m") is not None]
    load = (f" The machine's 1-minute load average during the runs: mean {statistics.fmean(loads):.1f}, max {max(loads):.1f}"
            " (above the machine's core count, other work competed for the CPUs and the times are inflated)." if loads else "")
    parts = [
        "# Benchmark report",
        "",
        f"{len(rows)} runs in `results.csv` ({failed} failed, left out below); {len(table)} configurations, repeats averaged. {setup_line(table)}.{load}",
        "",
        "## Results (the reference's columns)",
        "",
        reference_table(table),
        "",
        "## Details",
        "",
        detail_table(table),
        "",
        DEFINITIONS,
        "## Figures",
        "",
    ]
    for figure in figures:
        parts += [f"### {figure.stem.replace('_', ' ')}", "", f"![{figure.stem}]({figure.name})", "", captions[figure.name], ""]
    report = out / "report.md"
    report.write_text("\n".join(parts))
    return [report, *figures]
