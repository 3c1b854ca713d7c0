"""One rank's work: batched inference over its samples, measured into the result record.

The record keeps the reference project's keys so its notebooks and plots work
unchanged. By default (``metrics: "wall-clock"``) they carry honest wall-clock
definitions (units: "MB" is MiB, 2**20 bytes, as the reference's image, model
and process memory are; e.g. its image memory 10.0195 MB = 512 x 20,520 B).
With ``metrics: "reference"`` the loop runs the reference's way and the keys
its Lambda code fills take its definitions (``inference.refmetrics``: profiler
CPU time, decimal-MB allocation sums, bits fed). Every record names its set:

=================================  ==========================================================
``num_batches``                    ceil(num_samples / batch_size)
``batch_size``                     requested batch size
``device``                         torch device the loop ran on
``throughput_bps``                 bits per second: sample_persec x 20,520 B x 8 (the reference's
                                   figure is bits: 245.31 samples/s -> 40,270,613 bps)
``sample_persec``                  num_samples / wall time of the inference loop (not CPU time)
``result_path`` / ``data_path``    where predictions were written / the partition(s) read
``total_cpu_time (seconds)``       process CPU time (user + system, all threads) spent in the loop
``total_cpu_memory (MB)``          resident set size (RSS) right after the loop
``total_process_memory (MB)``      peak RSS of the worker process (ru_maxrss; a warm worker's peak
                                   covers its earlier invocations, as Lambda's "Max Memory Used")
``library_overhead_memory (MB)``   total_process_memory - total_model_memory - total_image_memory
``total_image_memory (MB)``        one input batch: min(batch_size, num_samples) x 20,520 B
``total_model_memory (MB)``        parameters + buffers of the model
``execution_time (seconds/batch)`` wall time of the inference loop / num_batches
``rank`` / ``world_size``          this rank (1-based) and the number of ranks
``num_samples``                    samples inferred by this rank
``wall_time_s``                    wall time of the inference loop (seconds)
``load_time_s``                    wall time to read the partition(s) and the model (seconds)
``started_at`` / ``finished_at``   ISO-8601 UTC timestamps around the loop
``peak_rss_mb``                    same figure as total_process_memory (MB)
``status`` / ``error``             "succeeded" / null, or "failed" / {"type", "message"}
``metrics``                        "wall-clock" (the definitions above) or "reference"
``s3_*``                           the rank's S3 calls (``inference.s3io``), seconds: the
                                   reference's ``s3_num_requests``, ``s3_total_time``,
                                   ``s3_avg_time``, ``s3_min_time``, ``s3_max_time``,
                                   ``s3_first_request_time``/``s3_last_response_time`` (epoch),
                                   and ``s3_data_download_s``, ``s3_model_download_s``,
                                   ``s3_result_upload_s``; null where no S3 was used (local)
=================================  ==========================================================

The torch profiler is optional (``profile=True``) and runs one extra batch after
the timed loop, never inside it.
"""

from __future__ import annotations

import math
import resource
import time
from dataclasses import dataclass
from typing import Any

import psutil
import torch

from inference.naming import SAMPLE_BYTES
from inference.precision import check_supported, prepare
from inference.records import EXTRA_KEYS, REFERENCE_KEYS, S3_KEYS, utc_now  # noqa: F401 (re-exported)
from inference.refmetrics import ReferenceFigures, check_metrics, reference_loop

MIB = 2**20


@dataclass(frozen=True)
class LoopTiming:
    """What the timed inference loop measured."""

    wall_s: float
    cpu_s: float
    started_at: str
    finished_at: str
    prepare_s: float = 0.0  # preparing the model for the precision mode, before the loop (not in wall_s)
    reference: ReferenceFigures | None = None  # the reference's figures, when the loop ran its way

    @classmethod
    def of_reference(cls, figures: ReferenceFigures, prepare_s: float = 0.0) -> "LoopTiming":
        return cls(figures.wall_s, figures.cpu_s, figures.started_at, figures.finished_at, prepare_s, figures)


def check_batch_size(batch_size: Any) -> int:
    """Return batch_size if it is an integer >= 1, else raise ValueError naming it."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    return batch_size


def predict(
    model: torch.nn.Module,
    images: torch.Tensor,  # (N, 5, 32, 32) float32
    magnitudes: torch.Tensor,  # (N, 5)
    batch_size: int,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    metrics: str = "wall-clock",
) -> tuple[torch.Tensor, LoopTiming]:
    """Batched inference in order; returns predictions (N,) float32 on the CPU and the loop's timing.

    ``model`` must be on ``device``. It is prepared once for ``precision``
    (``inference.precision.prepare``: the inference forward, int8 or bf16),
    outside the timed loop. ``wall-clock``: batches are slices of the loaded
    tensors (no copies, no DataLoader) under ``inference_mode``; ``reference``:
    the reference's loop (``inference.refmetrics``) around the same prepared model.
    """
    check_batch_size(batch_size)
    check_metrics(metrics)
    _, device = check_supported(precision, device)
    n = images.shape[0]
    t_prepare = time.perf_counter()
    net = prepare(model, precision, device)
    prepare_s = time.perf_counter() - t_prepare
    if metrics == "reference":
        outs, figures = reference_loop(lambda b: net(b["images"], b["magnitudes"]), {"images": images, "magnitudes": magnitudes}, batch_size, device)
        return torch.cat(outs).float().cpu(), LoopTiming.of_reference(figures, prepare_s)
    out = torch.empty(n, dtype=torch.float32)  # (N,)
    started_at = utc_now()
    cpu0, t0 = time.process_time(), time.perf_counter()
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            x = images[start:stop].to(device, non_blocking=True)  # (B, 5, 32, 32)
            m = magnitudes[start:stop].to(device, non_blocking=True)  # (B, 5)
            out[start:stop] = net(x, m).float().cpu()  # (B,)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return out, LoopTiming(wall_s=wall, cpu_s=cpu, started_at=started_at, finished_at=utc_now(), prepare_s=prepare_s)


def model_memory_bytes(model: torch.nn.Module) -> int:
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def build_record(
    *,
    model: torch.nn.Module | None,
    num_samples: int,
    batch_size: int,
    device: str,
    timing: LoopTiming,
    rank: int,
    world_size: int,
    data_path: str,
    result_path: str,
    load_time_s: float,
    s3: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The per-rank result record (see the module docstring for every definition).

    ``model`` None (a model folder's model that is not an nn.Module) counts 0 MB of
    model memory. ``s3`` carries the ``s3_*`` keys (``inference.s3io``); absent, they are null.
    """
    num_batches = math.ceil(num_samples / batch_size) if num_samples else 0
    sample_persec = num_samples / timing.wall_s if timing.wall_s > 0 else 0.0
    rss = psutil.Process().memory_info().rss
    peak = max(peak_rss_bytes(), rss) / MIB
    model_mb = model_memory_bytes(model) / MIB if model is not None else 0.0
    image_mb = min(batch_size, num_samples) * SAMPLE_BYTES / MIB
    record: dict[str, Any] = {
        "num_batches": num_batches,
        "batch_size": batch_size,
        "device": str(device),
        "throughput_bps": sample_persec * SAMPLE_BYTES * 8,
        "sample_persec": sample_persec,
        "result_path": result_path,
        "data_path": data_path,
        "total_cpu_time (seconds)": timing.cpu_s,
        "total_cpu_memory (MB)": rss / MIB,
        "total_process_memory (MB)": peak,
        "library_overhead_memory (MB)": peak - model_mb - image_mb,
        "total_image_memory (MB)": image_mb,
        "total_model_memory (MB)": model_mb,
        "execution_time (seconds/batch)": timing.wall_s / num_batches if num_batches else 0.0,
        "rank": rank,
        "world_size": world_size,
        "num_samples": num_samples,
        "wall_time_s": timing.wall_s,
        "load_time_s": load_time_s,
        "started_at": timing.started_at,
        "finished_at": timing.finished_at,
        "peak_rss_mb": peak,
        "status": "succeeded",
        "error": None,
        "metrics": "wall-clock",
        **{key: None for key in S3_KEYS},
        **(s3 or {}),
    }
    if timing.reference is not None:
        record.update(timing.reference.record_keys(num_samples, batch_size), metrics="reference")
        process = record["total_process_memory (MB)"]
        record["library_overhead_memory (MB)"] = process - model_mb - image_mb
    return record


def profile_one_batch(model: torch.nn.Module, images: torch.Tensor, magnitudes: torch.Tensor, batch_size: int, device: str) -> str:
    """Run one batch under torch.profiler (outside the timed loop); return its top-ops table."""
    from torch.profiler import ProfilerActivity, profile

    x = images[:batch_size].to(device)
    m = magnitudes[:batch_size].to(device)
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        model(x, m)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15)
