"""Bring your own model: a folder with ``model.py`` defining ``load`` and ``predict``.

The interface::

    def load(folder: pathlib.Path) -> Any            # called once per warm worker
    def predict(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor

``batch`` carries the partition's named tensors for one batch (``images``
(B, 5, 32, 32), ``magnitudes`` (B, 5), and ``redshifts`` (B,) when the data
has them); ``predict`` returns one output per sample: shape (B,) or (B, ...).
The folder may hold weights files and a ``requirements`` note; sibling modules
are imported with relative imports (``from .net import Net``).

Each folder is imported in isolation under its own package name
(``cosmicai_model_<digest>``): nothing is added to ``sys.path``, so two
models never see each other's modules. A model folder is code that runs in
the worker with the worker's permissions: only deploy folders you trust.

Its files, digest and manifest (``cosmicai-folder.json``) are
``inference.modelfiles``: what the host needs to upload a folder, without torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from inference.modelfiles import MANIFEST, MODULE, ModelFolderError, folder_digest, manifest, parse_manifest  # noqa: F401 (re-exported)
from inference.measure import LoopTiming
from inference.records import utc_now
from inference.refmetrics import check_metrics, reference_loop



@dataclass(frozen=True)
class LoadedModel:
    """A model folder imported and loaded: what a warm worker caches."""

    name: str
    digest: str
    model: Any
    predict: Callable[[Any, dict[str, torch.Tensor]], torch.Tensor]


def _import(folder: Path, name: str, digest: str) -> types.ModuleType:
    package = f"cosmicai_model_{digest}"
    if f"{package}.model" in sys.modules:
        return sys.modules[f"{package}.model"]
    module_path = folder / MODULE
    if not module_path.is_file():
        raise ModelFolderError(f"model folder {name!r}: no {MODULE} in it")
    parent = types.ModuleType(package)
    parent.__path__ = [str(folder)]  # a namespace for relative imports of sibling modules only
    sys.modules[package] = parent
    spec = importlib.util.spec_from_file_location(f"{package}.model", module_path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except Exception as exc:
        for key in [k for k in sys.modules if k == package or k.startswith(f"{package}.")]:
            del sys.modules[key]
        raise ModelFolderError(f"model folder {name!r}: importing {MODULE} failed: {type(exc).__name__}: {exc}") from exc
    return module


def load_folder(folder: Path, name: str | None = None, digest: str | None = None) -> LoadedModel:
    """Import the folder's module in isolation and call its ``load(folder)``."""
    name = name or folder.name
    digest = digest or folder_digest(folder)
    module = _import(folder, name, digest)
    functions = {}
    for function in ("load", "predict"):
        value = getattr(module, function, None)
        if not callable(value):
            raise ModelFolderError(f"model folder {name!r}: {MODULE} defines no function {function!r} (see the README's model folder interface)")
        functions[function] = value
    try:
        model = functions["load"](folder)
    except Exception as exc:
        raise ModelFolderError(f"model folder {name!r}: load() failed: {type(exc).__name__}: {exc}") from exc
    return LoadedModel(name=name, digest=digest, model=model, predict=functions["predict"])


def run_batches(
    loaded: LoadedModel, tensors: dict[str, torch.Tensor], batch_size: int, device: str = "cpu", metrics: str = "wall-clock",
) -> tuple[torch.Tensor, LoopTiming]:
    """Call ``predict`` batch by batch; outputs in order, on the CPU, and the loop's timing.

    ``wall-clock``: slices of the tensors under ``inference_mode``; ``reference``:
    the reference's loop (``inference.refmetrics``: DataLoader, profiler, gc per batch).
    """
    check_metrics(metrics)
    n = len(next(iter(tensors.values())))
    device_obj = torch.device(device)

    def call(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        size = len(batch["images"])
        try:
            result = loaded.predict(loaded.model, batch)
        except Exception as exc:
            raise ModelFolderError(f"model folder {loaded.name!r}: predict() failed: {type(exc).__name__}: {exc}") from exc
        if not isinstance(result, torch.Tensor):
            raise ModelFolderError(f"model folder {loaded.name!r}: predict() returned {type(result).__name__}, not a tensor")
        if result.ndim == 0 or result.shape[0] != size:
            raise ModelFolderError(
                f"model folder {loaded.name!r}: predict() returned {tuple(result.shape)} for a batch of {size}: "
                "expected one output per sample (first dimension = batch size)"
            )
        return result.float().cpu()

    if metrics == "reference":
        outs, figures = reference_loop(call, tensors, batch_size, device_obj)
        return torch.cat(outs), LoopTiming.of_reference(figures)
    outputs: torch.Tensor | None = None
    started_at = utc_now()
    cpu0, t0 = time.process_time(), time.perf_counter()
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            result = call({key: value[start:stop].to(device_obj, non_blocking=True) for key, value in tensors.items()})
            if outputs is None:
                outputs = torch.empty((n, *result.shape[1:]), dtype=torch.float32)
            outputs[start:stop] = result
    if device_obj.type == "cuda":
        torch.cuda.synchronize(device_obj)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    assert outputs is not None  # n >= 1: partitions are never empty
    return outputs, LoopTiming(wall_s=wall, cpu_s=cpu, started_at=started_at, finished_at=utc_now())
