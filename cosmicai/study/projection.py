"""The projection of each measured configuration: the same work on an AWS Lambda fleet and on this machine.

For a configuration (data set of W partitions of n samples, batch size B):

- **Lambda fleet**: W ranks run at once (Map MaxConcurrency = W), each for
  ``LAMBDA_COLD_START_S`` + n x the per-sample time measured here (a
  pipeline rank's warm loop per sample: one worker of this machine, its
  threads; Lambda's CPU share grows with MemorySize, one vCPU per 1,769 MB).
  Time: one rank's seconds (orchestration not counted); dollars:
  ``inference.cost.estimate_cost`` at the sweep's Infer MemorySize.
- **This machine**: the measured cold time of the local run (one fresh
  process over the whole data set, as you would run it here; the pipeline's
  cold time when there is no local row), priced at an on-demand EC2 rate for
  a machine with this many cores (``inference.cost.machine_cost``).

Each figure is a median with min and max (from the min and max of its
measured input). No file is written here; ``cosmicai.study.tables`` and
``cosmicai.study.plots`` show the rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from inference.cost import LAMBDA_COLD_START_S, estimate_cost, machine_cost

PAIR = ("model", "partition_size", "scale", "world_size", "batch_size")  # what a pipeline row and its local twin share


def _pair(row: dict[str, Any]) -> tuple:
    return tuple(row.get(k) for k in PAIR)


def twins(table: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any] | None, dict[str, Any] | None]]:
    """(pipeline row, local row) of each configuration in ``table`` (aggregated), either possibly None."""
    pairs: dict[tuple, list[Any]] = {}
    for row in table:
        slot = pairs.setdefault(_pair(row), [None, None])
        slot[0 if row["kind"] == "pipeline" else 1] = row
    return [(p, q) for p, q in pairs.values()]


def _three(row: dict[str, Any] | None, column: str) -> tuple[float, float, float] | None:
    if row is None or row.get(column) is None:
        return None
    median = row[column]
    return median, row.get(f"{column}_min", median) or median, row.get(f"{column}_max", median) or median


def project(pipeline: dict[str, Any] | None, local: dict[str, Any] | None) -> dict[str, Any]:
    """One projection row: the configuration, the per-sample time, the fleet's and this machine's seconds and dollars
    (each key ``<name>`` a median with ``<name>_min`` / ``<name>_max``; None where nothing measured it)."""
    row = pipeline or local
    assert row is not None
    out: dict[str, Any] = {k: row.get(k) for k in (*PAIR, "samples", "samples_per_partition", "cores", "memory_mb")}
    out["memory_mb"] = (pipeline or {}).get("memory_mb")
    out["loaded"] = sum((r or {}).get("loaded") or 0 for r in (pipeline, local))
    per_sample = _three(pipeline, "sample_time_ms")
    n, world = row["samples_per_partition"], row["world_size"]
    for name in ("sample_time_ms", "fleet_s", "fleet_usd", "machine_s", "machine_usd"):
        out.update({name: None, f"{name}_min": None, f"{name}_max": None})
    if per_sample and out["memory_mb"]:
        for suffix, ms in zip(("", "_min", "_max"), per_sample):
            seconds = LAMBDA_COLD_START_S + n * ms / 1000
            out[f"sample_time_ms{suffix}"] = ms
            out[f"fleet_s{suffix}"] = seconds
            out[f"fleet_usd{suffix}"] = estimate_cost(world_size=world, seconds_per_rank=seconds, memory_mb=out["memory_mb"])["total"]
    here = _three(local, "cold_s") or _three(pipeline, "cold_s")
    out["machine_source"] = "local, cold" if _three(local, "cold_s") else ("pipeline, cold" if here else None)
    if here:
        cores = row.get("cores") or 1
        for suffix, seconds in zip(("", "_min", "_max"), here):
            out[f"machine_s{suffix}"] = seconds
            out[f"machine_usd{suffix}"] = machine_cost(seconds, cores)
    return out


def projections(table: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One projection per configuration of the aggregated ``table``, ordered by data set size."""
    rows = [project(p, q) for p, q in twins(table)]
    return sorted(rows, key=lambda r: (r["samples"] or 0, r["world_size"], r["batch_size"]))
