"""The per-rank record's keys and the record of a failed rank (no torch import).

Definitions of every key are in ``inference.measure``; this module holds what
the small Lambda functions (RecordFailure, Summarize) need without torch.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

REFERENCE_KEYS = (
    "num_batches",
    "batch_size",
    "device",
    "throughput_bps",
    "sample_persec",
    "result_path",
    "data_path",
    "total_cpu_time (seconds)",
    "total_cpu_memory (MB)",
    "total_process_memory (MB)",
    "library_overhead_memory (MB)",
    "total_image_memory (MB)",
    "total_model_memory (MB)",
    "execution_time (seconds/batch)",
)
EXTRA_KEYS = (
    "rank",
    "world_size",
    "num_samples",
    "wall_time_s",
    "load_time_s",
    "started_at",
    "finished_at",
    "peak_rss_mb",
    "status",
    "error",
    "metrics",
)
S3_KEYS = (  # the reference's S3 timing keys, then where the time went (seconds; epoch for the first/last)
    "s3_num_requests",
    "s3_total_time",
    "s3_avg_time",
    "s3_min_time",
    "s3_max_time",
    "s3_first_request_time",
    "s3_last_response_time",
    "s3_data_download_s",
    "s3_model_download_s",
    "s3_result_upload_s",
)



def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def seconds_since(start: Any) -> float | None:
    """Seconds from an ISO-8601 time (Step Functions' or ours; naive means UTC) to now; None if it does not parse."""
    if not isinstance(start, str) or not start:
        return None
    try:
        then = datetime.fromisoformat(start.replace("Z", "+00:00"))
    except ValueError:
        return None
    then = then if then.tzinfo else then.replace(tzinfo=timezone.utc)
    return max((datetime.now(timezone.utc) - then).total_seconds(), 0.0)


def failed_record(rank: int, world_size: int, error_type: str, message: str, **extra: Any) -> dict[str, Any]:
    """A record for a rank that did not finish: every key present, figures null."""
    record: dict[str, Any] = {key: None for key in REFERENCE_KEYS + EXTRA_KEYS + S3_KEYS}
    record.update(extra)
    record.update(
        rank=rank,
        world_size=world_size,
        status="failed",
        error={"type": error_type, "message": message},
        finished_at=utc_now(),
    )
    return record
