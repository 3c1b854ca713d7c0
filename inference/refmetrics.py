"""The reference's own measurement, for records that sit beside its published figures (``--metrics reference``).

The reference's Lambda code (``aws/lambda/inference.py``) runs its loop over a
``DataLoader`` of a ``TensorDataset`` inside ``torch.profiler.profile(activities=[CPU],
profile_memory=True)`` and ``torch.no_grad()``, calls ``model([images, magnitudes])``
and ``gc.collect()`` after every batch, then defines (see ../shared/reference/astromae.md):

=================================  ==========================================================
``total_cpu_time (seconds)``       the profiler's summed op time (``key_averages().total_average()
                                   .cpu_time_total``): nested ops are counted again inside their
                                   parents, so it is about twice the loop's wall time
``sample_persec``                  samples / that time
``execution_time (seconds/batch)`` that time / (samples / batch_size)
``throughput_bps``                 bits actually fed to the model (images + magnitudes) / that time
``total_cpu_memory (MB)``          the profiler's summed CPU allocations / 1e6 (decimal MB, a sum, not a peak)
``total_process_memory (MB)``      the process's RSS after the loop, in MiB (its local script's figure)
=================================  ==========================================================

This project's default (``wall-clock``, ``inference.measure``) times the loop
itself; every record says which definitions it used (``metrics``).
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import psutil
import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.data import DataLoader, TensorDataset

from inference.records import utc_now

METRICS = ("wall-clock", "reference")
MIB = 2**20


def check_metrics(value: object) -> str:
    """Return value if it names a metrics definition set, else raise ValueError naming the valid ones."""
    if value not in METRICS:
        raise ValueError(f"metrics must be one of {', '.join(METRICS)}, got {value!r}")
    return str(value)


@dataclass(frozen=True)
class ReferenceFigures:
    """What the reference-style loop measured, in the reference's definitions (plus the honest wall time)."""

    profiler_cpu_s: float  # key_averages().total_average().cpu_time_total, seconds
    profiler_cpu_memory_bytes: int  # key_averages().total_average().cpu_memory_usage
    bits_fed: int  # images + magnitudes as fed to the model
    rss_after_bytes: int
    wall_s: float
    cpu_s: float
    started_at: str
    finished_at: str

    def record_keys(self, num_samples: int, batch_size: int) -> dict[str, float]:
        t = self.profiler_cpu_s
        return {
            "total_cpu_time (seconds)": t,
            "sample_persec": num_samples / t if t > 0 else 0.0,
            "execution_time (seconds/batch)": t / (num_samples / batch_size) if num_samples else 0.0,
            "throughput_bps": self.bits_fed / t if t > 0 else 0.0,
            "total_cpu_memory (MB)": self.profiler_cpu_memory_bytes / 1e6,
            "total_process_memory (MB)": self.rss_after_bytes / MIB,
        }


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 for a moment: torch's profiler prints a USDT line on every start and stop."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def reference_loop(
    call: Callable[[dict[str, torch.Tensor]], torch.Tensor],
    tensors: dict[str, torch.Tensor],
    batch_size: int,
    device: torch.device | str = "cpu",
) -> tuple[list[torch.Tensor], ReferenceFigures]:
    """Run ``call(batch)`` the way the reference's Lambda loop does; return the outputs per batch and its figures.

    ``tensors`` holds ``images``, ``magnitudes`` and ``redshifts``, batched by a
    ``DataLoader`` (default collate) as in the reference. ``call`` gets a dict of
    the batch's tensors on ``device``.
    """
    device = torch.device(device)
    names = list(tensors)
    loader = DataLoader(TensorDataset(*(tensors[k] for k in names)), batch_size=batch_size)
    outputs, bits = [], 0
    started_at = utc_now()
    cpu0, t0 = time.process_time(), time.perf_counter()
    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _quiet_stderr():
        prof.start()
    try:
        with torch.no_grad():
            for data in loader:
                batch = {k: v.to(device) for k, v in zip(names, data)}
                outputs.append(call(batch))
                bits += sum(batch[k].element_size() * batch[k].nelement() * 8 for k in ("images", "magnitudes") if k in batch)
                gc.collect()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    finally:
        with _quiet_stderr():
            prof.stop()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finished_at = utc_now()
    average = prof.key_averages().total_average()
    figures = ReferenceFigures(
        profiler_cpu_s=average.cpu_time_total / 1e6,
        profiler_cpu_memory_bytes=int(average.cpu_memory_usage),
        bits_fed=bits,
        rss_after_bytes=psutil.Process().memory_info().rss,
        wall_s=wall,
        cpu_s=cpu,
        started_at=started_at,
        finished_at=finished_at,
    )
    return outputs, figures
