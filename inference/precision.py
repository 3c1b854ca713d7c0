"""How a loaded model is prepared for fast inference: the inference forward and the precision modes.

``prepare(model, precision, device)`` returns a module with the model's call
signature ``(images (B, 5, 32, 32), magnitudes (B, 5)) -> (B,)``. It never
changes ``model``; ``inference.measure.predict`` calls it once per call,
outside its timed loop. Every mode was kept because ``benchmarks/inference_speed.py``
showed it faster on the project's 2-core machine (figures in the README).

=========  ==========================================================================
``fp32``   (default) :class:`inference.fastpath.InferenceModel`: the model's own
           weights and the same arithmetic as ``ViTAstro.forward`` up to float
           rounding (max |diff| below ``TOLERANCE["fp32"]``): fused attention,
           oneDNN-packed linears with fused activations and residual adds,
           BatchNorm folded into the convolutions, channels_last, micro-batches.
``int8``   dynamic int8 quantization (``torch.ao.quantization.quantize_dynamic``) of
           every Linear layer of the inference forward, the attention projections
           included: weights int8 per output channel, activations quantized per
           micro-batch at run time; CPU only (fbgemm/x86 engine, VNNI where present).
``bf16``   bfloat16 autocast: matmuls and convolutions in bf16, norms and softmax in
           fp32. CPU only where it is native (``avx512_bf16`` or AMX); on CUDA where
           the GPU supports bf16. Refused elsewhere: emulated bf16 is slower than fp32.
=========  ==========================================================================

``TOLERANCE`` documents each mode's largest |prediction - fp32 prediction| on the
seeded ``tiny`` and ``astromae`` models (tests/unit/test_speed_paths.py checks it);
the benchmark prints the measured difference and the MAE cost on the synthetic
redshifts.
"""

from __future__ import annotations

import logging
import platform
import warnings
from pathlib import Path

import torch
from torch import nn

from inference.errors import CosmicAIError
from inference.fastpath import MICRO_BATCH, InferenceModel, inference_module, onednn_available  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "int8", "bf16")
DEVICES = ("cpu", "cuda")
TOLERANCE = {"fp32": 1e-4, "int8": 2e-2, "bf16": 1e-2}  # max |pred - fp32 pred|, redshift units


class UnsupportedPrecision(CosmicAIError, ValueError):
    """A precision mode this machine or device cannot run (bf16 without native support, int8 off the CPU)."""


# -- checks -------------------------------------------------------------------------


def check_precision(precision: object) -> str:
    """Return precision if it is one of PRECISIONS, else raise ValueError naming the valid ones."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def check_device(device: str | torch.device) -> torch.device:
    """A torch.device for 'cpu' or 'cuda[:n]'; asking for CUDA where torch sees none is one clear error."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}") from None
    if dev.type not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} requested but torch sees no CUDA device")
    return dev


def cpu_bf16_feature() -> str | None:
    """The CPU feature that gives native bfloat16 arithmetic ('amx_bf16', 'avx512_bf16', 'bf16'), or None."""
    caps: dict[str, object] = {}
    get_capabilities = getattr(torch.cpu, "get_capabilities", None)  # torch >= 2.6
    if get_capabilities is not None:
        try:
            caps = dict(get_capabilities())
        except Exception:  # pragma: no cover - cpuinfo failed to initialise
            caps = {}
    for flag in ("amx_bf16", "avx512_bf16"):
        if caps.get(flag):
            return flag
    try:
        words = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        words = set()
    for flag in ("amx_bf16", "avx512_bf16"):
        if flag in words:
            return flag
    if platform.machine() in ("aarch64", "arm64") and "bf16" in words:  # Arm "Features: ... bf16"
        return "bf16"
    return None


def check_bf16(device: torch.device) -> None:
    """Raise UnsupportedPrecision unless ``device`` computes bfloat16 natively."""
    if device.type == "cuda":
        if not torch.cuda.is_bf16_supported():
            raise UnsupportedPrecision(f"precision bf16: {torch.cuda.get_device_name(device)} has no bfloat16 support; use fp32")
        return
    if cpu_bf16_feature() is None:
        raise UnsupportedPrecision(
            "precision bf16: this CPU has no native bfloat16 arithmetic (needs avx512_bf16 or AMX; "
            f"torch reports {torch.backends.cpu.get_cpu_capability()}); emulated bf16 is slower than fp32: "
            "use --precision fp32 or int8")


def check_supported(precision: object, device: str | torch.device) -> tuple[str, torch.device]:
    """(precision, device) when ``precision`` can run on ``device``; else ValueError / UnsupportedPrecision."""
    precision = check_precision(precision)
    dev = check_device(device)
    if precision == "int8" and dev.type != "cpu":
        raise UnsupportedPrecision("precision int8: dynamic int8 quantization runs on the CPU only; use precision bf16 or fp32 on cuda")
    if precision == "bf16":
        check_bf16(dev)
    return precision, dev


# -- precision modes ----------------------------------------------------------------


class _Autocast(nn.Module):
    """Runs ``net`` under bfloat16 autocast; returns float32 predictions."""

    def __init__(self, net: nn.Module, device_type: str) -> None:
        super().__init__()
        self.net = net
        self.device_type = device_type

    def forward(self, images: torch.Tensor, magnitudes: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            return self.net(images, magnitudes).float()


def quantize_int8(net: nn.Module) -> nn.Module:
    """A copy of ``net`` with every nn.Linear dynamically quantized to int8 (CPU).

    Weights: int8 per output channel. Activations: quantized per tensor at run
    time, so a sample's prediction depends slightly on the others in its
    micro-batch (smaller micro-batches quantize more finely).
    """
    engines = [e for e in torch.backends.quantized.supported_engines if e != "none"]
    if not engines:
        raise UnsupportedPrecision("precision int8: this torch build has no quantized engine (fbgemm/x86/qnnpack)")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantiz.*")
        warnings.filterwarnings("ignore", message=".*torchao.*")
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        return quantize_dynamic(net, {nn.Linear: per_channel_dynamic_qconfig}, inplace=False)


def prepare(model: nn.Module, precision: str = "fp32", device: str | torch.device = "cpu", *, micro_batch: int | None = MICRO_BATCH) -> nn.Module:
    """The module to run for ``precision`` on ``device`` (see the module docstring); ``model`` is left as it is.

    ``model`` must already be on ``device``. A ViTAstro gets the inference
    forward (``inference.fastpath``); any other module runs as it is (int8 and
    bf16 still apply).
    """
    precision, dev = check_supported(precision, device)
    model.eval()
    net = inference_module(model, micro_batch=micro_batch, onednn=None if precision == "fp32" else False)
    if precision == "int8":
        return quantize_int8(net)
    if precision == "bf16":
        return _Autocast(net, dev.type)
    return net
