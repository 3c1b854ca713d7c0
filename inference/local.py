"""The local single-process baseline (the reference's "Local" row): one data file, this process."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from inference.data import load_partition
from inference.measure import build_record, check_batch_size, predict, profile_one_batch
from inference.model import CONFIGS, load_checkpoint, load_model
from inference.precision import check_supported


def resolve_model(spec: str, device: str = "cpu") -> torch.nn.Module:
    """A built-in config name (seeded weights) or a checkpoint file."""
    if spec in CONFIGS:
        return load_model(spec, device=device)
    return load_checkpoint(spec, device=device)


def run_local(
    path: str | Path,
    *,
    batch_size: int = 512,
    model: str = "full",
    device: str = "cpu",
    profile: bool = False,
    precision: str = "fp32",
) -> dict[str, Any]:
    """Infer every sample of one partition file; return the result record (nothing is written).

    ``precision`` is fp32 (default), int8 or bf16 (see ``inference.precision``);
    the record adds ``precision``, ``prepare_time_s`` and ``redshift_mae``.
    """
    check_batch_size(batch_size)
    check_supported(precision, device)  # one clear error (cuda without CUDA, bf16 without native support) before any loading
    started = time.perf_counter()
    partition = load_partition(path)
    net = resolve_model(model, device)
    load_time_s = time.perf_counter() - started
    predictions, timing = predict(net, partition.images, partition.magnitudes, batch_size, device, precision)
    record = build_record(
        model=net,
        num_samples=len(partition),
        batch_size=batch_size,
        device=device,
        timing=timing,
        rank=1,
        world_size=1,
        data_path=str(path),
        result_path="",
        load_time_s=load_time_s,
    )
    record["precision"] = precision
    record["prepare_time_s"] = timing.prepare_s
    record["redshift_mae"] = float((predictions - partition.redshifts).abs().mean())
    if profile:
        record["profile"] = profile_one_batch(net, partition.images, partition.magnitudes, batch_size, device)
    return record


def run_local_folder(path: str | Path, folder: str | Path, *, batch_size: int = 512, device: str = "cpu") -> dict[str, Any]:
    """Run a model folder (``inference.modelfolder``) over one partition file in this process."""
    from inference.modelfolder import load_folder, run_batches

    check_batch_size(batch_size)
    check_supported("fp32", device)
    started = time.perf_counter()
    partition = load_partition(path)
    loaded = load_folder(Path(folder).resolve())
    if isinstance(loaded.model, torch.nn.Module):
        loaded.model.to(device).eval()
    load_time_s = time.perf_counter() - started
    tensors = {"images": partition.images, "magnitudes": partition.magnitudes, "redshifts": partition.redshifts}
    outputs, timing = run_batches(loaded, tensors, batch_size, device)
    record = build_record(
        model=loaded.model if isinstance(loaded.model, torch.nn.Module) else torch.nn.Module(),
        num_samples=len(partition),
        batch_size=batch_size,
        device=device,
        timing=timing,
        rank=1,
        world_size=1,
        data_path=str(path),
        result_path="",
        load_time_s=load_time_s,
    )
    record["model_folder"] = {"name": loaded.name, "digest": loaded.digest}
    record["output_shape"] = list(outputs.shape)
    return record
