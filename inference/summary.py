"""Aggregate the per-rank records of one run into ``summary.json`` (a pure function).

Summary fields (units as in ``inference.measure``; MB is MiB):
``run_id``, ``target``, ``status`` (SUCCEEDED or FAILED), ``world_size``,
``ranks_succeeded`` (count), ``ranks_failed`` (list of {rank, error: {type,
message}}; a rank with no record is listed with type ``MissingResult``),
``samples_total``, ``bytes_total`` (samples x 20,520 B), ``wall_time_s``
(execution start to summarize; a resumed run adds its earlier executions'), ``throughput_bps`` (bits/s: bytes_total x 8 /
wall_time_s, the reference's unit), ``throughput_bytes_per_s``,
``throughput_bps_sum`` (sum of the ranks' figures, as the reference reports),
``sample_persec`` (samples_total / wall_time_s), ``sample_persec_sum``,
``execution_time_mean_s`` and ``execution_time_p95_s`` (seconds/batch over
ranks), ``peak_rss_mb_max``, ``failed_percentage``,
``tolerated_failure_percentage``, ``cost_usd`` (lambda, stepfunctions, s3,
total; see ``inference.cost``), ``nonfinite_predictions`` (NaN or infinite
outputs over succeeded ranks) and ``ranks_with_nonfinite_predictions`` (those
ranks: they succeeded, but their outputs need a look).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from inference.cost import run_cost
from inference.naming import SAMPLE_BYTES


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _seconds_between(start: str | None, end: str) -> float | None:
    if not start:
        return None
    try:
        a, b = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (start, end))
    except ValueError:
        return None
    a, b = (t if t.tzinfo else t.replace(tzinfo=timezone.utc) for t in (a, b))  # naive means UTC
    return max((b - a).total_seconds(), 0.0)


def build_summary(
    records: dict[int, dict[str, Any]],
    *,
    run_id: str,
    world_size: int,
    tolerated_failure_percentage: float,
    execution_start: str | None,
    finished_at: str,
    target: str,
    memory_mb: int,
    timeout_s: float,
    result_prefix: str,
    prior_wall_time_s: float = 0.0,
) -> dict[str, Any]:
    """The run's summary from its records keyed by rank (1..world_size; strays are ignored)."""
    records = {rank: record for rank, record in records.items() if 1 <= rank <= world_size}
    succeeded = {r: rec for r, rec in records.items() if rec.get("status") == "succeeded"}
    failed = []
    for rank in range(1, world_size + 1):
        record = records.get(rank)
        if record is None:
            failed.append({"rank": rank, "error": {"type": "MissingResult", "message": "no result record was written for this rank"}})
        elif record.get("status") != "succeeded":
            failed.append({"rank": rank, "error": record.get("error") or {"type": "Unknown", "message": "failed without an error"}})
    samples = sum(int(rec.get("num_samples") or 0) for rec in succeeded.values())
    wall = _seconds_between(execution_start, finished_at)
    if wall is not None:
        wall += prior_wall_time_s  # a resumed run: every execution's wall time
    bytes_total = samples * SAMPLE_BYTES
    exec_times = [rec["execution_time (seconds/batch)"] for rec in succeeded.values() if rec.get("execution_time (seconds/batch)")]
    failed_pct = 100.0 * len(failed) / world_size if world_size else 0.0
    partitions = sum(len(rec.get("partitions") or [1]) for rec in records.values()) or world_size
    return {
        "run_id": run_id,
        "target": target,
        "status": "FAILED" if failed_pct > tolerated_failure_percentage else "SUCCEEDED",
        "world_size": world_size,
        "ranks_succeeded": len(succeeded),
        "ranks_failed": failed,
        "failed_percentage": failed_pct,
        "tolerated_failure_percentage": tolerated_failure_percentage,
        "samples_total": samples,
        "bytes_total": bytes_total,
        "wall_time_s": wall,
        "throughput_bps": bytes_total * 8 / wall if wall else None,
        "throughput_bytes_per_s": bytes_total / wall if wall else None,
        "throughput_bps_sum": sum(rec.get("throughput_bps") or 0.0 for rec in succeeded.values()),
        "sample_persec": samples / wall if wall else None,
        "sample_persec_sum": sum(rec.get("sample_persec") or 0.0 for rec in succeeded.values()),
        "execution_time_mean_s": sum(exec_times) / len(exec_times) if exec_times else None,
        "execution_time_p95_s": _percentile(exec_times, 0.95),
        "peak_rss_mb_max": max((rec.get("peak_rss_mb") or 0.0 for rec in succeeded.values()), default=None),
        "nonfinite_predictions": sum(int(rec.get("nonfinite_predictions") or 0) for rec in succeeded.values()),
        "ranks_with_nonfinite_predictions": sorted(r for r, rec in succeeded.items() if rec.get("nonfinite_predictions")),
        "cost_usd": run_cost(
            records.values(),
            memory_mb=memory_mb,
            timeout_s=timeout_s,
            world_size=world_size,
            partitions_per_rank=partitions / max(len(records), 1),
        ),
        "result_prefix": result_prefix,
        "execution_start": execution_start,
        "finished_at": finished_at,
        "units": {
            "MB": "MiB (2**20 bytes)",
            "throughput_bps": "bits per second (bytes x 8 / wall_time_s)",
            "wall_time_s": "seconds from execution start to summarize",
        },
    }
