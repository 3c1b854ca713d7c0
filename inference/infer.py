"""The Infer Lambda handler: one rank, run and written to S3 (``predictions/<rank>.pt``, ``ranks/<rank>.json``).

Its module imports torch (through ``inference.rank``) at import time, in the
execution environment's init phase, as a Lambda's module-level imports run:
a warm worker pays for it once, and a prewarmed one before its first rank.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from inference import constants, s3io
from inference.handlers import records_prefix
from inference.payload import RankItem
from inference.rank import run_rank, tensor_bytes

logger = logging.getLogger(__name__)


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """One rank: run it, then write predictions/<rank>.pt and ranks/<rank>.json."""
    started = time.perf_counter()
    item = RankItem.model_validate(event)
    logger.info("cosmicai run=%s rank=%d", item.run_id, item.rank)
    record, tensors = run_rank(item)
    with s3io.phase("result"):
        s3io.put_bytes(item.bucket, record["result_path"], tensor_bytes(tensors))
    record.update(s3io.timings())
    record["lambda_memory_mb"] = int(os.environ.get(constants.FUNCTION_MEMORY_MB, "0")) or None
    record["lambda_duration_s"] = time.perf_counter() - started
    s3io.put_json(item.bucket, f"{records_prefix(item.result_prefix)}{item.rank}.json", record)
    logger.info("rank %d/%d: %d samples, %.1f samples/s", item.rank, item.world_size, record["num_samples"], record["sample_persec"])
    return {"rank": item.rank, "status": "succeeded"}
