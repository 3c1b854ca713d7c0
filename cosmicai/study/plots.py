"""A benchmark sweep's figures (matplotlib, Agg backend): one message each, medians with min–max error bars.

Units everywhere: time in seconds of **wall-clock** time; memory in MiB
(2**20 bytes, the reference's "MB"); throughput in **bits** per second
(bytes x 8), one sample = 20,520 B; cost in US dollars. Every point is the
median over a configuration's repeats; its bar spans their min and max.
"cold" is a fresh process (``cosmicai run`` / ``cosmicai local``), "warm" the
inference loop alone (``cosmicai.study.measure``).

Artifacts written by :func:`bench_figures` into the sweep folder (beside
``report.md``): ``time_vs_size.png`` (time against the data set size at one
world size), ``time_vs_partitions.png`` (time against the number of
partitions at one partition size, with the ideal scaling line),
``memory.png`` (peak memory of one process against the data it holds),
``throughput.png`` (bits/s against the data set size) and ``cost.png`` (each
configuration's work on an AWS Lambda fleet, projected, beside this machine).
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import EngFormatter, StrMethodFormatter

from cosmicai.study.projection import projections
from cosmicai.study.results import MIB, money, setup_line, sort_key
from inference.naming import SAMPLE_BYTES

SAMPLE_BITS = SAMPLE_BYTES * 8
COLORS = {"pipeline": "#1f77b4", "local": "#e6550d"}
FIGURES = {"cold_s": ("-", "o", "full"), "warm_s": ("--", "s", "none")}  # linestyle, marker, fill
LABELS = {
    ("pipeline", "cold_s"): "pipeline, cold: a fresh `cosmicai run` process",
    ("pipeline", "warm_s"): "pipeline, warm: the inference loops on warm workers",
    ("local", "cold_s"): "local, cold: a fresh `cosmicai local` process",
    ("local", "warm_s"): "local, warm: the inference loop in a warm process",
}


def save(fig: Any, path: Path, rect: tuple[float, float, float, float] | None = None) -> Path:
    """Lay out (within ``rect``), write and close a figure; return its path."""
    fig.tight_layout(rect=rect) if rect else fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def dataset_mib(row: dict[str, Any]) -> float:
    return row["samples"] * SAMPLE_BYTES / MIB


def _most(rows: Sequence[dict[str, Any]], key: str, varying: str, prefer: Callable[[Any], Any]) -> Any:
    """The value of ``key`` under which ``varying`` takes the most values (ties: the first by ``prefer``)."""
    counts: dict[Any, set] = {}
    for row in rows:
        counts.setdefault(row[key], set()).add(row[varying])
    return min(counts, key=lambda value: (-len(counts[value]), prefer(value)))


def _panels(rows: Sequence[dict[str, Any]], height: float = 4.6) -> tuple[Any, list[Any], list[int]]:
    batches = sorted({r["batch_size"] for r in rows})
    fig, axes = plt.subplots(1, len(batches), figsize=(2.5 + 5.8 * len(batches), height), squeeze=False)
    return fig, list(axes[0]), batches


def _errorbar(ax: Any, xs: Sequence[float], three: Sequence[tuple[float, float, float]], **style: Any) -> Any:
    medians = [m for m, _, _ in three]
    below = [max(m - lo, 0.0) for m, lo, _ in three]
    above = [max(hi - m, 0.0) for m, _, hi in three]
    return ax.errorbar(xs, medians, yerr=[below, above], capsize=3, linewidth=1.6, markersize=6, **style)


def _three(row: dict[str, Any], column: str, transform: Callable[[float], float] | None = None) -> tuple[float, float, float] | None:
    if row.get(column) is None:
        return None
    values = (row[column], row.get(f"{column}_min", row[column]), row.get(f"{column}_max", row[column]))
    if transform is None:
        return values  # type: ignore[return-value]
    median, low, high = (transform(v) for v in values)
    return median, min(low, high), max(low, high)


def _time_series(ax: Any, rows: Sequence[dict[str, Any]], x: Callable[[dict[str, Any]], float],
                 y: Callable[[dict[str, Any], str], tuple[float, float, float] | None]) -> None:
    for kind in ("pipeline", "local"):
        for column, (linestyle, marker, fill) in FIGURES.items():
            points = sorted((x(r), y(r, column)) for r in rows if r["kind"] == kind and y(r, column) is not None)
            if points:
                _errorbar(ax, [p for p, _ in points], [t for _, t in points], color=COLORS[kind], linestyle=linestyle,
                          marker=marker, fillstyle=fill, label=LABELS[(kind, column)])


def _finish(fig: Any, axes: Sequence[Any], title: str, rows: Sequence[dict[str, Any]], path: Path, note: str = "") -> Path:
    """Title, one legend below the panels, a footnote (the setup, what a point is, the load), then save."""
    fig.suptitle(title, fontsize=12)
    handles, labels = axes[0].get_legend_handles_labels()
    loaded = sum(r.get("loaded") or 0 for r in rows)
    footnote = " ".join(filter(None, [
        note, "Points: median of the repeats; bars: min–max.", setup_line(rows) + ".",
        f"{loaded} runs measured while other work competed for the CPUs: their times are inflated." if loaded else "",
    ]))
    width = fig.get_figwidth()
    text = "\n".join(textwrap.wrap(footnote, width=int(width * 14)))
    note_in = 0.12 + 0.14 * (text.count("\n") + 1)
    longest = max((len(label) for label in labels), default=0)
    columns = 2 if len(labels) > 2 and 2 * (0.065 * longest + 0.6) <= width else 1
    legend_in = 0.12 + 0.24 * math.ceil(len(labels) / columns) if labels else 0.0
    fig.set_figheight(fig.get_figheight() + note_in + legend_in)
    height = fig.get_figheight()
    fig.text(0.01, 0.06 / height, text, fontsize=7.5, color="dimgray", va="bottom")
    if labels:
        fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, note_in / height), ncol=columns, fontsize=8.5, frameon=False)
    return save(fig, path, (0, (note_in + legend_in) / height, 1, 0.96))


def _start_at_zero(ax: Any) -> None:
    ax.set_ylim(0, ax.get_ylim()[1] * 1.05)
    ax.grid(alpha=0.3)


def plot_time_vs_size(table: Sequence[dict[str, Any]], path: Path) -> Path:
    world = _most(table, "world_size", "partition_size", lambda w: -w)
    rows = [r for r in table if r["world_size"] == world]
    fig, axes, batches = _panels(rows)
    for ax, batch in zip(axes, batches):
        in_panel = [r for r in rows if r["batch_size"] == batch]
        _time_series(ax, in_panel, dataset_mib, _three)
        ticks = sorted({dataset_mib(r): f"{world} × {r['partition_size']}\n{dataset_mib(r):,.3g} MiB" for r in in_panel}.items())
        ax.set_xticks([t for t, _ in ticks], [label for _, label in ticks], fontsize=8)
        ax.set_xlabel(f"data set size ({world} partitions of the nominal size; MiB = 2^20 B)")
        ax.set_ylabel("time (s, wall-clock)")
        ax.set_title(f"world size {world}, batch size {batch}", fontsize=10)
        _start_at_zero(ax)
    return _finish(fig, axes, "Time vs data size: cold (a fresh process) and warm (the inference loop)", rows, path)


def plot_time_vs_partitions(table: Sequence[dict[str, Any]], path: Path) -> Path:
    size = _most(table, "partition_size", "world_size", sort_key)
    rows = [r for r in table if r["partition_size"] == size]
    fig, axes, batches = _panels(rows)
    note = ""
    for ax, batch in zip(axes, batches):
        in_panel = [r for r in rows if r["batch_size"] == batch]
        _time_series(ax, in_panel, lambda r: r["world_size"], _three)
        warm = sorted((r["world_size"], r["warm_s"], r.get("max_concurrency") or 1) for r in in_panel if r["kind"] == "pipeline" and r.get("warm_s"))
        if len(warm) > 1:
            w0, t0, slots = warm[0]
            worlds = sorted({r["world_size"] for r in in_panel})
            ideal = [t0 * math.ceil(w / slots) / math.ceil(w0 / slots) for w in worlds]
            ax.plot(worlds, ideal, color="gray", linestyle=":", linewidth=2,
                    label=f"ideal for the pipeline, warm: T({w0}) × ⌈W / {slots}⌉ ({slots} ranks at a time)")
            note = f"The data set is W partitions of {size}: the work grows with W. MaxConcurrency {slots}."
        worlds = sorted({r["world_size"] for r in in_panel})
        ax.set_xticks(worlds, [str(w) for w in worlds])
        ax.set_xlabel("input partitions = ranks (world size W)")
        ax.set_ylabel("time (s, wall-clock)")
        ax.set_title(f"partition size {size}, batch size {batch}", fontsize=10)
        _start_at_zero(ax)
    return _finish(fig, axes, "Time vs number of partitions, against ideal scaling", rows, path, note)


def plot_memory(table: Sequence[dict[str, Any]], path: Path) -> Path:
    fig, axes, batches = _panels(table)
    for ax, batch in zip(axes, batches):
        for kind, label in (("pipeline", "pipeline: one rank (a worker), one partition"), ("local", "local: one process, the whole data set")):
            held: dict[float, list[tuple[float, float, float]]] = {}
            for r in table:
                three = _three(r, "peak_memory_mib")
                if r["kind"] == kind and r["batch_size"] == batch and three:
                    mib = r["data_mib"] if kind == "pipeline" else dataset_mib(r)
                    held.setdefault(round(mib, 3), []).append(three)
            if held:
                xs = sorted(held)
                merged = [(sorted(m for m, _, _ in held[x])[len(held[x]) // 2], min(lo for _, lo, _ in held[x]), max(hi for _, _, hi in held[x])) for x in xs]
                _errorbar(ax, xs, merged, color=COLORS[kind], marker="o", label=label)
        for limit in sorted({r["memory_mb"] for r in table if r.get("memory_mb")}):
            ax.axhline(limit, color="#de2d26", linestyle="--", linewidth=1, label=f"Infer MemorySize {limit} MB (Lambda's limit; MB = MiB)")
        ax.set_xlabel("data held by the process (MiB = 2^20 B)")
        ax.set_ylabel("peak memory (MiB): peak RSS of a fresh process")
        ax.set_title(f"batch size {batch}", fontsize=10)
        _start_at_zero(ax)
    return _finish(fig, axes, "Peak memory vs the data one process holds", table, path,
                   "Pipeline: the largest peak over the ranks of a cold run. Configurations with the same x are pooled.")


def plot_throughput(table: Sequence[dict[str, Any]], path: Path) -> Path:
    world = _most(table, "world_size", "partition_size", lambda w: -w)
    rows = [r for r in table if r["world_size"] == world]
    fig, axes, batches = _panels(rows)
    for ax, batch in zip(axes, batches):
        in_panel = [r for r in rows if r["batch_size"] == batch]
        _time_series(ax, in_panel, dataset_mib, lambda r, c: _three(r, c, lambda s, n=r["samples"]: n * SAMPLE_BITS / s if s else 0.0))
        ticks = sorted({dataset_mib(r): f"{world} × {r['partition_size']}\n{dataset_mib(r):,.3g} MiB" for r in in_panel}.items())
        ax.set_xticks([t for t, _ in ticks], [label for _, label in ticks], fontsize=8)
        ax.yaxis.set_major_formatter(EngFormatter(unit="bit/s"))
        ax.set_xlabel(f"data set size ({world} partitions of the nominal size)")
        ax.set_ylabel("throughput: data bits / time")
        right = ax.secondary_yaxis("right", functions=(lambda b: b / SAMPLE_BITS, lambda s: s * SAMPLE_BITS))
        right.set_ylabel("samples/s")
        ax.set_title(f"world size {world}, batch size {batch}", fontsize=10)
        _start_at_zero(ax)
    return _finish(fig, axes, "Throughput vs data size: what the loop does (warm), what a user gets (cold)", rows, path,
                   "1 sample = 20,520 B = 164,160 bits.")


def plot_cost(table: Sequence[dict[str, Any]], path: Path) -> Path:
    rows = [r for r in projections(table) if r.get("fleet_usd") is not None or r.get("machine_usd") is not None]
    fig, ax = plt.subplots(figsize=(max(7.5, 2.5 + 1.6 * len(rows)), 4.8))
    memory = next((r["memory_mb"] for r in rows if r.get("memory_mb")), None)
    bars = (
        ("fleet_usd", "#1f77b4", f"AWS Lambda fleet (projected): all ranks at once, {memory} MB each, 10 s cold start each"),
        ("machine_usd", "#e6550d", "this machine rented on demand (EC2 price per vCPU-hour x its cores) for the local cold time"),
    )
    width = 0.38
    for offset, (column, color, label) in zip((-width / 2, width / 2), bars):
        placed = [(i + offset, _three(r, column)) for i, r in enumerate(rows) if r.get(column) is not None]
        if not placed:
            continue
        xs, three = [x for x, _ in placed], [t for _, t in placed]
        ax.bar(xs, [m for m, _, _ in three], width=width, color=color, label=label,
               yerr=[[m - lo for m, lo, _ in three], [hi - m for m, _, hi in three]], capsize=3)
        for x, (median, _, high) in zip(xs, three):
            ax.annotate(money(median), (x, high), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=7.5)
    ax.set_xticks(range(len(rows)), [f"{r['world_size']} × {r['partition_size']}\nbatch {r['batch_size']}\n{r['samples']:,} samples" for r in rows], fontsize=8)
    ax.set_xlabel("configuration (input partitions × partition size)")
    ax.set_ylabel("US dollars for the configuration's work")
    ax.yaxis.set_major_formatter(StrMethodFormatter("${x:,g}"))
    _start_at_zero(ax)
    ax.set_ylim(0, ax.get_ylim()[1] * 1.1)
    return _finish(fig, [ax], "Cost of the same work: an AWS Lambda fleet vs this machine", table, path,
                   "Fleet: per rank 10 s + samples x the per-sample time of one pipeline worker measured here, priced by inference/cost.py.")


def bench_figures(table: Sequence[dict[str, Any]], out: Path) -> list[Path]:
    """The five figures of a sweep from its aggregated rows (``results.aggregate``)."""
    return [
        plot_time_vs_size(table, out / "time_vs_size.png"),
        plot_time_vs_partitions(table, out / "time_vs_partitions.png"),
        plot_memory(table, out / "memory.png"),
        plot_throughput(table, out / "throughput.png"),
        plot_cost(table, out / "cost.png"),
    ]
