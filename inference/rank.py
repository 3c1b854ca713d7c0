"""One rank inside the Infer function: load partitions and the model folder, infer, measure (imports torch).

The model folder (``inference.modelfolder``) is downloaded and loaded once per
warm worker and reloaded only when its digest changes. Downloads go to the worker's temp folder under names of our own,
never at a path taken from an S3 key.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from botocore.exceptions import ClientError

from inference import constants, s3io
from inference.data import Partition, load_partition
from inference.errors import PartitionError
from inference.measure import build_record, check_batch_size
from inference.modelfolder import MANIFEST, LoadedModel, ModelFolderError, load_folder, parse_manifest, run_batches
from inference.payload import RankItem

_MODELS: dict[tuple[str, str, str], LoadedModel] = {}  # warm-worker model cache
logger = logging.getLogger(__name__)

if os.environ.get(constants.TORCH_THREADS):
    torch.set_num_threads(max(1, int(os.environ[constants.TORCH_THREADS])))


def _load_model(bucket: str, prefix: str, device: str, digest: str | None = None) -> tuple[LoadedModel, bool]:
    """The model folder under s3://bucket/prefix/, cached per warm worker; reloaded only if its digest changed.

    ``digest`` (read by Initialize, once per run): a warm worker that holds that model needs no S3 call at all.
    """
    where = f"s3://{bucket}/{prefix}/"
    cached = _MODELS.get((bucket, prefix, device))
    if digest is not None and cached and cached.digest == digest:
        return cached, False
    try:
        folder_manifest = parse_manifest(s3io.get_bytes(bucket, f"{prefix}/{MANIFEST}"), where)
    except ClientError:
        raise ModelFolderError(f"model folder {where}: not found (no {MANIFEST}; deploy it with --model-folder)") from None
    if cached and cached.digest == folder_manifest["digest"]:
        return cached, False
    local = Path(tempfile.gettempdir()) / "cosmicai-models" / folder_manifest["digest"]
    if not (local / ".complete").is_file():
        for name in folder_manifest["files"]:  # names checked by parse_manifest: no '..', no absolute paths
            target = local / name
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                target.write_bytes(s3io.get_bytes(bucket, f"{prefix}/{name}"))
            except ClientError:
                raise ModelFolderError(f"model folder {where}: {name} is listed in {MANIFEST} but missing") from None
        (local / ".complete").write_text("ok\n")
    loaded = load_folder(local, name=folder_manifest["name"], digest=folder_manifest["digest"])
    if isinstance(loaded.model, torch.nn.Module):
        loaded.model.to(device).eval()
    _MODELS[(bucket, prefix, device)] = loaded
    return loaded, True


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
            partition = load_partition(tmp.name)
        except PartitionError as exc:
            raise PartitionError(str(exc).replace(tmp.name, uri)) from None
    if partition.cast:
        logger.info("%s: cast %s to float32", uri, ", ".join(partition.cast))
    return partition


def run_rank(item: RankItem) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Load the rank's partitions and the model folder, infer, measure; return (record, predictions).

    The record's ``s3_*`` keys cover the downloads; the caller adds the upload.
    """
    started = time.perf_counter()
    check_batch_size(item.batch_size)
    s3io.reset_timings()
    with s3io.phase("data"):
        parts = [_load_partition(item.data_bucket, key) for key in item.partitions]
    images = torch.cat([p.images for p in parts]) if len(parts) > 1 else parts[0].images  # (N, 5, 32, 32)
    magnitudes = torch.cat([p.magnitudes for p in parts]) if len(parts) > 1 else parts[0].magnitudes  # (N, 5)
    redshifts = torch.cat([p.redshifts for p in parts]) if len(parts) > 1 else parts[0].redshifts  # (N,)
    model_started = time.perf_counter()
    with s3io.phase("model"):
        model, cold = _load_model(item.bucket, item.model_key, item.device, item.model_digest)
    model_load_s = time.perf_counter() - model_started
    load_time_s = time.perf_counter() - started
    tensors = {"images": images, "magnitudes": magnitudes, "redshifts": redshifts}
    predictions, timing = run_batches(model, tensors, item.batch_size, item.device, item.metrics)
    predictions_key = f"{item.result_prefix}/predictions/{item.rank}.pt"
    record = build_record(
        model=model.model if isinstance(model.model, torch.nn.Module) else None,
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
    nonfinite = int((~torch.isfinite(predictions)).sum())
    if nonfinite:
        logger.warning("rank %d: %d predictions are NaN or infinite", item.rank, nonfinite)
    record.update(
        nonfinite_predictions=nonfinite,
        run_id=item.run_id,
        partitions=item.partitions,
        model_key=item.model_key,
        model_folder={"name": model.name, "digest": model.digest},
        cold_start=cold,
        model_load_s=model_load_s,
    )
    return record, {"predictions": predictions, "redshifts": redshifts}


def tensor_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    return buffer.getvalue()
