"""Figures (matplotlib, Agg backend): a benchmark sweep's, and one run's per-rank picture.

Units everywhere: time in seconds of **wall-clock** time unless a label says
CPU time; "MB" and MiB are 2**20 bytes (the reference's unit); throughput in
**bits** per second (bytes x 8), one sample = 20,520 B; cost in USD per run
at AWS list prices (``inference.cost``).

Artifacts written by :func:`bench_figures` into the sweep folder (beside the
``report.md`` of ``cosmicai.study.results``): ``time_vs_size.png``,
``time_vs_partitions.png``, ``cost_vs_size.png``, ``memory_throughput_vs_size.png``.
Artifacts written by :func:`run_report` beside a run's ``summary.json``:
``timeline.png``, ``throughput.png``, ``memory.png``.
"""

from __future__ import annotations

import statistics
import textwrap
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import EngFormatter, FuncFormatter, MaxNLocator  # noqa: E402

from cosmicai.study.results import setup_line, si, sort_key  # noqa: E402
from inference.naming import SAMPLE_BYTES  # noqa: E402

MIB = 2**20
KINDS = {"pipeline": ("-", "o"), "local": ("--", "s")}  # linestyle, marker
SAMPLE_BITS = SAMPLE_BYTES * 8


@dataclass(frozen=True)
class Metric:
    column: str
    label: str  # axis label: quantity (unit) and, on the next line, its definition
    engineering: str | None = None  # unit for an EngFormatter (e.g. "bit/s"), else plain numbers
    template: str | None = None  # tick format, e.g. "${:.6f}"


METRICS = {
    "exec_time_mean_s": Metric("exec_time_mean_s", "execution time per batch (s)\nwall time of the inference loop / batches,\nmean over ranks (not CPU time)"),
    "wall_time_s": Metric("wall_time_s", "run wall time (s)\npipeline: execution start to summary;\nlocal: data + model load + loop"),
    "cost_usd": Metric("cost_usd", "cost per run (USD)\nAWS list prices: Lambda GB-s + requests,\nStep Functions transitions, S3 requests", template="${:.6f}"),
    "peak_memory_mib": Metric("peak_memory_mib", "peak memory (MiB = 2^20 B)\npeak RSS, max over ranks"),
    "throughput_bps": Metric("throughput_bps", "throughput (bits/s)\ndata bits (samples x 20,520 B x 8)\n/ run wall time", "bit/s"),
}


# -- the sweep ---------------------------------------------------------------------------


def _varying(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> list[str]:
    return [k for k in keys if len({r.get(k) for r in rows}) > 1]


def line_grid(
    rows: Sequence[dict[str, Any]],
    path: Path,
    *,
    x: str,
    panel: str,
    line: str,
    metrics: Sequence[str],
    title: str,
    xlabel: str,
    kinds: Sequence[str] = ("pipeline", "local"),
    xticks: dict[Any, str] | None = None,
    footnote: str = "",
) -> Path:
    """One column of panels per value of ``panel``, one row per metric, one line per (kind, ``line``) value."""
    rows = [r for r in rows if r["kind"] in kinds]
    panels = sorted({r[panel] for r in rows}, key=sort_key)
    lines = sorted({r[line] for r in rows}, key=sort_key)
    extra = [k for k in ("target", "model", "scale", "memory_mb") if any(_varying([r for r in rows if r["kind"] == kind], (k,)) for kind in kinds)]
    colors = {value: plt.cm.tab10(i % 10) for i, value in enumerate(lines)}
    fig, axes = plt.subplots(len(metrics), len(panels), figsize=(1.5 + 4.3 * len(panels), 1.2 + 3.3 * len(metrics)), squeeze=False)
    handles: dict[str, Any] = {}
    for col, panel_value in enumerate(panels):
        for row_index, name in enumerate(metrics):
            metric = METRICS[name]
            ax = axes[row_index][col]
            in_panel = [r for r in rows if r[panel] == panel_value and r.get(name) is not None]
            series: dict[tuple, list[dict[str, Any]]] = {}
            for r in in_panel:
                series.setdefault((r["kind"], r[line], *(r.get(k) for k in extra)), []).append(r)
            for (kind, value, *rest), members in sorted(series.items(), key=lambda kv: [sort_key(v) for v in kv[0]]):
                members.sort(key=lambda r: r[x])
                style, marker = KINDS.get(kind, ("-", "o"))
                label = f"{kind}, {line.replace('_', ' ')} {value}" + "".join(f", {k} {v}" for k, v in zip(extra, rest))
                (handle,) = ax.plot([r[x] for r in members], [r[name] for r in members], linestyle=style, marker=marker, color=colors[value], label=label)
                handles.setdefault(label, handle)
            ax.set_title(f"{panel.replace('_', ' ')} {panel_value}", fontsize=10)
            if metric.engineering:
                ax.yaxis.set_major_formatter(EngFormatter(unit=metric.engineering))
            elif metric.template:
                ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _, t=metric.template: t.format(v)))
            if col == 0:
                ax.set_ylabel(metric.label, fontsize=8)
            if row_index == len(metrics) - 1:
                ax.set_xlabel(xlabel, fontsize=8)
            if xticks:
                ticks = sorted({r[x] for r in rows if r[panel] == panel_value})
                ax.set_xticks(ticks, [xticks.get(t, str(t)) for t in ticks], fontsize=7)
            ax.grid(alpha=0.3)
            top = ax.get_ylim()[1]
            ax.set_ylim(0, top * 1.08 if top > 0 else 1)
    fig.suptitle(title)
    width = fig.get_figwidth()
    columns = max(1, min(len(handles), int(width // 3.2)))
    note = "\n".join(textwrap.wrap(footnote, width=int(width * 15))) if footnote else ""
    note_in = 0.05 + 0.13 * (note.count("\n") + 1) if note else 0.0
    legend_in = 0.1 + 0.22 * -(-len(handles) // columns)
    if note:
        fig.text(0.01, 0.05 / fig.get_figheight(), note, fontsize=7, color="dimgray", va="bottom")
    fig.legend(list(handles.values()), list(handles), loc="lower center", bbox_to_anchor=(0.5, note_in / fig.get_figheight()),
               ncol=columns, fontsize=8, frameon=False)
    return _save(fig, path, (0, (note_in + legend_in) / fig.get_figheight(), 1, 0.97))


def _size_ticks(rows: Sequence[dict[str, Any]]) -> dict[Any, str]:
    return {r["data_mib"]: f"{r['partition_size']}\n{r['data_mib']:.3g} MiB" for r in rows}


def bench_figures(rows: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    """The four figures of a sweep from its aggregated rows."""
    ticks = _size_ticks(rows)
    size_label = "data per partition (nominal size, actual MiB)"
    footnote = setup_line(rows) + ". Solid: pipeline (one rank per partition); dashed: local (the same data in one process)."
    pipeline_note = setup_line(rows) + ". Pipeline runs only: a local run is not billed."
    return [
        line_grid(rows, out / "time_vs_size.png", x="data_mib", panel="world_size", line="batch_size", metrics=["exec_time_mean_s", "wall_time_s"],
                  title="Execution time vs data size (one line per batch size)", xlabel=size_label, xticks=ticks, footnote=footnote),
        line_grid(rows, out / "time_vs_partitions.png", x="world_size", panel="batch_size", line="partition_size", metrics=["wall_time_s", "exec_time_mean_s"],
                  title="Execution time vs number of partitions (= ranks = world size)", xlabel="input partitions (world size)",
                  xticks={r["world_size"]: str(r["world_size"]) for r in rows}, footnote=footnote),
        line_grid(rows, out / "cost_vs_size.png", x="data_mib", panel="world_size", line="batch_size", metrics=["cost_usd"], kinds=("pipeline",),
                  title="Cost per run vs data size (pipeline; AWS list prices)", xlabel=size_label, xticks=ticks, footnote=pipeline_note),
        line_grid(rows, out / "memory_throughput_vs_size.png", x="data_mib", panel="world_size", line="batch_size", metrics=["peak_memory_mib", "throughput_bps"],
                  title="Memory and throughput vs data size", xlabel=size_label, xticks=ticks,
                  footnote=footnote + " Peak RSS of a warm Lambda worker covers its earlier invocations."),
    ]


# -- one run -------------------------------------------------------------------------------


def _save(fig: Any, path: Path, rect: tuple[float, float, float, float] | None = None) -> Path:
    """Lay out (within ``rect``), write and close a figure; return its path."""
    fig.tight_layout(rect=rect) if rect else fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _run_title(summary: dict[str, Any] | None, what: str) -> str:
    if not summary:
        return what
    return f"{what}\nrun {summary.get('run_id')}: {summary.get('status')}, {summary.get('ranks_succeeded')}/{summary.get('world_size')} ranks succeeded"


def _ok(record: dict[str, Any]) -> bool:
    return record.get("status") == "succeeded"


def _error_type(record: dict[str, Any]) -> str:
    error = record.get("error") or {}
    return str(error.get("type") if isinstance(error, dict) else error) or "failed"


def plot_timeline(summary: dict[str, Any] | None, records: Sequence[dict[str, Any]], path: Path) -> Path:
    """Each rank's handler from start to end: load (hatched on a cold start), inference loop, writing results."""
    starts = [(_time(r.get("started_at")), r.get("load_time_s") or 0.0) for r in records]
    candidates = [s.timestamp() - load for s, load in starts if s]
    t0 = _time((summary or {}).get("execution_start"))
    origin = t0.timestamp() if t0 else min(candidates, default=0.0)
    fig, ax = plt.subplots(figsize=(10, min(30, 3.2 + 0.3 * len(records))))
    for record in records:
        y = record.get("rank")
        started, finished = _time(record.get("started_at")), _time(record.get("finished_at"))
        if _ok(record) and started and finished:
            s, f, load = started.timestamp() - origin, finished.timestamp() - origin, record.get("load_time_s") or 0.0
            ax.barh(y, load, left=s - load, color="#9ecae1", hatch="///" if record.get("cold_start") else None, edgecolor="#3182bd")
            ax.barh(y, f - s, left=s, color="#3182bd")
            duration = record.get("lambda_duration_s")
            if duration and duration > load + (f - s):
                ax.barh(y, duration - load - (f - s), left=f, color="#d9d9d9")
        elif started and finished:
            ax.barh(y, finished.timestamp() - started.timestamp(), left=started.timestamp() - origin, color="#de2d26")
            ax.text(finished.timestamp() - origin, y, f"  {_error_type(record)}", va="center", color="#de2d26", fontsize=8)
        else:
            end = finished.timestamp() - origin if finished else 0.0
            ax.plot([end], [y], marker="X", color="#de2d26", markersize=9)
            ax.text(end, y, f"  {record.get('status')}: {_error_type(record)}", va="center", color="#de2d26", fontsize=8)
    end = _time((summary or {}).get("finished_at"))
    ax.axvline(0, color="black", linewidth=0.8)
    if end:
        ax.axvline(end.timestamp() - origin, color="black", linestyle="--", linewidth=0.8)
    ax.invert_yaxis()
    ax.set_ylabel("rank")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("seconds of wall-clock time since the execution started (from the ranks' UTC timestamps)")
    ax.set_title(_run_title(summary, "Per-rank timeline"), fontsize=10)
    fig.legend(
        handles=[
            Patch(facecolor="#9ecae1", edgecolor="#3182bd", label="load partition + model (warm worker)"),
            Patch(facecolor="#9ecae1", edgecolor="#3182bd", hatch="///", label="load, cold start (model loaded in this worker)"),
            Patch(facecolor="#3182bd", label="inference loop"),
            Patch(facecolor="#d9d9d9", label="write predictions + record"),
            Patch(facecolor="#de2d26", label="failed rank (X: no timing)"),
            plt.Line2D([], [], color="black", linestyle="--", label="summary written"),
            Patch(facecolor="white", edgecolor="lightgray", label="gap before a bar: orchestration + worker start (a cold worker imports torch)"),
        ],
        fontsize=7, loc="lower center", ncol=3, frameon=False,
    )
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path, (0, 0.7 / fig.get_figheight(), 1, 1))


def _rank_bars(ax: Any, records: Sequence[dict[str, Any]], values: Sequence[float | None], color: str, offset: float = 0.0, width: float = 0.8, label: str = "") -> None:
    ranks = [r.get("rank") for r in records]
    ok = [(rank + offset, v) for rank, v, r in zip(ranks, values, records) if _ok(r) and v is not None]
    ax.bar([x for x, _ in ok], [v for _, v in ok], width=width, color=color, label=label)


def _mark_failed(ax: Any, records: Sequence[dict[str, Any]]) -> None:
    failed = [r for r in records if not _ok(r)]
    if failed:
        ax.plot([r.get("rank") for r in failed], [0] * len(failed), "X", color="#de2d26", markersize=10, clip_on=False, label="failed rank (no figure)")


def plot_rank_throughput(summary: dict[str, Any] | None, records: Sequence[dict[str, Any]], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(min(24, 7 + 0.25 * len(records)), 4.8))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    values = [r.get("throughput_bps") for r in records]
    _rank_bars(ax, records, values, "#31a354", label="rank throughput")
    found = [v for v, r in zip(values, records) if _ok(r) and v is not None]
    if found:
        ax.axhline(statistics.fmean(found), color="black", linestyle="--", linewidth=0.8, label=f"mean {si(statistics.fmean(found))} bit/s")
    _mark_failed(ax, records)
    ax.yaxis.set_major_formatter(EngFormatter(unit="bit/s"))
    ax.set_ylabel("throughput (bits/s)\nsamples x 20,520 B x 8 / wall time of the rank's loop")
    right = ax.secondary_yaxis("right", functions=(lambda b: b / SAMPLE_BITS, lambda s: s * SAMPLE_BITS))
    right.set_ylabel("samples/s")
    return _save_rank_plot(fig, ax, _run_title(summary, "Per-rank throughput"), path)


def plot_rank_memory(summary: dict[str, Any] | None, records: Sequence[dict[str, Any]], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(min(24, 7 + 0.3 * len(records)), 4.8))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _rank_bars(ax, records, [r.get("peak_rss_mb") for r in records], "#756bb1", -0.2, 0.4, "peak RSS of the worker")
    _rank_bars(ax, records, [r.get("total_cpu_memory (MB)") for r in records], "#bcbddc", 0.2, 0.4, "RSS right after the loop")
    limits = {r.get("lambda_memory_mb") for r in records if r.get("lambda_memory_mb")}
    for limit in sorted(limits):
        ax.axhline(limit, color="#de2d26", linestyle="--", linewidth=0.8, label=f"Infer MemorySize {limit} MB (Lambda's MB = MiB)")
    _mark_failed(ax, records)
    ax.set_ylabel("memory (MiB = 2^20 bytes)")
    return _save_rank_plot(fig, ax, _run_title(summary, "Per-rank memory"), path)


def _save_rank_plot(fig: Any, ax: Any, title: str, path: Path) -> Path:
    """The per-rank plots' common ending: rank axis, title, zero-based y, legend; then saved."""
    ax.set_xlabel("rank")
    ax.set_title(title, fontsize=10)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    return _save(fig, path)


def run_report(summary: dict[str, Any] | None, records: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    """timeline.png, throughput.png and memory.png of one run into ``out``."""
    records = sorted(records, key=lambda r: r.get("rank") or 0)
    return [
        plot_timeline(summary, records, out / "timeline.png"),
        plot_rank_throughput(summary, records, out / "throughput.png"),
        plot_rank_memory(summary, records, out / "memory.png"),
    ]
