"""Start an execution, follow its ranks, stop it, and bring its results and its own logs home.

Artifacts written into the run's local folder: ``summary.json``,
``combined_data.json``, ``ranks/<rank>.json``, ``predictions/<rank>.pt`` and
``logs/<function>.log`` (that run's invocations only: other runs on the same
emulator write to the same log groups).
"""

from __future__ import annotations

import json
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from botocore.exceptions import ClientError

from inference.errors import PayloadError

logger = logging.getLogger(__name__)
TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}
TRANSFER_THREADS = 8  # objects fetched at once: hides each request's latency (AWS, LocalStack); within botocore's pool of 10
MAX_INPUT_BYTES = 256 * 1024  # Step Functions: execution input and state data, 256 KiB (UTF-8)


@dataclass(frozen=True)
class ExecutionResult:
    execution_arn: str
    status: str
    error: str | None
    cause: str | None
    wall_time_s: float


def start(sfn: Any, state_machine_arn: str, payload: dict[str, Any], name: str) -> str:
    """StartExecution; the input limit and a taken name are refused in one clear line, as Step Functions refuses them."""
    body = json.dumps(payload)
    if len(body.encode()) > MAX_INPUT_BYTES:
        raise PayloadError(f"States.DataLimitExceeded: the execution input is {len(body.encode()):,} bytes, above Step Functions' 256 KiB limit")
    try:
        return sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=body)["executionArn"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ExecutionAlreadyExists":
            raise PayloadError(f"an execution named {name!r} already exists on this target: choose another --run-id") from None
        raise


def stop(sfn: Any, execution_arn: str, cause: str) -> None:
    """StopExecution, if it still runs."""
    if sfn.describe_execution(executionArn=execution_arn)["status"] == "RUNNING":
        sfn.stop_execution(executionArn=execution_arn, error="cosmicai.Interrupted", cause=cause)


def list_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    """Every key under prefix (paginated)."""
    return [obj["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix) for obj in page.get("Contents", [])]


def count_records(s3: Any, bucket: str, result_prefix: str, since: float | None = None, ranks: list[int] | None = None) -> int:
    """Ranks (of ``ranks``, when given) that have written a record since ``since`` (paginated)."""
    wanted = {f"{result_prefix}/ranks/{rank}.json" for rank in ranks} if ranks is not None else None
    total = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{result_prefix}/ranks/"):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith(".json") and (since is None or obj["LastModified"].timestamp() >= since) and (wanted is None or obj["Key"] in wanted):
                total += 1
    return total


def map_run_progress(sfn: Any, execution_arn: str) -> tuple[int, int | None] | None:
    """(items finished, items in all) of the execution's Map Run; (0, None) before it starts; None where unsupported."""
    try:
        runs = sfn.list_map_runs(executionArn=execution_arn)["mapRuns"]
        if not runs:
            return 0, None
        counts = sfn.describe_map_run(mapRunArn=runs[0]["mapRunArn"])["itemCounts"]
    except (ClientError, KeyError) as exc:
        logger.debug("no Map Run progress: %s", exc)
        return None
    return sum(counts.get(k, 0) for k in ("succeeded", "failed", "timedOut", "aborted")), counts.get("total")


def wait(
    sfn: Any,
    s3: Any,
    execution_arn: str,
    *,
    bucket: str,
    result_prefix: str,
    ranks: list[int] | None = None,
    on_progress: Callable[[int, int | None], None] | None = None,
    timeout_s: float | None = None,
    since: float | None = None,
) -> ExecutionResult:
    """Poll until the execution ends (short polls at first, then at most every 0.5 s), reporting (ranks done, ranks in all).

    Progress comes from the Distributed Map's Map Run (DescribeMapRun's item counts: one
    small call however many ranks), or, where a target lacks Map Runs, from counting records.
    """
    started = time.perf_counter()
    poll = 0.05
    last_progress = 0.0
    while True:
        described = sfn.describe_execution(executionArn=execution_arn)
        done = described["status"] in TERMINAL
        if on_progress and (done or time.perf_counter() - last_progress > 0.5):
            last_progress = time.perf_counter()
            try:
                counted = map_run_progress(sfn, execution_arn)
                on_progress(*(counted or (count_records(s3, bucket, result_prefix, since, ranks), None)))
            except ClientError as exc:
                logger.debug("progress listing failed: %s", exc)
        if done:
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
        time.sleep(poll)
        poll = min(0.5, poll * 1.5)


def fetch_results(s3: Any, bucket: str, result_prefix: str, out_dir: Path) -> dict[str, Any] | None:
    """Download summary.json, combined_data.json, every rank record and its predictions (several at once); return the
    summary."""
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
    wanted: list[tuple[str, Path]] = []
    for folder, suffix in (("ranks", ".json"), ("predictions", ".pt")):
        local = out_dir / folder
        local.mkdir(exist_ok=True)
        prefix = f"{result_prefix}/{folder}/"
        for key in list_keys(s3, bucket, prefix):
            stem = key[len(prefix) :]
            if stem.endswith(suffix) and stem[: -len(suffix)].isdigit():  # never a path taken from a key as is
                wanted.append((key, local / f"{int(stem[: -len(suffix)])}{suffix}"))

    def download(item: tuple[str, Path]) -> None:
        key, path = item
        path.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    with ThreadPoolExecutor(max_workers=TRANSFER_THREADS) as pool:
        list(pool.map(download, wanted))
    return summary


def run_marker(run_id: str) -> re.Pattern[str]:
    """What the handlers log at the start of every invocation of a run (``run=<id>`` / ``execution=<id>[-resume-N]``)."""
    return re.compile(rf"\b(?:run|execution)={re.escape(run_id)}(?:-resume-\d+)?(?:\s|$)")


def invocations_of(events: list[dict[str, Any]], run_id: str) -> list[str]:
    """The log lines of ``run_id``'s invocations: whole START..REPORT blocks (per log stream) that name the run."""
    marker = run_marker(run_id)
    streams: dict[str, list[list[str]]] = {}
    for event in events:
        blocks = streams.setdefault(event.get("logStreamName", ""), [[]])
        if event["message"].startswith("START RequestId:"):
            blocks.append([])
        blocks[-1].append(event["message"])
    kept = [block for blocks in streams.values() for block in blocks if any(marker.search(line) for line in block)]
    return [line for block in kept for line in block]


_REQUEST = re.compile(r"^START RequestId: (\S+)")


def fetch_logs(logs: Any, function_names: list[str], out_dir: Path, since: float | None = None, run_id: str | None = None,
               append: bool = False) -> None:
    """Write each function's CloudWatch lines (from ``since``; only ``run_id``'s invocations) to out_dir/logs/<function>.log.

    ``append`` keeps what the file holds and adds only invocations it does not have yet (by RequestId): a resume
    keeps the interrupted execution's lines, and adds those that came after the interrupt.
    """
    folder = out_dir / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    for name in function_names:
        events = read_log_events(logs, f"/aws/lambda/{name}", since=since)
        lines = invocations_of(events, run_id) if run_id else [event["message"] for event in events]
        path = folder / f"{name}.log"
        if append and path.is_file():
            seen = {m.group(1) for m in map(_REQUEST.match, path.read_text().splitlines()) if m}
            lines = _without_requests(lines, seen)
        with open(path, "a" if append else "w") as handle:
            handle.write("\n".join(lines) + ("\n" if lines else ""))


def _without_requests(lines: list[str], seen: set[str]) -> list[str]:
    """The lines less the START..REPORT blocks of the RequestIds in ``seen``."""
    kept, skipping = [], False
    for line in lines:
        match = _REQUEST.match(line)
        if match:
            skipping = match.group(1) in seen
        if not skipping:
            kept.append(line)
    return kept


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
