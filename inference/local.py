"""The local single-process baseline (the reference's "Local" row): one data file, this process, nothing written."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from inference.checkpoint import load_checkpoint, load_model
from inference.data import load_partition
from inference.measure import LoopTiming, build_record, check_batch_size, predict, profile_one_batch
from inference.model import DEFAULT_MODEL, is_builtin
from inference.precision import check_supported
from inference.refmetrics import check_metrics


def resolve_model(spec: str, device: str = "cpu") -> torch.nn.Module:
    """A built-in model name (seeded weights) or a checkpoint file (any format ``inference.checkpoint`` reads)."""
    if is_builtin(spec):
        return load_model(spec, device=device)
    return load_checkpoint(spec, device=device)


def _record(path: str | Path, partition: Any, model: torch.nn.Module | None, batch_size: int, device: str,
            timing: LoopTiming, load_time_s: float) -> dict[str, Any]:
    """The rank record of a one-file local run (rank 1 of 1, no S3, no result file)."""
    record = build_record(
        model=model, num_samples=len(partition), batch_size=batch_size, device=device, timing=timing,
        rank=1, world_size=1, data_path=str(path), result_path="", load_time_s=load_time_s,
    )
    if partition.cast:
        record["cast_to_float32"] = list(partition.cast)
    return record


def run_local(
    path: str | Path,
    *,
    batch_size: int = 512,
    model: str = DEFAULT_MODEL,
    device: str = "cpu",
    profile: bool = False,
    precision: str = "fp32",
    metrics: str = "wall-clock",
    threads: int | None = None,
) -> dict[str, Any]:
    """Infer every sample of one partition file; return the result record (nothing is written).

    ``precision`` is fp32 (default), int8 or bf16 (see ``inference.precision``);
    ``metrics`` wall-clock (default) or reference (``inference.refmetrics``);
    ``threads`` torch's intra-op threads (default: torch's). The record adds
    ``precision``, ``prepare_time_s``, ``threads`` and ``redshift_mae``.
    """
    check_batch_size(batch_size)
    check_metrics(metrics)
    check_supported(precision, device)  # one clear error (cuda without CUDA, bf16 without native support) before any loading
    if threads is not None:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    partition = load_partition(path)
    net = resolve_model(model, device)
    load_time_s = time.perf_counter() - started
    predictions, timing = predict(net, partition.images, partition.magnitudes, batch_size, device, precision, metrics)
    record = _record(path, partition, net, batch_size, device, timing, load_time_s)
    record.update(precision=precision, prepare_time_s=timing.prepare_s, threads=torch.get_num_threads(),
                  redshift_mae=float((predictions - partition.redshifts).abs().mean()))
    if profile:
        record["profile"] = profile_one_batch(net, partition.images, partition.magnitudes, batch_size, device)
    return record


def run_local_folder(path: str | Path, folder: str | Path, *, batch_size: int = 512, device: str = "cpu",
                     metrics: str = "wall-clock", threads: int | None = None) -> dict[str, Any]:
    """Run a model folder (``inference.modelfolder``) over one partition file in this process."""
    from inference.modelfolder import load_folder, run_batches

    check_batch_size(batch_size)
    check_metrics(metrics)
    check_supported("fp32", device)
    if threads is not None:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    partition = load_partition(path)
    loaded = load_folder(Path(folder).resolve())
    if isinstance(loaded.model, torch.nn.Module):
        loaded.model.to(device).eval()
    load_time_s = time.perf_counter() - started
    outputs, timing = run_batches(loaded, partition.tensors(), batch_size, device, metrics)
    model = loaded.model if isinstance(loaded.model, torch.nn.Module) else None
    record = _record(path, partition, model, batch_size, device, timing, load_time_s)
    record.update(model_folder={"name": loaded.name, "digest": loaded.digest}, output_shape=list(outputs.shape),
                  threads=torch.get_num_threads())
    return record
