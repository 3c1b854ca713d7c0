"""The benchmark's results table (``results.csv``) and the rerun logic keyed on it.

Columns of ``results.csv`` (MB = MiB; time is wall-clock unless it says CPU):
``target`` (``local`` for local rows), ``kind``, ``model``, ``partition_size``
(nominal), ``scale``, ``seed``, ``world_size``, ``batch_size``, ``repeat``,
``memory_mb`` (Infer MemorySize) and ``max_concurrency`` (pipeline only) are
the configuration; ``samples``, ``samples_per_partition``, ``data_mib`` (MiB
per partition), ``run_id``, ``status``, ``error``, ``wall_time_s`` (pipeline:
execution start to summary; local: data + model load + loop), ``cpu_time_s``
(process CPU time of the inference loops, summed over ranks),
``exec_time_mean_s`` / ``exec_time_p95_s`` (seconds per batch: each rank's
loop wall time / its batches; mean and p95 over ranks), ``peak_memory_mib``
(peak RSS, max over ranks; a warm worker's peak covers its earlier
invocations), ``rss_mib`` (RSS right after the loop, max over ranks),
``throughput_bps`` (bits/s: samples x 20,520 B x 8 / wall_time_s),
``loop_throughput_bps`` (sum over ranks of each rank's bits/s over its loop,
the reference's figure), ``samples_per_s`` (samples / wall_time_s),
``cost_usd`` (one run at AWS list prices, ``inference.cost``; empty for local),
``load_avg_1m`` (the machine's 1-minute load average as the run ended: a
figure above the core count means other work competed for the CPUs) and
``measured_at`` (UTC, when the run ended).

A row's configuration is ``KEY_COLUMNS``; a rerun skips the configurations
that have a succeeded row (``pending``) and replaces failed ones (``merge``).

``aggregate`` averages repeats; ``sort_key``, ``setup_line`` and ``si`` are the
labels the tables (``cosmicai.study.tables``) and figures (``cosmicai.study.plots``) share.
"""

from __future__ import annotations

import csv
import os
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from inference.naming import SAMPLE_BYTES, parse_size

KEY_COLUMNS = ("target", "kind", "model", "partition_size", "scale", "seed", "world_size", "batch_size", "repeat", "memory_mb", "max_concurrency")
MEASURED_COLUMNS = (
    "samples", "samples_per_partition", "data_mib", "run_id", "status", "error", "wall_time_s", "cpu_time_s",
    "exec_time_mean_s", "exec_time_p95_s", "peak_memory_mib", "rss_mib", "throughput_bps", "loop_throughput_bps",
    "samples_per_s", "cost_usd", "load_avg_1m", "measured_at",
)
COLUMNS = KEY_COLUMNS + MEASURED_COLUMNS
INT_COLUMNS = {"seed", "world_size", "batch_size", "repeat", "memory_mb", "max_concurrency", "samples", "samples_per_partition"}
FLOAT_COLUMNS = {"scale", "data_mib", "wall_time_s", "cpu_time_s", "exec_time_mean_s", "exec_time_p95_s", "peak_memory_mib", "rss_mib",
                 "throughput_bps", "loop_throughput_bps", "samples_per_s", "cost_usd", "load_avg_1m"}
MIB = 2**20


def samples_per_partition(partition_size: str, scale: float) -> int:
    """Samples in one partition of nominal size ``partition_size`` shrunk by ``scale`` (at least 1)."""
    return max(1, int(parse_size(partition_size) * scale // SAMPLE_BYTES))


@dataclass(frozen=True)
class Config:
    """One measurement of the sweep (the key columns of results.csv)."""

    target: str  # the target's name, or "local" for the local baseline
    kind: str  # "pipeline" or "local"
    model: str  # tiny, full or a checkpoint file
    partition_size: str  # nominal size of one partition, binary units ("25MB" = 25 MiB)
    scale: float  # data shrink factor: samples per partition = size x scale / 20,520 B
    seed: int  # seed of the synthetic data
    world_size: int  # partitions in the data set = ranks
    batch_size: int
    repeat: int  # 1-based
    memory_mb: int | None  # Infer MemorySize (pipeline only)
    max_concurrency: int | None  # Map MaxConcurrency (pipeline only)

    @property
    def samples_per_partition(self) -> int:
        return samples_per_partition(self.partition_size, self.scale)

    @property
    def samples(self) -> int:
        return self.world_size * self.samples_per_partition

    @property
    def dataset(self) -> tuple[str, float, int, int]:
        return (self.partition_size, self.scale, self.seed, self.world_size)

    def key(self) -> tuple[str, ...]:
        return config_key(asdict(self))

    def label(self) -> str:
        return f"{self.kind} {self.partition_size} x{self.world_size} b{self.batch_size} #{self.repeat}"


def config_key(row: dict[str, Any]) -> tuple[str, ...]:
    """The configuration of a row, normalized ("25MB" == "25MiB", "0.05" == 0.05, "" == None)."""
    key = []
    for column in KEY_COLUMNS:
        value = row.get(column)
        if value is None or value == "":
            key.append("")
        elif column == "partition_size":
            key.append(str(parse_size(value)))
        elif column == "scale":
            key.append(repr(float(value)))
        elif column in INT_COLUMNS:
            key.append(str(int(float(value))))
        else:
            key.append(str(value))
    return tuple(key)


def pending(configs: Sequence[Config], rows: Sequence[dict[str, Any]]) -> list[Config]:
    """The configurations without a succeeded row (failed rows are measured again)."""
    done = {config_key(row) for row in rows if row.get("status") == "succeeded"}
    return [config for config in configs if config.key() not in done]


def merge(rows: list[dict[str, Any]], row: dict[str, Any]) -> list[dict[str, Any]]:
    """rows with ``row`` in place of any earlier row of the same configuration."""
    key = config_key(row)
    return [r for r in rows if config_key(r) != key] + [row]


def _typed(column: str, text: str) -> Any:
    if text == "":
        return None
    try:
        if column in INT_COLUMNS:
            return int(float(text))
        if column in FLOAT_COLUMNS:
            return float(text)
    except ValueError:
        raise ValueError(f"results.csv column {column!r}: not a number: {text!r}") from None
    return text


def read_results(path: Path) -> list[dict[str, Any]]:
    """The rows of a results.csv with numbers typed; ValueError when it is missing or not ours."""
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in KEY_COLUMNS + ("status",) if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{path}: not a cosmicai bench results.csv (missing columns: {', '.join(missing)})")
            return [{column: _typed(column, row.get(column) or "") for column in COLUMNS} for row in reader]
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file (run 'cosmicai bench --out {path.parent}' first)") from None


def write_results(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write every row (atomically: a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in COLUMNS})
    os.replace(tmp, path)


# -- labels shared by the tables and the figures ----------------------------------------------


def sort_key(value: Any) -> tuple:
    """Numbers and sizes ("25MB" < "100MB") in numeric order, then other text in text order."""
    if isinstance(value, (int, float)):
        return (0, value, "")
    try:
        return (0, parse_size(str(value)), "")
    except ValueError:
        return (1, 0, str(value))


def setup_line(rows: Sequence[dict[str, Any]]) -> str:
    """One line naming what the rows were measured with (targets, models, scales, MemorySize)."""

    def values(key: str) -> str:
        return ", ".join(str(v) for v in sorted({r.get(key) for r in rows if r.get(key) not in (None, "")}, key=sort_key)) or "-"

    return (
        f"target {values('target')}; model {values('model')}; data scale {values('scale')} "
        f"(a partition holds nominal size x scale / 20,520 B samples); Infer MemorySize {values('memory_mb')} MB"
    )


def si(value: Any) -> str:
    """A number with an SI prefix (k = 10^3, M = 10^6, G = 10^9), three significant digits."""
    if value is None:
        return "—"
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def _mean(values: Iterable[Any]) -> float | None:
    found = [float(v) for v in values if v is not None]
    return statistics.fmean(found) if found else None


GROUP = ("target", "kind", "model", "partition_size", "scale", "world_size", "batch_size", "memory_mb", "max_concurrency")
AVERAGED = (
    "samples", "samples_per_partition", "data_mib", "wall_time_s", "cpu_time_s", "exec_time_mean_s", "exec_time_p95_s",
    "peak_memory_mib", "rss_mib", "throughput_bps", "loop_throughput_bps", "samples_per_s", "cost_usd",
)


def aggregate(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Succeeded rows averaged over repeats (same configuration but ``repeat``); ``runs`` counts them."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("status") == "succeeded":
            groups.setdefault(tuple(row.get(k) for k in GROUP), []).append(row)
    out = []
    for members in groups.values():
        merged = {k: members[0].get(k) for k in GROUP}
        merged.update({k: _mean(m.get(k) for m in members) for k in AVERAGED})
        merged["runs"] = len(members)
        out.append(merged)
    return sorted(out, key=lambda r: (r["kind"] != "pipeline", r["world_size"], r["data_mib"] or 0, r["batch_size"]))
