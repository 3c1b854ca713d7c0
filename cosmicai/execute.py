"""Start an execution, follow its ranks, wait, and bring its results home.

Artifacts written into the run's local folder: ``summary.json``,
``combined_data.json``, ``ranks/<rank>.json`` and ``logs/<function>.log``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from botocore.exceptions import ClientError

logger = logging.getLogger(__name__)
TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


@dataclass(frozen=True)
class ExecutionResult:
    execution_arn: str
    status: str
    error: str | None
    cause: str | None
    wall_time_s: float


def start(sfn: Any, state_machine_arn: str, payload: dict[str, Any], name: str) -> str:
    return sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps(payload))["executionArn"]


def list_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    """Every key under prefix (paginated)."""
    return [obj["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix) for obj in page.get("Contents", [])]


def count_records(s3: Any, bucket: str, result_prefix: str, since: float | None = None) -> int:
    """Ranks that have written a record so far (paginated); only those written after ``since``."""
    total = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{result_prefix}/ranks/"):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith(".json") and (since is None or obj["LastModified"].timestamp() >= since):
                total += 1
    return total


def wait(
    sfn: Any,
    s3: Any,
    execution_arn: str,
    *,
    bucket: str,
    result_prefix: str,
    on_progress: Callable[[int], None] | None = None,
    poll_s: float = 0.5,
    timeout_s: float | None = None,
    since: float | None = None,
) -> ExecutionResult:
    """Poll until the execution ends, reporting ranks done through on_progress."""
    started = time.perf_counter()
    while True:
        described = sfn.describe_execution(executionArn=execution_arn)
        if on_progress:
            try:
                on_progress(count_records(s3, bucket, result_prefix, since))
            except ClientError as exc:
                logger.debug("progress listing failed: %s", exc)
        if described["status"] in TERMINAL:
            if on_progress:
                on_progress(count_records(s3, bucket, result_prefix, since))
            return ExecutionResult(
                execution_arn=execution_arn,
                status=described["status"],
                error=described.get("error"),
                cause=described.get("cause"),
                wall_time_s=time.perf_counter() - started,
            )
        if timeout_s is not None and time.perf_counter() - started > timeout_s:
            sfn.stop_execution(executionArn=execution_arn, error="cosmicai.Timeout", cause=f"no result after {timeout_s:.0f} s")
            raise TimeoutError(f"execution {execution_arn} did not finish within {timeout_s:.0f} s")
        time.sleep(poll_s)


def fetch_results(s3: Any, bucket: str, result_prefix: str, out_dir: Path) -> dict[str, Any] | None:
    """Download summary.json, combined_data.json, every rank record and its predictions; return the summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = None
    for name in ("summary.json", "combined_data.json"):
        try:
            body = s3.get_object(Bucket=bucket, Key=f"{result_prefix}/{name}")["Body"].read()
        except ClientError:
            continue
        (out_dir / name).write_bytes(body)
        if name == "summary.json":
            summary = json.loads(body)
    for folder, suffix in (("ranks", ".json"), ("predictions", ".pt")):
        local = out_dir / folder
        local.mkdir(exist_ok=True)
        prefix = f"{result_prefix}/{folder}/"
        for key in list_keys(s3, bucket, prefix):
            stem = key[len(prefix) :]
            if stem.endswith(suffix) and stem[: -len(suffix)].isdigit():  # never a path taken from a key as is
                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                (local / f"{int(stem[: -len(suffix)])}{suffix}").write_bytes(body)
    return summary


def fetch_logs(logs: Any, function_names: list[str], out_dir: Path, since: float | None = None) -> None:
    """Write each function's CloudWatch log lines (from ``since``, epoch seconds) to out_dir/logs/<function>.log."""
    folder = out_dir / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    for name in function_names:
        lines = [event["message"] for event in read_log_events(logs, f"/aws/lambda/{name}", since=since)]
        (folder / f"{name}.log").write_text("\n".join(lines) + ("\n" if lines else ""))


def read_log_events(logs: Any, group: str, pattern: str | None = None, since: float | None = None) -> list[dict[str, Any]]:
    """Events of a log group (from ``since``, epoch seconds), oldest first (filter_log_events, paginated)."""
    kwargs: dict[str, Any] = {"logGroupName": group}
    if pattern:
        kwargs["filterPattern"] = pattern
    if since is not None:
        kwargs["startTime"] = int(since * 1000)
    events: list[dict[str, Any]] = []
    try:
        for page in logs.get_paginator("filter_log_events").paginate(**kwargs):
            events.extend(page.get("events", []))
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            return []
        raise
    return sorted(events, key=lambda e: (e["timestamp"], e.get("ingestionTime", 0)))
