"""Plan a run: which partitions each rank reads, and the manifest items Initialize writes."""

from __future__ import annotations

from typing import Iterable

from inference.naming import sorted_partitions
from inference.errors import PayloadError
from inference.payload import Payload, RankItem


def partition_keys(keys: Iterable[str], prefix: str) -> list[str]:
    """Keys directly under prefix named <int>.pt, in numeric (rank) order."""
    prefix = prefix if not prefix or prefix.endswith("/") else f"{prefix}/"
    direct = [key for key in keys if key.startswith(prefix) and "/" not in key[len(prefix) :]]
    return [str(key) for key in sorted_partitions(direct)]


def assign_partitions(keys: list[str], world_size: int) -> list[list[str]]:
    """Split keys into world_size contiguous blocks whose sizes differ by at most one."""
    if world_size < 1:
        raise PayloadError(f"world_size must be >= 1, got {world_size}")
    if world_size > len(keys):
        raise PayloadError(f"world_size {world_size} is larger than the number of partitions ({len(keys)})")
    base, extra = divmod(len(keys), world_size)
    blocks, start = [], 0
    for rank in range(world_size):
        size = base + (1 if rank < extra else 0)
        blocks.append(keys[start : start + size])
        start += size
    return blocks


def plan_items(payload: Payload, keys: list[str], run_id: str, result_prefix: str, model_digest: str | None = None) -> list[RankItem]:
    """One manifest item per rank (ranks are 1-based), from the sorted partition keys."""
    if not keys:
        raise PayloadError(f"data_prefix: no partitions (<n>.pt) under s3://{payload.source_bucket}/{payload.partition_prefix}")
    world_size = payload.world_size or len(keys)
    if world_size > len(keys):
        raise PayloadError(
            f"world_size: {world_size} is larger than the number of partitions ({len(keys)}) "
            f"under s3://{payload.source_bucket}/{payload.partition_prefix}"
        )
    blocks = assign_partitions(keys, world_size)
    return [
        RankItem(
            run_id=run_id,
            rank=rank,
            world_size=world_size,
            bucket=payload.bucket,
            data_bucket=payload.source_bucket,
            partitions=block,
            batch_size=payload.batch_size,
            device=payload.device,
            result_prefix=result_prefix,
            model_key=payload.model_object_key(),
            metrics=payload.metrics,
            model_digest=model_digest,
        )
        for rank, block in enumerate(blocks, start=1)
    ]
