"""How a loaded model is prepared for fast inference: the inference forward and the precision modes.

``prepare(model, precision, device)`` returns a module with the model's call
signature ``(images (B, 5, 32, 32), magnitudes (B, 5)) -> (B,)``. It never
changes ``model``; ``inference.measure.predict`` calls it once per call,
outside its timed loop. Every mode was kept because ``benchmarks/inference_speed.py``
showed it faster on the project's 2-core machine (figures in the README).

=========  ==========================================================================
``fp32``   (default) :class:`InferenceModel`: the model's own weights and the same
           arithmetic as ``RedshiftModel.forward`` up to float rounding (max |diff|
           below ``TOLERANCE["fp32"]``):

           - attention through ``F.scaled_dot_product_attention`` on one fused QKV
             projection (``nn.TransformerEncoderLayer``'s fused path re-packs Q, K, V
             and runs bmm + softmax + bmm over the whole batch);
           - the last encoder layer computes only the cls token, the only output the
             head reads (about 10 % of the ``full`` model's FLOPs are never needed);
           - the convolutions in channels_last (CPU max-pooling is ~15x faster there);
           - the forward runs over micro-batches of ``MICRO_BATCH`` samples so the
             activations of a step stay in cache (a 512-sample batch's feed-forward
             activations are ~200 MB; a 64-sample micro-batch's ~25 MB);
           - on the CPU, the encoder's linear layers run as oneDNN matmuls over
             weights re-packed once per prepare() (a ~57 MB copy for ``full``), with
             the GELU and the residual adds fused into them: ~20 % faster than
             MKL's addmm + separate element-wise passes at these shapes. Used only
             where torch's ``mkldnn._linear_pointwise`` ops exist and agree with
             ``F.linear`` (``onednn_available``).
``int8``   dynamic int8 quantization (``torch.ao.quantization.quantize_dynamic``) of
           every Linear layer of the inference forward, the attention projections
           included: weights int8 per output channel, activations quantized per
           micro-batch at run time; CPU only (fbgemm/x86 engine, VNNI where present).
``bf16``   bfloat16 autocast: matmuls and convolutions in bf16, norms and softmax in
           fp32. CPU only where it is native (``avx512_bf16`` or AMX); on CUDA where
           the GPU supports bf16. Refused elsewhere: emulated bf16 is slower than fp32.
=========  ==========================================================================

``TOLERANCE`` documents each mode's largest |prediction - fp32 prediction| on the
seeded ``tiny`` and ``full`` models (tests/unit/test_speed_paths.py checks it);
the benchmark prints the measured difference and the MAE cost on the synthetic
redshifts.
"""

from __future__ import annotations

import logging
import platform
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from inference.errors import CosmicAIError
from inference.model import ModelConfig, RedshiftModel, _resolve_config, check_inputs, flops_per_sample

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "int8", "bf16")
DEVICES = ("cpu", "cuda")
MICRO_BATCH = 64  # samples per forward step inside a batch (32 and 128 measured the same: see --ablation)
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


# -- the inference forward ----------------------------------------------------------


def _linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    """An nn.Linear over existing tensors (no new weights are allocated or initialised)."""
    lin = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, device="meta")
    lin.weight = weight if isinstance(weight, nn.Parameter) else nn.Parameter(weight, requires_grad=False)
    if bias is not None:
        lin.bias = bias if isinstance(bias, nn.Parameter) else nn.Parameter(bias, requires_grad=False)
    return lin


class _EncoderLayer(nn.Module):
    """One pre-norm GELU ``nn.TransformerEncoderLayer`` written out for inference (its weights, shared)."""

    def __init__(self, layer: nn.TransformerEncoderLayer, cls_only: bool) -> None:
        super().__init__()
        attn = layer.self_attn
        d = attn.embed_dim
        self.heads = attn.num_heads
        self.cls_only = cls_only
        self.norm1, self.norm2 = layer.norm1, layer.norm2
        self.linear1, self.linear2 = layer.linear1, layer.linear2
        # out_proj is a NonDynamicallyQuantizableLinear: a plain nn.Linear over it lets int8 cover it
        self.proj = _linear(attn.out_proj.weight, attn.out_proj.bias)
        w, b = attn.in_proj_weight, attn.in_proj_bias
        if cls_only:  # views of the packed projection: Q for the cls token, K and V for every token
            self.q = _linear(w.detach()[:d], b.detach()[:d])
            self.kv = _linear(w.detach()[d:], b.detach()[d:])
        else:
            self.qkv = _linear(w, b)
        self.packed: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None  # see pack_onednn

    def pack_onednn(self) -> None:
        """Re-pack the linear weights for oneDNN (fp32, CPU): a copy, reordered once; GELU and residual adds fused."""
        names = ("q", "kv") if self.cls_only else ("qkv",)
        reorder = torch.ops.mkldnn._reorder_linear_weight
        self.packed = {
            name: (reorder(getattr(self, name).weight.detach().contiguous()), getattr(self, name).bias.detach())
            for name in (*names, "proj", "linear1", "linear2")
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, T, D) -> (B, T, D); with cls_only -> (B, 1, D)
        if self.packed is not None:
            return self._forward_onednn(x)
        b, t, d = x.shape
        h = self.heads
        y = self.norm1(x)
        if self.cls_only:
            q = self.q(y[:, :1]).view(b, 1, h, d // h).transpose(1, 2)  # (B, H, 1, D/H)
            k, v = self.kv(y).view(b, t, 2, h, d // h).permute(2, 0, 3, 1, 4).unbind(0)  # 2 x (B, H, T, D/H)
            x = x[:, :1]
        else:
            q, k, v = self.qkv(y).view(b, t, 3, h, d // h).permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, H, T, D/H)
        a = F.scaled_dot_product_attention(q, k, v)  # (B, H, T', D/H)
        x = x + self.proj(a.transpose(1, 2).reshape(b, -1, d))
        return x + self.linear2(F.gelu(self.linear1(self.norm2(x))))

    def _forward_onednn(self, x: torch.Tensor) -> torch.Tensor:
        """forward() with oneDNN's packed matmuls: linear+GELU and linear+residual run as one kernel each."""
        lin, p = torch.ops.mkldnn._linear_pointwise, self.packed
        assert p is not None
        b, t, d = x.shape
        h = self.heads
        y = self.norm1(x).view(b * t, d)  # (B*T, D)
        if self.cls_only:
            q = lin(y.view(b, t, d)[:, 0].contiguous(), *p["q"], "none", [], "").view(b, 1, h, d // h).transpose(1, 2)  # (B, H, 1, D/H)
            k, v = lin(y, *p["kv"], "none", [], "").view(b, t, 2, h, d // h).permute(2, 0, 3, 1, 4).unbind(0)
            x, t = x[:, 0].contiguous(), 1  # (B, D): the residual stream of the cls token only
        else:
            q, k, v = lin(y, *p["qkv"], "none", [], "").view(b, t, 3, h, d // h).permute(2, 0, 3, 1, 4).unbind(0)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b * t, d)  # (B*T', D)
        x = lin.binary(a, x.view(b * t, d), *p["proj"], "add")  # x + proj(a), (B*T', D)
        hidden = lin(self.norm2(x), *p["linear1"], "gelu", [], "none")  # exact (erf) GELU, (B*T', 4D)
        return lin.binary(hidden, x, *p["linear2"], "add").view(b, t, d)  # x + linear2(hidden)


def onednn_available() -> bool:
    """Whether torch's oneDNN packed linear ops exist here and agree with F.linear (checked once)."""
    global _ONEDNN
    if _ONEDNN is None:
        try:
            ops = torch.ops.mkldnn
            g = torch.Generator().manual_seed(0)
            x, w, b = torch.randn(8, 16, generator=g), torch.randn(12, 16, generator=g), torch.randn(12, generator=g)
            r = torch.randn(8, 12, generator=g)
            packed = ops._reorder_linear_weight(w)
            with torch.inference_mode():
                ok = (torch.allclose(ops._linear_pointwise(x, packed, b, "gelu", [], "none"), F.gelu(F.linear(x, w, b)), atol=1e-5)
                      and torch.allclose(ops._linear_pointwise.binary(x, r, packed, b, "add"), r + F.linear(x, w, b), atol=1e-5))
            _ONEDNN = bool(torch.backends.mkldnn.is_available() and ok)
        except (AttributeError, RuntimeError, NotImplementedError) as exc:
            log.debug("oneDNN packed linear unavailable: %s", exc)
            _ONEDNN = False
    return _ONEDNN


_ONEDNN: bool | None = None


def _why_not(model: nn.Module) -> str | None:
    """Why InferenceModel cannot re-express ``model`` (None when it can)."""
    if not isinstance(model, RedshiftModel):
        return f"not a RedshiftModel ({type(model).__name__})"
    for i, layer in enumerate(model.encoder.layers):
        attn = layer.self_attn
        if not (layer.norm_first and layer.activation is F.gelu and attn.batch_first and attn._qkv_same_embed_dim
                and attn.in_proj_bias is not None and attn.bias_k is None and not attn.add_zero_attn):
            return f"encoder layer {i} is not a pre-norm GELU layer with packed QKV"
    return None


class InferenceModel(nn.Module):
    """``RedshiftModel``'s forward for inference only, over the model's own weights (shared; packed copies for oneDNN).

    Same outputs as ``model(images, magnitudes)`` up to float rounding; see the
    module docstring for what it does differently. The switches exist so the
    benchmark can measure each one.
    """

    def __init__(
        self,
        model: RedshiftModel,
        *,
        micro_batch: int | None = MICRO_BATCH,
        channels_last: bool = True,
        cls_only: bool = True,
        onednn: bool | None = None,
    ) -> None:
        super().__init__()
        why = _why_not(model)
        if why:
            raise ValueError(f"InferenceModel: {why}")
        self.config: ModelConfig = model.config
        self.patch_embed, self.cls_token, self.pos_embed = model.patch_embed, model.cls_token, model.pos_embed
        n = len(model.encoder.layers)
        self.layers = nn.ModuleList(_EncoderLayer(layer, cls_only and i == n - 1) for i, layer in enumerate(model.encoder.layers))
        self.encoder_norm = model.encoder.norm  # None for the project's models
        self.vit_norm, self.cnn_stem, self.cnn = model.vit_norm, model.cnn_stem, model.cnn
        self.mag_mlp, self.head = model.mag_mlp, model.head
        self.micro_batch = micro_batch
        self.channels_last = channels_last
        on_cpu_fp32 = model.pos_embed.device.type == "cpu" and model.pos_embed.dtype == torch.float32
        self.onednn = bool(on_cpu_fp32 and onednn_available()) if onednn is None else onednn
        if self.onednn:
            for layer in self.layers:
                layer.pack_onednn()
        self.eval()

    def forward(self, images: torch.Tensor, magnitudes: torch.Tensor) -> torch.Tensor:
        check_inputs(self.config, images, magnitudes)
        step = self.micro_batch
        if not step or images.shape[0] <= step:
            return self._forward(images, magnitudes)
        return torch.cat([self._forward(images[i:i + step], magnitudes[i:i + step]) for i in range(0, images.shape[0], step)])

    def _forward(self, images: torch.Tensor, magnitudes: torch.Tensor) -> torch.Tensor:
        b = images.shape[0]
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)  # (B, 5, 32, 32), NHWC in memory
        # ViT: (B,5,32,32) -> (B,D,8,8) -> (B,64,D) (a free view when channels_last); prepend cls -> (B,65,D)
        tokens = self.patch_embed(images).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1) + self.pos_embed
        for layer in self.layers:
            x = layer(x)  # the last one may return the cls token only: (B, 1, D)
        cls = x[:, 0]
        if self.encoder_norm is not None:
            cls = self.encoder_norm(cls)
        vit = self.vit_norm(cls)  # (B, D)
        cnn = self.cnn(self.cnn_stem(images)).mean(dim=(2, 3))  # (B, w_last)
        mag = self.mag_mlp(magnitudes)  # (B, m_last)
        return self.head(torch.cat([vit, cnn, mag], dim=1)).squeeze(1)  # (B,)


def inference_flops_per_sample(config: ModelConfig | str, cls_only: bool = True) -> int:
    """FLOPs per sample that InferenceModel executes: flops_per_sample less the last layer's unused tokens."""
    total = flops_per_sample(config)
    if not cls_only:
        return total
    c = _resolve_config(config)
    d, t, hidden = c.embed_dim, (c.image_size // c.patch_size) ** 2 + 1, int(c.mlp_ratio * c.embed_dim)
    full = 4 * t * d * d + 2 * t * t * d + 2 * t * d * hidden
    cls = d * d + 2 * t * d * d + 2 * t * d + d * d + 2 * d * hidden
    return total - 2 * (full - cls)


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

    ``model`` must already be on ``device``. A RedshiftModel gets the inference
    forward; any other module runs as it is (int8 and bf16 still apply).
    """
    precision, dev = check_supported(precision, device)
    model.eval()
    why = _why_not(model)
    if why:
        log.debug("inference forward not used: %s", why)
        net: nn.Module = model
    else:
        net = InferenceModel(model, micro_batch=micro_batch, onednn=None if precision == "fp32" else False)
    if precision == "int8":
        return quantize_int8(net)
    if precision == "bf16":
        return _Autocast(net, dev.type)
    return net
