"""The benchmark's results table (``results.csv``): its columns, the rerun logic, the per-configuration statistics.

``results.csv`` holds one row per measured run (``stat`` = ``run``) and, after
them, three rows per configuration (``stat`` = ``median``, ``min``, ``max``):
each measured number over that configuration's succeeded runs, ``runs``
counting them. Reading keeps only the ``run`` rows; the statistics are
recomputed on every write. Columns (MB = MiB; time is wall-clock unless it
says CPU):

- configuration (``KEY_COLUMNS``): ``target`` (``local`` for local rows),
  ``kind`` (``pipeline`` or ``local``), ``model``, ``partition_size``
  (nominal), ``scale``, ``seed``, ``world_size``, ``batch_size``, ``repeat``,
  ``memory_mb`` (Infer MemorySize) and ``max_concurrency`` (pipeline only);
- ``samples``, ``samples_per_partition``, ``data_mib`` (MiB per partition),
  ``threads`` (torch threads of the process that ran the loop: a pipeline
  worker's, or the local process's), ``run_id`` (a pipeline row's warm run
  folder is ``runs/<run_id>``, its cold run's ``runs/<run_id>-cold``),
  ``status``, ``error``;
- ``cold_s``: a fresh process, as a user feels it: the wall time of
  ``cosmicai run`` (pipeline: emulator start, deploy, cold workers, execution,
  fetch) or ``cosmicai local`` (local: interpreter, imports, data, model,
  loop) started in a new process, ``--no-cold`` leaves it empty;
- ``warm_s``: the inference loop alone, on warm workers / in a warm process:
  from the first rank's loop start to the last rank's loop end (local: the
  loop); ``execution_s``: pipeline: the execution on warm workers, start to
  summary; local: data + model load + loop in the warm process;
- ``cpu_time_s`` (process CPU time of the loops, summed over ranks),
  ``exec_time_mean_s`` / ``exec_time_p95_s`` (seconds per batch: each rank's
  loop / its batches; mean and p95 over ranks), ``sample_time_ms`` (loop time
  per sample of one rank, mean over ranks);
- ``peak_memory_mib`` (peak RSS, max over ranks, of the cold run's fresh
  processes; of the warm run without one), ``rss_mib`` (RSS after the warm loop);
- ``throughput_bps`` (bits/s: samples x 20,520 B x 8 / warm_s),
  ``samples_per_s`` (samples / warm_s), ``cost_usd`` (the warm run at AWS
  list prices, ``inference.cost``; empty for local);
- ``load_avg_1m`` (the machine's 1-minute load average, the highest seen
  after the row's runs: it counts the bench's own processes too),
  ``other_cpu`` (CPUs' worth of time that processes outside the bench used
  during the row's runs, on average: :class:`OtherWork`), ``cores`` (CPUs of
  the machine), ``cpu`` (its processor's name, from /proc/cpuinfo or the
  platform), ``loaded`` (1 when other_cpu > 0.5: other work competed for the
  CPUs; rows without other_cpu: load_avg_1m > cores; in a statistic row: how
  many of the runs were), ``measured_at`` (UTC).

A rerun skips the configurations that have a succeeded row (``pending``) and
replaces failed ones (``merge``).
"""

from __future__ import annotations

import csv
import math
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from inference.naming import SAMPLE_BYTES, parse_size

KEY_COLUMNS = ("target", "kind", "model", "partition_size", "scale", "seed", "world_size", "batch_size", "repeat", "memory_mb", "max_concurrency")
STATISTICS = ("median", "min", "max")
SPREAD = (  # measured numbers: each statistic row holds its statistic of these
    "cold_s", "warm_s", "execution_s", "cpu_time_s", "exec_time_mean_s", "exec_time_p95_s", "sample_time_ms",
    "peak_memory_mib", "rss_mib", "throughput_bps", "samples_per_s", "cost_usd", "load_avg_1m", "other_cpu",
)
MEASURED_COLUMNS = (
    "samples", "samples_per_partition", "data_mib", "threads", "run_id", "status", "error", *SPREAD,
    "cores", "cpu", "loaded", "runs", "measured_at",
)
COLUMNS = ("stat", *KEY_COLUMNS, *MEASURED_COLUMNS)
INT_COLUMNS = {"seed", "world_size", "batch_size", "repeat", "memory_mb", "max_concurrency", "samples", "samples_per_partition",
               "threads", "cores", "loaded", "runs"}
FLOAT_COLUMNS = {"scale", "data_mib", *SPREAD}
GROUP = tuple(k for k in KEY_COLUMNS if k != "repeat")  # a configuration, over its repeats
MIB = 2**20
OTHER_WORK_LIMIT = 0.5  # CPUs' worth of other processes' work above which a run's times count as inflated


def samples_per_partition(partition_size: str, scale: float) -> int:
    """Samples in one partition of nominal size ``partition_size`` shrunk by ``scale`` (at least 1)."""
    return max(1, int(parse_size(partition_size) * scale // SAMPLE_BYTES))


@dataclass(frozen=True)
class Config:
    """One measurement of the sweep (the key columns of results.csv)."""

    target: str  # the target's name, or "local" for the local baseline
    kind: str  # "pipeline" or "local"
    model: str  # astromae, tiny or a checkpoint file
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


def config_key(row: dict[str, Any], columns: Sequence[str] = KEY_COLUMNS) -> tuple[str, ...]:
    """The configuration of a row, normalized ("25MB" == "25MiB", "0.05" == 0.05, "" == None)."""
    key = []
    for column in columns:
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


def is_loaded(load_avg_1m: float | None, cores: int | None, other_cpu: float | None = None) -> bool:
    """True when other work competed for the CPUs: processes outside the bench used more than half a CPU on
    average (``other_cpu``); for a row that lacks it, the 1-minute load average exceeded the core count."""
    if other_cpu is not None:
        return other_cpu > OTHER_WORK_LIMIT
    return load_avg_1m is not None and cores is not None and load_avg_1m > cores


def machine_load() -> tuple[float, int]:
    """(1-minute load average, core count) of this machine now."""
    return os.getloadavg()[0], os.cpu_count() or 1


class OtherWork:
    """How much CPU processes outside this one's tree used since it was made, in CPUs' worth (CPU s / wall s).

    The machine's busy time (``psutil.cpu_times``: all but idle and iowait; steal counts, it is other VMs' work)
    minus this process's, its live descendants' and its reaped children's CPU time. The load average cannot tell
    the bench's own workers from other work; this can."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.machine, self.ours = self._machine(), self._ours()

    @staticmethod
    def _machine() -> float:
        times = psutil.cpu_times()
        return sum(getattr(times, name, 0.0) for name in ("user", "nice", "system", "irq", "softirq", "steal"))

    @staticmethod
    def _ours() -> float:
        me = psutil.Process()
        total = sum(me.cpu_times()[:4])  # user, system, and those of the children it reaped (with theirs)
        for child in me.children(recursive=True):
            try:
                times = child.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
        return total

    def cpus(self) -> float:
        """CPUs' worth of other processes' work since the start (never below 0)."""
        wall = time.perf_counter() - self.started
        other = (self._machine() - self.machine) - (self._ours() - self.ours)
        return max(0.0, other / wall) if wall > 0 else 0.0


def cpu_name() -> str:
    """This machine's processor, as /proc/cpuinfo (else the platform) names it."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


# -- the statistics over repeats -------------------------------------------------------------


def aggregate(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One dict per configuration over its succeeded runs: each SPREAD column holds the median, with
    ``<column>_min`` and ``<column>_max`` beside it; ``runs`` counts the runs, ``loaded`` the loaded ones."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("status") == "succeeded" and row.get("stat", "run") in ("run", None):
            groups.setdefault(config_key(row, GROUP), []).append(row)
    out = []
    for members in groups.values():
        first = members[0]
        merged = {k: first.get(k) for k in (*GROUP, "seed", "samples", "samples_per_partition", "data_mib", "threads", "cores", "cpu")}
        for column in SPREAD:
            found = [float(m[column]) for m in members if m.get(column) is not None]
            merged[column] = statistics.median(found) if found else None
            merged[f"{column}_min"] = min(found) if found else None
            merged[f"{column}_max"] = max(found) if found else None
        merged["runs"] = len(members)
        merged["loaded"] = sum(1 for m in members if is_loaded(m.get("load_avg_1m"), m.get("cores"), m.get("other_cpu")))
        out.append(merged)
    return sorted(out, key=lambda r: (r["kind"] != "pipeline", r["world_size"], r["data_mib"] or 0, r["batch_size"]))


def statistic_rows(table: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``median``, ``min`` and ``max`` rows of results.csv from ``aggregate``'s output."""
    rows = []
    for config in table:
        for stat in STATISTICS:
            row = {k: v for k, v in config.items() if k not in SPREAD and not k.endswith(("_min", "_max"))}
            row.update(stat=stat, repeat=None, status="succeeded")
            row.update({c: config[c] if stat == "median" else config[f"{c}_{stat}"] for c in SPREAD})
            rows.append(row)
    return rows


# -- the file --------------------------------------------------------------------------------


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
    """The run rows of a results.csv with numbers typed (statistic rows are left out: they are recomputed);
    ValueError when it is missing or not ours."""
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in KEY_COLUMNS + ("status",) if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{path}: not a cosmicai bench results.csv (missing columns: {', '.join(missing)})")
            rows = [{column: _typed(column, row.get(column) or "") for column in COLUMNS} for row in reader]
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file (run 'cosmicai bench --out {path.parent}' first)") from None
    return [{**row, "stat": "run"} for row in rows if row["stat"] in (None, "run")]


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return value


def write_results(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Write every run row, then each configuration's median, min and max rows (atomically: a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    runs = [{**row, "stat": "run"} for row in rows if row.get("stat", "run") in ("run", None)]
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in [*runs, *statistic_rows(aggregate(runs))]:
            writer.writerow({k: _cell(row.get(k)) for k in COLUMNS})
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
    """One line naming what the rows were measured with (targets, models, scales, MemorySize, cores)."""

    def values(key: str) -> str:
        return ", ".join(str(v) for v in sorted({r.get(key) for r in rows if r.get(key) not in (None, "")}, key=sort_key)) or "-"

    return (
        f"target {values('target')}; model {values('model')}; data scale {values('scale')} "
        f"(a partition holds nominal size x scale / 20,520 B samples); Infer MemorySize {values('memory_mb')} MB; "
        f"MaxConcurrency {values('max_concurrency')}; {values('cores')} cores ({values('cpu')})"
    )


def si(value: Any) -> str:
    """A number with an SI prefix (k = 10^3, M = 10^6, G = 10^9), three significant digits."""
    if value is None:
        return "—"
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def money(value: float | None) -> str:
    """US dollars rounded to what matters: cents from $1 up, else three significant digits ($0.384, $0.000148)."""
    if value is None:
        return "—"
    if value == 0:
        return "$0.00"
    decimals = max(2, 2 - math.floor(math.log10(abs(value))))
    return f"${value:,.{decimals}f}"


def spread(row: dict[str, Any], column: str, fmt: Any = "{:.3g}".format) -> str:
    """``median (min–max)`` of a column of an aggregated row; the median alone when min == max; — when absent."""
    median, low, high = row.get(column), row.get(f"{column}_min"), row.get(f"{column}_max")
    if median is None:
        return "—"
    if low is None or high is None or fmt(low) == fmt(high):
        return fmt(median)
    return f"{fmt(median)} ({fmt(low)}–{fmt(high)})"
