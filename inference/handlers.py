"""Lambda handlers: parse the event, call a pure function, do the S3 I/O, return JSON.

Artifacts, all under the run's ``result_prefix`` (default ``results/<run_id>``):
``manifest.json`` (one item per rank; a resume writes ``manifest-resume-<execution>.json``),
``ranks/<rank>.json`` (the rank's record, succeeded or failed), ``predictions/<rank>.pt``
(a dict of tensors ``predictions`` and ``redshifts``, both (N,)), ``combined_data.json``
(all records, in rank order) and ``summary.json``.

Infer is ``inference.infer.handler`` (its module imports torch in the init
phase, as a Lambda's module-level imports run); Initialize, RecordFailure and
Summarize live here and never import torch: on AWS they are small zips without it.
Handlers raise on failure; the exception's class name becomes the Lambda
``errorType`` that the state machine's Retry/Catch match on. Each invocation
logs ``cosmicai run=<run_id>`` (Initialize: ``execution=<name>``) first, so the
CLI can give each run folder its own invocations' logs (``cosmicai.execute``).
"""

from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError

from inference import constants, s3io
from inference.errors import CosmicAIError, PayloadError, RanksFailed
from inference.modelfiles import MANIFEST, ModelFolderError, parse_manifest
from inference.payload import RankItem, RunConfig, parse_payload
from inference.plan import partition_keys, plan_items
from inference.records import failed_record, seconds_since, utc_now
from inference.summary import build_summary

logger = logging.getLogger(__name__)
s3io.build_in_init()  # Lambda's init phase builds the S3 client (Infer imports this module too)


def records_prefix(result_prefix: str) -> str:
    return f"{result_prefix}/ranks/"


# -- Initialize ---------------------------------------------------------------


def initialize(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Validate the payload, claim the result prefix, list the partitions, write the manifest; return the RunConfig."""
    name = str(event.get("execution_name") or "")
    logger.info("cosmicai execution=%s initialize", name)
    payload = parse_payload(event.get("payload", event))
    run_id = payload.run_id or (name if name not in ("", "None") else time.strftime("run-%Y%m%d-%H%M%S-") + os.urandom(3).hex())
    logger.info("cosmicai run=%s initialize", run_id)
    result_prefix = payload.results_prefix(run_id)
    prefix = payload.partition_prefix
    try:
        keys = partition_keys(s3io.iter_keys(payload.source_bucket, prefix), prefix)
    except ClientError as exc:
        raise PayloadError(f"bucket: cannot list s3://{payload.source_bucket}/{prefix}: {exc.response['Error']['Code']}") from None
    items = plan_items(payload, keys, run_id, result_prefix, _model_digest(payload.bucket, payload.model_object_key()))
    done = _succeeded_ranks(payload.bucket, result_prefix)
    claim(payload.bucket, result_prefix, run_id, name, resume=payload.resume)
    if payload.resume:
        items = [item for item in items if item.rank not in done]
        manifest_key = f"{result_prefix}/manifest-resume-{name or int(time.time())}.json"
    else:
        existing = next(s3io.iter_keys(payload.bucket, records_prefix(result_prefix)), None)
        if existing:
            raise PayloadError(
                f"result_prefix: s3://{payload.bucket}/{result_prefix} already holds results ({existing}); "
                "resume that run or choose another result_prefix"
            )
        manifest_key = f"{result_prefix}/manifest.json"
    s3io.put_json(payload.bucket, manifest_key, [item.model_dump() for item in items])
    logger.info("run %s: %d ranks planned (%d partitions), manifest %s", run_id, len(items), len(keys), manifest_key)
    config = RunConfig(
        run_id=run_id,
        bucket=payload.bucket,
        manifest_key=manifest_key,
        result_prefix=result_prefix,
        world_size=items[0].world_size if items else (payload.world_size or len(keys)),
        ranks_planned=[item.rank for item in items],
        batch_size=payload.batch_size,
        tolerated_failure_percentage=payload.tolerated_failure_percentage,
        execution_start=event.get("execution_start") or utc_now(),
        resume=payload.resume,
        data_prefix=prefix,
        model_key=payload.model_object_key(),
        prior_wall_time_s=payload.prior_wall_time_s,
    )
    return config.model_dump()


def _model_digest(bucket: str, model_key: str) -> str | None:
    """The deployed model folder's digest, read once for the whole run; None if unreadable (each rank then reports why)."""
    where = f"s3://{bucket}/{model_key}/"
    try:
        return parse_manifest(s3io.get_bytes(bucket, f"{model_key}/{MANIFEST}"), where)["digest"]
    except (ClientError, ModelFolderError):
        return None


def claim(bucket: str, result_prefix: str, run_id: str, execution: str, resume: bool = False) -> None:
    """Claim ``result_prefix`` for ``run_id``, atomically: a conditional create of ``claim.json`` (If-None-Match: *).

    Two executions started together with one prefix cannot both have it: the
    second gets a PayloadError naming the run that holds it. A resume (or a
    retried Initialize of the same run) finds its own claim and goes on.
    """
    key = f"{result_prefix}/claim.json"
    body = {"run_id": run_id, "execution": execution, "claimed_at": utc_now()}
    try:
        s3io.put_json(bucket, key, body, if_none_match=True)
        return
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("PreconditionFailed", "ConditionalRequestConflict"):
            raise
    try:
        holder = s3io.get_json(bucket, key).get("run_id")
    except (ClientError, ValueError, AttributeError):
        holder = None
    if holder != run_id:
        raise PayloadError(
            f"result_prefix: s3://{bucket}/{result_prefix} is claimed by run {holder!r}; resume that run or choose another result_prefix"
        )


def _succeeded_ranks(bucket: str, result_prefix: str) -> set[int]:
    return {rank for rank, record in _read_records(bucket, result_prefix).items() if record.get("status") == "succeeded"}


# -- Infer ----------------------------------------------------------------------


# -- RecordFailure ----------------------------------------------------------------


def describe_failure(failure: dict[str, Any]) -> tuple[str, str]:
    """(error type, message) from a Step Functions Catch result {"Error", "Cause"}."""

    error_type = str(failure.get("Error") or "Unknown")
    cause = failure.get("Cause") or ""
    message = str(cause)
    try:
        parsed = json.loads(cause)
        if isinstance(parsed, dict):
            error_type = str(parsed.get("errorType") or error_type)
            message = str(parsed.get("errorMessage") or message)
    except (TypeError, ValueError):
        pass
    return error_type, message


def record_failure(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Write a failed rank's record (the Map's Catch calls this), so no failure is silent.

    ``event`` is ``{"item": <the rank's item with "failure">, "item_started": <its child execution's start>}``
    (or the item itself); the time from the item's start to now is the rank's measured duration, for the cost.
    """
    started = event.get("item_started")
    event = event.get("item", event)
    item = RankItem.model_validate(event)
    logger.info("cosmicai run=%s rank=%d record-failure", item.run_id, item.rank)
    error_type, message = describe_failure(event.get("failure") or {})
    record = failed_record(
        item.rank,
        item.world_size,
        error_type,
        message,
        run_id=item.run_id,
        partitions=item.partitions,
        data_path=",".join(item.partitions),
        batch_size=item.batch_size,
        device=item.device,
        lambda_duration_s=seconds_since(started),
    )
    s3io.put_json(item.bucket, f"{records_prefix(item.result_prefix)}{item.rank}.json", record)
    logger.warning("rank %d/%d failed: %s: %s", item.rank, item.world_size, error_type, message)
    return {"rank": item.rank, "status": "failed"}


# -- Summarize ------------------------------------------------------------------------


def _read_records(bucket: str, result_prefix: str) -> dict[int, dict[str, Any]]:
    """Every ranks/<rank>.json under the run (paginated listing, parallel reads)."""
    prefix = records_prefix(result_prefix)
    keys = [key for key in s3io.iter_keys(bucket, prefix) if key.endswith(".json") and key[len(prefix) : -5].isdigit()]
    with ThreadPoolExecutor(max_workers=8) as pool:
        records = list(pool.map(lambda key: s3io.get_json(bucket, key), keys))
    return {int(key[len(prefix) : -5]): record for key, record in zip(keys, records)}


def summarize(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Aggregate the records, write combined_data.json and summary.json; raise if too many failed."""
    config = RunConfig.model_validate(event)
    logger.info("cosmicai run=%s summarize", config.run_id)
    records = _read_records(config.bucket, config.result_prefix)
    summary = build_summary(
        records,
        run_id=config.run_id,
        world_size=config.world_size,
        tolerated_failure_percentage=config.tolerated_failure_percentage,
        execution_start=config.execution_start,
        finished_at=utc_now(),
        target=os.environ.get(constants.TARGET, "aws"),
        memory_mb=int(os.environ.get(constants.INFER_MEMORY_MB, "10240")),
        timeout_s=float(os.environ.get(constants.INFER_TIMEOUT_S, "900")),
        result_prefix=config.result_prefix,
        prior_wall_time_s=config.prior_wall_time_s,
    )
    combined = [records[rank] for rank in sorted(records)]
    s3io.put_json(config.bucket, f"{config.result_prefix}/combined_data.json", combined)
    s3io.put_json(config.bucket, f"{config.result_prefix}/summary.json", summary)
    failed = summary["ranks_failed"]
    logger.info(
        "SUMMARY run=%s status=%s ranks=%d/%d samples=%d wall=%.2fs throughput_bps=%s cost_usd=%.6f",
        config.run_id,
        summary["status"],
        summary["ranks_succeeded"],
        config.world_size,
        summary["samples_total"],
        summary["wall_time_s"] or 0.0,
        summary["throughput_bps"],
        summary["cost_usd"]["total"],
    )
    for failure in failed:
        logger.warning("FAILED rank=%d %s: %s", failure["rank"], failure["error"]["type"], failure["error"]["message"])
    if summary["status"] == "FAILED":
        ranks = ", ".join(f"{f['rank']} ({f['error']['type']})" for f in failed[:20])
        raise RanksFailed(
            f"{len(failed)} of {config.world_size} ranks failed ({summary['failed_percentage']:.1f}% > tolerated "
            f"{config.tolerated_failure_percentage}%): {ranks}; see s3://{config.bucket}/{config.result_prefix}/summary.json"
        )
    return {"run_id": config.run_id, "status": summary["status"], "summary_key": f"{config.result_prefix}/summary.json"}


__all__ = ["initialize", "record_failure", "summarize", "records_prefix", "CosmicAIError"]
