"""One run's per-rank figures (matplotlib, Agg backend), drawn by ``cosmicai report RUN_DIR``.

Units: time in seconds of **wall-clock** time; memory in MiB (2**20 bytes,
the reference's "MB"); throughput in **bits** per second (bytes x 8), one
sample = 20,520 B.

Artifacts written by :func:`run_report` beside a run's ``summary.json``:
``timeline.png``, ``throughput.png``, ``memory.png``.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from matplotlib.patches import Patch
from matplotlib.ticker import EngFormatter, MaxNLocator

from cosmicai.study.plots import plt
from cosmicai.study.plots import save as _save
from cosmicai.study.results import si
from inference.naming import SAMPLE_BYTES

SAMPLE_BITS = SAMPLE_BYTES * 8


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
