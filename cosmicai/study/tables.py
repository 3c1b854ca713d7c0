"""``report.md`` of a benchmark sweep: the seed report's table beside ours, cold and warm, the projection, definitions, figures.

Every figure of ours is the median over a configuration's repeats with
(min–max); a configuration measured while the machine's 1-minute load average
exceeded its core count is marked ⚠, and only then does the report say that
times are inflated. ``write_report`` draws the figures
(``cosmicai.study.plots.bench_figures``) and writes ``report.md`` beside them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cosmicai.study.projection import projections, twins
from cosmicai.study.results import (
    OTHER_WORK_LIMIT,
    aggregate,
    is_loaded,
    money,
    setup_line,
    si,
    sort_key,
    spread,
)
from inference.naming import parse_size

RUNS_PER_MONTH = 30  # our Monthly Cost: one run a day (the seed report does not say how it counted its own)
REFERENCE_COLUMNS = ("Dataset", "Source", "Batch Size", "Input Partitions", "Avg Time (s)", "Memory (MB)", "Throughput (bps)", "Monthly Cost")
# The seed report's table, as published (reference/seed-report.txt): AWS Lambda, 8 GB functions.
REFERENCE_ROWS = (
    ("25MB", "512", "High (~41)", "2.54", "7", "246M", "$1.75"),
    ("75MB", "512", "Medium (~41)", "2.32", "7.2", "255M", "$1.33"),
    ("100MB", "512", "Medium (~41)", "2.15", "6.996", "265M", "$1.18"),
    ("100MB (Local)", "512", "3", "12.55", "25.336", "5.5M", "$0.00"),
)
REFERENCE_SOURCE = "reference (seed report: AWS Lambda)"

DEFINITIONS = f"""\
## Definitions and units

Each of our figures is the **median over the repeats** of a configuration, with the (min–max) beside it.
Time is **wall-clock** time throughout, never CPU time.

- **Dataset**: the nominal partition size (binary units: 25MB = 25 MiB) and, when not 1, the data scale: a
  partition holds max(1, floor(size x scale / 20,520 B)) samples. The data set is *Input Partitions* such
  partitions; each pipeline rank reads one. "(Local)": the same data set as one file in one process.
- **Source**: the seed report's published row, or ours: `pipeline` (the Step Functions pipeline on the target)
  or `local` (`cosmicai local`).
- **Batch Size**: samples per inference batch. **Input Partitions**: partitions in the data set = ranks.
- **Avg Time (s)**: seconds per batch: each rank's inference loop (warm) / its batches, the mean over ranks —
  the reference's "Avg Time" (it divided profiler CPU time, we divide wall time).
- **Memory (MB)**: MB = MiB = 2^20 bytes: peak resident set size, the maximum over ranks, of the cold run (fresh
  processes, so the peak is this run's alone). The seed report's figures are as published: its header says MB
  but its values (7, 7.2, 6.996) are GB — its records show about 6,945 MB per rank.
- **Throughput (bps)**: **bits** per second: the data set's bits (samples x 20,520 B x 8) / the warm time
  (M = 10^6). The seed report summed its ranks' figures.
- **Monthly Cost**: ours: one pipeline run at AWS list prices (`inference/cost.py`: Lambda GB-s at the Infer
  MemorySize for the durations measured here, requests, Step Functions, S3) x {RUNS_PER_MONTH} runs a month (one a day);
  local rows send no AWS bill. The seed report does not say how it computed its figure.
- **Cold (s)**: a fresh process, as a user feels it: the wall time of `cosmicai run` (pipeline: emulator start,
  deploy, cold Lambda workers importing torch and loading the model, the execution, fetching results) or
  `cosmicai local` (interpreter start, imports, data and model load, loop) started in a new process.
- **Warm (s)**: the inference loop alone: pipeline: on warm workers, from the first rank's loop start to the last
  rank's loop end (with more ranks than MaxConcurrency it includes the waves' hand-overs); local: the loop, in a
  process that has run before.
- **Execution on warm workers (s)**: the pipeline's execution from its start to the summary, on warm workers.
- **Pipeline ÷ local**: the pipeline's median time over the local one's (below 1: the pipeline is faster).
- **Load**: the machine's 1-minute load average, the highest seen after a configuration's runs; above the core
  count, other work competed for the CPUs.
- **Projection**: the same work (the configuration's samples) on an AWS Lambda fleet: all ranks at once, each
  a 10 s cold start + its samples x the per-sample time measured here (one pipeline worker's warm loop per
  sample), priced by `inference/cost.py` at the Infer MemorySize; and on this machine: the local cold time
  (the pipeline's when there is no local row), priced as an on-demand EC2 machine with as many vCPUs as it has
  cores ($0.0504 per vCPU-hour, m7i.large).
"""

CAPTIONS = {
    "time_vs_size.png": ("Cold (fresh process) and warm (inference loop) time against the data set size at one world size; "
                         "median of the repeats, bars min–max."),
    "time_vs_partitions.png": ("Time against the number of input partitions (ranks) at one partition size, with the ideal scaling "
                               "of the pipeline's warm time: each rank the same work, MaxConcurrency ranks at a time."),
    "memory.png": "Peak memory of one process against the data it holds (a pipeline rank: one partition; local: the whole data set).",
    "throughput.png": "Bits per second, cold and warm, against the data set size at one world size.",
    "cost.png": "What each configuration's work costs: an AWS Lambda fleet (projected) beside this machine rented on demand.",
}


def markdown_table(header: Sequence[str], body: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def dataset_label(row: dict[str, Any], local: bool | None = None) -> str:
    scale = "" if row.get("scale") in (None, 1.0) else f" ×{row['scale']:g}"
    local = row.get("kind") == "local" if local is None else local
    return f"{row['partition_size']}{scale}" + (" (Local)" if local else "") + (" ⚠" if row.get("loaded") else "")


def _seconds(value: float) -> str:
    return f"{value:.3g}" if value < 100 else f"{value:,.0f}"


def _monthly(row: dict[str, Any]) -> str:
    if row["kind"] == "local":
        return "$0.00"
    if row.get("cost_usd") is None:
        return "—"
    scaled = {k: (v * RUNS_PER_MONTH if v is not None else None) for k, v in row.items() if k.startswith("cost_usd")}
    return spread(scaled, "cost_usd", money)


def _ours(row: dict[str, Any]) -> tuple[str, ...]:
    source = "ours: local" if row["kind"] == "local" else f"ours: pipeline ({row['target']})"
    return (
        dataset_label(row), source, str(row["batch_size"]), str(row["world_size"]), spread(row, "exec_time_mean_s", _seconds),
        spread(row, "peak_memory_mib", lambda v: f"{v:,.0f}"), spread(row, "throughput_bps", si), _monthly(row),
    )


def reference_table(table: Sequence[dict[str, Any]]) -> str:
    """The seed report's columns; its rows as published beside ours, grouped by nominal partition size."""
    sizes = sorted({parse_size(r["partition_size"]) for r in table} | {parse_size(r[0].split()[0]) for r in REFERENCE_ROWS})
    body = []
    for size in sizes:
        body += [(r[0], REFERENCE_SOURCE, *r[1:]) for r in REFERENCE_ROWS if parse_size(r[0].split()[0]) == size]
        ours = [r for r in table if parse_size(r["partition_size"]) == size]
        body += [_ours(r) for r in sorted(ours, key=lambda r: (r["kind"] != "pipeline", r["world_size"], r["batch_size"]))]
    return markdown_table(REFERENCE_COLUMNS, body)


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None, column: str) -> str:
    if not a or not b or not a.get(column) or not b.get(column):
        return "—"
    return f"{a[column] / b[column]:.2f}"


def _config_cells(p: dict[str, Any] | None, q: dict[str, Any] | None) -> tuple[str, ...]:
    row = p or q
    assert row is not None
    flagged = {**row, "loaded": (p or {}).get("loaded") or (q or {}).get("loaded"), "kind": "pipeline"}
    return dataset_label(flagged), str(row["world_size"]), str(row["batch_size"]), f"{row['samples']:,}"


def cold_warm_table(table: Sequence[dict[str, Any]]) -> str:
    """One row per configuration: the pipeline's and the local run's cold and warm times, their ratios, the load."""
    header = ("Dataset", "Input Partitions", "Batch Size", "Samples", "Pipeline cold (s)", "Pipeline warm (s)", "Local cold (s)",
              "Local warm (s)", "Pipeline ÷ local, cold", "Pipeline ÷ local, warm", "Execution on warm workers (s)", "Load (max)", "Runs")
    body = []
    for p, q in sorted(twins(table), key=lambda pq: _order(pq[0] or pq[1])):
        loads = [r["load_avg_1m_max"] for r in (p, q) if r and r.get("load_avg_1m_max") is not None]
        body.append((
            *_config_cells(p, q), *(spread(r, c, _seconds) if r else "—" for r in (p, q) for c in ("cold_s", "warm_s")),
            _ratio(p, q, "cold_s"), _ratio(p, q, "warm_s"), spread(p, "execution_s", _seconds) if p else "—",
            f"{max(loads):.2f}" if loads else "—", " / ".join(str(r["runs"]) for r in (p, q) if r),
        ))
    return markdown_table(header, body)


def _order(row: dict[str, Any]) -> tuple:
    return (row.get("samples") or 0, row["world_size"], sort_key(row["partition_size"]), row["batch_size"])


def projection_table(table: Sequence[dict[str, Any]]) -> str:
    header = ("Dataset", "Input Partitions", "Batch Size", "Samples", "Per-sample time (ms, one worker)", "Lambda fleet: time (s)",
              "Lambda fleet: cost", "This machine: time (s)", "This machine: cost")
    body = []
    for row in projections(table):
        flagged = {**row, "loaded": row.get("loaded"), "kind": "pipeline"}
        body.append((
            dataset_label(flagged), str(row["world_size"]), str(row["batch_size"]), f"{row['samples']:,}",
            spread(row, "sample_time_ms"), spread(row, "fleet_s", _seconds), spread(row, "fleet_usd", money),
            spread(row, "machine_s", _seconds) + (f" ({row['machine_source']})" if row.get("machine_source") else ""),
            spread(row, "machine_usd", money),
        ))
    return markdown_table(header, body)


def load_sentence(rows: Sequence[dict[str, Any]]) -> str:
    """What other work on the machine says about the times: a warning only when it really competed for the CPUs."""
    measured = [r for r in rows if r.get("load_avg_1m") is not None or r.get("other_cpu") is not None]
    if not measured:
        return "The machine's load was not recorded."
    cores = max(r.get("cores") or 0 for r in measured) or None
    loads = [r["load_avg_1m"] for r in measured if r.get("load_avg_1m") is not None]
    others = [r["other_cpu"] for r in measured if r.get("other_cpu") is not None]
    averages = (f"the 1-minute load average, which counts the bench's own processes, peaked at {max(loads):.2f} on {cores} cores"
                if loads else f"{cores} cores")
    loaded = [r for r in measured if is_loaded(r.get("load_avg_1m"), r.get("cores"), r.get("other_cpu"))]
    if loaded:
        what = (f"processes outside the bench used more than {OTHER_WORK_LIMIT:g} CPU on average (up to {max(others):.2f})"
                if others else f"the machine's 1-minute load average exceeded its {cores} cores")
        return (f"**{len(loaded)} of {len(measured)} runs were measured while {what}: other work competed for the CPUs "
                f"and those times are inflated; their configurations are marked ⚠** ({averages}).")
    if others:
        return f"Other processes used at most {max(others):.2f} CPU on average during any run ({averages})."
    return f"The machine's 1-minute load average stayed at or below its core count during every run ({averages})."


def _period(rows: Sequence[dict[str, Any]]) -> str:
    stamps = sorted(str(r["measured_at"])[:10] for r in rows if r.get("measured_at"))
    if not stamps:
        return ""
    return f" Measured {stamps[0]}" + (f" to {stamps[-1]}" if stamps[-1] != stamps[0] else "") + "."


def write_report(rows: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    """Draw the sweep's figures and write ``report.md`` into ``out``; return the paths written."""
    runs = [r for r in rows if r.get("stat", "run") in ("run", None)]
    table = aggregate(runs)
    if not table:
        raise ValueError(f"{out / 'results.csv'}: no succeeded runs to report")
    from cosmicai.study.plots import (
        bench_figures,  # matplotlib: only when a report is drawn
    )

    out.mkdir(parents=True, exist_ok=True)
    figures = bench_figures(table, out)
    failed = sum(1 for r in runs if r.get("status") != "succeeded")
    parts = [
        "# Benchmark report",
        "",
        (f"{len(runs)} runs in `results.csv` ({failed} failed, left out below); {len(table)} configurations, each shown as the median "
         f"of its repeats with (min–max). {setup_line(table)}.{_period(runs)}"),
        "",
        load_sentence([r for r in runs if r.get("status") == "succeeded"]),
        "",
        "## The seed report's table, ours beside the reference's",
        "",
        reference_table(table),
        "",
        "## Cold and warm: the pipeline beside the local run",
        "",
        cold_warm_table(table),
        "",
        "## Projection: the same work on an AWS Lambda fleet and on this machine",
        "",
        projection_table(table),
        "",
        DEFINITIONS,
        "## Figures",
        "",
    ]
    for figure in figures:
        parts += [f"### {figure.stem.replace('_', ' ')}", "", f"![{figure.stem}]({figure.name})", "", CAPTIONS[figure.name], ""]
    report = out / "report.md"
    report.write_text("\n".join(parts))
    return [report, *figures]
