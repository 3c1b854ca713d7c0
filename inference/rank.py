"""One rank inside the Infer function: load partitions and model, infer, measure (imports torch).

The model is cached per warm worker and reloaded only when its S3 object's
ETag changes. Downloads go to the worker's temp folder under names of our own,
never at a path taken from an S3 key.
"""

from __future__ import annotations

import io
import os
import tempfile
import time
from typing import Any

import torch
from botocore.exceptions import ClientError

from inference import constants, s3io
from inference.data import Partition, load_partition
from inference.errors import PartitionError, PayloadError
from inference.measure import build_record, check_batch_size, predict
from inference.model import load_checkpoint
from inference.payload import RankItem

_MODELS: dict[tuple[str, str, str], tuple[str, torch.nn.Module]] = {}  # warm-worker model cache

if os.environ.get(constants.TORCH_THREADS):
    torch.set_num_threads(max(1, int(os.environ[constants.TORCH_THREADS])))


def _load_model(bucket: str, key: str, device: str) -> tuple[torch.nn.Module, bool]:
    """The model for (bucket, key), cached per warm worker; reloaded only if the object changed."""
    try:
        tag = s3io.etag(bucket, key)
    except ClientError:
        raise PayloadError(f"model_key: s3://{bucket}/{key} does not exist") from None
    cached = _MODELS.get((bucket, key, device))
    if cached and cached[0] == tag:
        return cached[1], False
    with tempfile.NamedTemporaryFile(suffix=".pt", delete=True) as tmp:
        tmp.write(s3io.get_bytes(bucket, key))
        tmp.flush()
        model = load_checkpoint(tmp.name, device=device)
    _MODELS[(bucket, key, device)] = (tag, model)
    return model, True


def _load_partition(bucket: str, key: str) -> Partition:
    """Download one partition to the worker's temp folder (never at a path from the key) and load it."""
    uri = f"s3://{bucket}/{key}"
    try:
        body = s3io.get_bytes(bucket, key)
    except ClientError as exc:
        raise PartitionError(f"{uri}: partition is missing ({exc.response['Error']['Code']})") from None
    with tempfile.NamedTemporaryFile(suffix=".pt", delete=True) as tmp:
        tmp.write(body)
        tmp.flush()
        try:
            return load_partition(tmp.name)
        except PartitionError as exc:
            raise PartitionError(str(exc).replace(tmp.name, uri)) from None


def run_rank(item: RankItem) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Load the rank's partitions and the model, infer, measure; return (record, predictions)."""
    started = time.perf_counter()
    check_batch_size(item.batch_size)
    parts = [_load_partition(item.data_bucket, key) for key in item.partitions]
    images = torch.cat([p.images for p in parts]) if len(parts) > 1 else parts[0].images  # (N, 5, 32, 32)
    magnitudes = torch.cat([p.magnitudes for p in parts]) if len(parts) > 1 else parts[0].magnitudes  # (N, 5)
    redshifts = torch.cat([p.redshifts for p in parts]) if len(parts) > 1 else parts[0].redshifts  # (N,)
    model_started = time.perf_counter()
    model, cold = _load_model(item.bucket, item.model_key, item.device)
    model_load_s = time.perf_counter() - model_started
    load_time_s = time.perf_counter() - started
    predictions, timing = predict(model, images, magnitudes, item.batch_size, item.device)
    predictions_key = f"{item.result_prefix}/predictions/{item.rank}.pt"
    record = build_record(
        model=model,
        num_samples=len(predictions),
        batch_size=item.batch_size,
        device=item.device,
        timing=timing,
        rank=item.rank,
        world_size=item.world_size,
        data_path=",".join(item.partitions),
        result_path=predictions_key,
        load_time_s=load_time_s,
    )
    record.update(
        run_id=item.run_id,
        partitions=item.partitions,
        model_key=item.model_key,
        cold_start=cold,
        model_load_s=model_load_s,
        redshift_mae=float((predictions - redshifts).abs().mean()) if len(predictions) else None,
    )
    return record, {"predictions": predictions, "redshifts": redshifts}


def tensor_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    return buffer.getvalue()
