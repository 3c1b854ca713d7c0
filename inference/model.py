"""The AstroMAE-style photometric-redshift network, its configs and checkpoint I/O.

Three branches read one galaxy: a ViT over the 5-band 32x32 cutout, an
Inception-style CNN over the same cutout, and an MLP over the 5 magnitudes.
Their features are concatenated and a small head regresses one redshift.
Built from ``torch.nn`` only, so the Lambda image needs nothing but torch.

Checkpoints are ``{"config": ModelConfig.to_dict(), "state_dict": ...}`` and
are always read with ``torch.load(..., weights_only=True)``: loading a model
never runs pickled code.
"""

from __future__ import annotations

import logging
import io
import os
import pickle
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from inference.errors import CheckpointMismatch, UnknownModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelConfig:
    """Every size knob of :class:`RedshiftModel`; defaults are the ``full`` model."""

    in_channels: int = 5  # SDSS bands u, g, r, i, z
    image_size: int = 32  # cutout side in pixels
    patch_size: int = 4  # ViT patch side: (32/4)^2 = 64 patches + 1 cls token
    embed_dim: int = 384  # ViT token width
    depth: int = 8  # number of transformer encoder layers
    num_heads: int = 8  # attention heads; embed_dim must divide by it
    mlp_ratio: float = 4.0  # transformer feed-forward width = mlp_ratio * embed_dim
    cnn_widths: tuple[int, ...] = (96, 192, 384)  # Inception block output channels (4 branches of w/4)
    mag_widths: tuple[int, ...] = (64, 128, 256)  # hidden widths of the magnitude MLP
    head_widths: tuple[int, ...] = (1024, 256)  # hidden widths of the regression head (then -> 1)
    dropout: float = 0.0  # dropout everywhere (inference: 0)

    def __post_init__(self) -> None:
        # JSON round trips give lists: store tuples so configs stay hashable/equal.
        for name in ("cnn_widths", "mag_widths", "head_widths"):
            object.__setattr__(self, name, tuple(int(w) for w in getattr(self, name)))
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not a multiple of num_heads {self.num_heads}")
        if not self.cnn_widths or any(w % 4 or w <= 0 for w in self.cnn_widths):
            raise ValueError(f"cnn_widths must be positive multiples of 4, got {self.cnn_widths}")
        if self.image_size // 2 < 2 ** (len(self.cnn_widths) - 1):
            raise ValueError(f"image_size {self.image_size} too small for {len(self.cnn_widths)} CNN blocks")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (tuples become lists)."""
        d = asdict(self)
        for name in ("cnn_widths", "mag_widths", "head_widths"):
            d[name] = list(d[name])
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (typos must not pass)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig key(s): {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
        return cls(**dict(d))


CONFIGS: dict[str, ModelConfig] = {
    "full": ModelConfig(),  # 15,893,833 parameters (60.6 MiB float32), the reference model's size
    "tiny": ModelConfig(
        patch_size=8, embed_dim=64, depth=2, num_heads=4, mlp_ratio=2.0,
        cnn_widths=(16, 32), mag_widths=(16, 32), head_widths=(64, 32),
    ),  # ~0.1 M parameters: unit tests and CPU-only functional tests
}


def _mlp(widths: list[int], dropout: float) -> nn.Sequential:
    """Linear+GELU stack through ``widths`` (every layer activated)."""
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.GELU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class InceptionBlock(nn.Module):
    """Parallel 1x1 / 3x3 / 5x5 / maxpool branches, each c_out/4 channels, concatenated."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        b = c_out // 4
        r = max(b // 2, 1)  # 1x1 reduction before the 3x3 and 5x5 convolutions
        self.b1 = nn.Sequential(nn.Conv2d(c_in, b, 1), nn.ReLU())
        self.b3 = nn.Sequential(nn.Conv2d(c_in, r, 1), nn.ReLU(), nn.Conv2d(r, b, 3, padding=1), nn.ReLU())
        self.b5 = nn.Sequential(nn.Conv2d(c_in, r, 1), nn.ReLU(), nn.Conv2d(r, b, 5, padding=2), nn.ReLU())
        self.bp = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), nn.Conv2d(c_in, b, 1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, c_in, H, W) -> (B, c_out, H, W)
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], dim=1)


class RedshiftModel(nn.Module):
    """ViT + Inception CNN + magnitude MLP -> one redshift per galaxy."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c = self.config = config
        d = c.embed_dim
        n_patches = (c.image_size // c.patch_size) ** 2
        # ViT branch
        self.patch_embed = nn.Conv2d(c.in_channels, d, c.patch_size, stride=c.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, n_patches + 1, d))
        layer = nn.TransformerEncoderLayer(
            d, c.num_heads, dim_feedforward=int(c.mlp_ratio * d), dropout=c.dropout,
            activation="gelu", batch_first=True, norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, c.depth, enable_nested_tensor=False)
        self.vit_norm = nn.LayerNorm(d)  # pre-norm layers leave the output un-normalised
        # CNN branch: stem at full resolution, max-pool to half, then blocks with 2x pooling between
        w0 = c.cnn_widths[0]
        self.cnn_stem = nn.Sequential(nn.Conv2d(c.in_channels, w0, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        blocks: list[nn.Module] = []
        c_in = w0
        for i, w in enumerate(c.cnn_widths):
            if i:
                blocks.append(nn.AvgPool2d(2))
            blocks.append(InceptionBlock(c_in, w))
            c_in = w
        self.cnn = nn.Sequential(*blocks)
        # magnitude branch
        self.mag_mlp = _mlp([c.in_channels, *c.mag_widths], c.dropout)
        # head over the concatenated features
        widths = [d + c.cnn_widths[-1] + (c.mag_widths[-1] if c.mag_widths else c.in_channels), *c.head_widths]
        self.head = nn.Sequential(_mlp(widths, c.dropout), nn.Linear(widths[-1], 1))

    def forward(self, images: torch.Tensor, magnitudes: torch.Tensor) -> torch.Tensor:
        check_inputs(self.config, images, magnitudes)
        b = images.shape[0]
        # ViT: (B,5,32,32) -> (B,D,8,8) -> (B,64,D); prepend cls -> (B,65,D)
        tokens = self.patch_embed(images).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1) + self.pos_embed
        vit = self.vit_norm(self.encoder(tokens)[:, 0])  # (B, D)
        # CNN: (B,5,32,32) -> stem (B,w0,16,16) -> blocks (B,w_last,16/2^(k-1),..) -> GAP (B,w_last)
        cnn = self.cnn(self.cnn_stem(images)).mean(dim=(2, 3))
        mag = self.mag_mlp(magnitudes)  # (B, mag_widths[-1])
        feats = torch.cat([vit, cnn, mag], dim=1)  # (B, D + w_last + m_last)
        return self.head(feats).squeeze(1)  # (B,)


def check_inputs(c: ModelConfig, images: torch.Tensor, magnitudes: torch.Tensor) -> None:
    """Raise ValueError naming the input whose shape does not fit ``c``: images (B, C, S, S), magnitudes (B, C)."""
    want_img = (c.in_channels, c.image_size, c.image_size)
    if images.dim() != 4 or tuple(images.shape[1:]) != want_img:
        raise ValueError(f"images: expected shape (B, {', '.join(map(str, want_img))}), got {tuple(images.shape)}")
    if magnitudes.dim() != 2 or magnitudes.shape[1] != c.in_channels or magnitudes.shape[0] != images.shape[0]:
        raise ValueError(
            f"magnitudes: expected shape ({images.shape[0]}, {c.in_channels}), got {tuple(magnitudes.shape)}")


def build_model(config: ModelConfig | str, seed: int = 0) -> RedshiftModel:
    """A model with seeded weights; the global RNG is left untouched.

    Same seed => bit-identical state_dict, so workers that build the same
    seeded model agree without shipping weights.
    """
    config = _resolve_config(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = RedshiftModel(config)
        nn.init.trunc_normal_(model.cls_token, std=0.02)
        nn.init.trunc_normal_(model.pos_embed, std=0.02)
    return model


def _resolve_config(config: ModelConfig | str) -> ModelConfig:
    if isinstance(config, ModelConfig):
        return config
    if isinstance(config, str) and config in CONFIGS:
        return CONFIGS[config]
    raise UnknownModel(f"unknown model {config!r}; valid names: {', '.join(sorted(CONFIGS))}")


def _read(path: str | os.PathLike) -> Any:
    """torch.load with weights_only=True; any failure becomes CheckpointMismatch naming the file."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointMismatch(f"checkpoint {p}: file not found")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refused a global or opcode
        detail = str(exc).split("WeightsUnpickler error:")[-1].strip().split(". Please use")[0].split("\n")[0]
        raise CheckpointMismatch(
            f"checkpoint {p}: refused: the file contains pickled code/objects outside the allow-list ({detail})"
        ) from exc
    except Exception as exc:  # truncated or not a torch file
        first = (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointMismatch(f"checkpoint {p}: not loadable ({type(exc).__name__}: {first})") from exc


def _split_checkpoint(obj: Any, where: str) -> tuple[dict[str, Any] | None, Mapping[str, Any]]:
    """(config dict or None, state_dict) from a plain state_dict or a checkpoint dict."""
    if not isinstance(obj, Mapping):
        raise CheckpointMismatch(f"{where}: expected a state_dict or checkpoint dict, got {type(obj).__name__}")
    if "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        cfg = obj.get("config")
        return (dict(cfg) if isinstance(cfg, Mapping) else None), obj["state_dict"]
    return None, obj


def _check_state_dict(model: nn.Module, sd: Mapping[str, Any], where: str) -> None:
    """Raise CheckpointMismatch naming the first missing / mis-shaped / unexpected key."""
    own = model.state_dict()
    for key, ref in own.items():
        if key not in sd:
            raise CheckpointMismatch(f"{where}: missing key {key!r} (expected shape {tuple(ref.shape)})")
        got = sd[key]
        if not isinstance(got, torch.Tensor):
            raise CheckpointMismatch(f"{where}: key {key!r} is a {type(got).__name__}, not a tensor")
        if got.shape != ref.shape:
            raise CheckpointMismatch(
                f"{where}: shape mismatch for {key!r}: checkpoint {tuple(got.shape)} vs model {tuple(ref.shape)}")
    for key in sd:
        if key not in own:
            raise CheckpointMismatch(f"{where}: unexpected key {key!r}")


def load_model(
    config: str | ModelConfig = "full",
    weights: str | os.PathLike | Mapping[str, Any] | None = None,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> RedshiftModel:
    """A model in eval() mode: seeded weights, or ``weights`` (file or state_dict) checked and loaded.

    A checkpoint dict whose stored config differs from ``config`` (ignoring
    ``dropout``, which does not change inference) raises CheckpointMismatch.
    """
    cfg = _resolve_config(config)
    if weights is None:
        return build_model(cfg, seed=seed).to(device).eval()
    if isinstance(weights, Mapping):
        return _from_object(cfg, weights, "state_dict", seed, device)
    return _from_object(cfg, _read(weights), f"checkpoint {weights}", seed, device)


def _from_object(cfg: ModelConfig, obj: Any, where: str, seed: int, device: str | torch.device) -> RedshiftModel:
    """Build ``cfg`` and load a state_dict / checkpoint object into it after checking keys, shapes, config."""
    model = build_model(cfg, seed=seed)
    stored, sd = _split_checkpoint(obj, where)
    _check_state_dict(model, sd, where)
    if stored is not None:
        _check_config(cfg, stored, where)
    model.load_state_dict(sd, strict=True)
    return model.to(device).eval()


def _check_config(cfg: ModelConfig, stored: Mapping[str, Any], where: str) -> None:
    try:
        other = ModelConfig.from_dict(stored)
    except (TypeError, ValueError) as exc:
        raise CheckpointMismatch(f"{where}: bad stored config: {exc}") from exc
    for f in fields(ModelConfig):
        if f.name != "dropout" and getattr(cfg, f.name) != getattr(other, f.name):
            raise CheckpointMismatch(
                f"{where}: config mismatch for {f.name!r}: checkpoint {getattr(other, f.name)!r} "
                f"vs requested {getattr(cfg, f.name)!r}")


def checkpoint_bytes(model: RedshiftModel) -> bytes:
    """``{"config": ..., "state_dict": ...}`` (CPU tensors) as bytes; same model, same bytes.

    Saved through a buffer: torch names the archive's inner folder after the
    file name, so saving to differently named files gives different bytes.
    """
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"config": model.config.to_dict(), "state_dict": sd}, buffer)
    return buffer.getvalue()


def save_checkpoint(model: RedshiftModel, path: str | os.PathLike) -> None:
    """Write the self-describing checkpoint (see ``checkpoint_bytes``) to path."""
    Path(path).write_bytes(checkpoint_bytes(model))


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> RedshiftModel:
    """A model built from the config stored in the checkpoint file, in eval() mode."""
    where = f"checkpoint {path}"
    obj = _read(path)  # read once: the file may be ~60 MiB in a cold Lambda
    stored, _ = _split_checkpoint(obj, where)
    if stored is None:
        raise CheckpointMismatch(f"{where}: no stored config (a plain state_dict); use load_model(config, path)")
    try:
        cfg = ModelConfig.from_dict(stored)
    except (TypeError, ValueError) as exc:
        raise CheckpointMismatch(f"{where}: bad stored config: {exc}") from exc
    return _from_object(cfg, obj, where, 0, device)


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def flops_per_sample(config: ModelConfig | str) -> int:
    """Approximate forward FLOPs for one sample: 2 x multiply-adds of convs, linears and attention.

    Counted: patch embedding, per encoder layer the QKV/output projections,
    the two attention matmuls (QK^T and AV) and the feed-forward; every
    convolution of the CNN; every linear layer of the MLPs and head.
    Ignored (small): biases, norms, activations, softmax, pooling.
    """
    c = _resolve_config(config)
    d, s = c.embed_dim, c.image_size
    n = (s // c.patch_size) ** 2
    t = n + 1
    hidden = int(c.mlp_ratio * d)
    macs = n * c.in_channels * c.patch_size**2 * d
    macs += c.depth * (4 * t * d * d + 2 * t * t * d + 2 * t * d * hidden)
    # CNN: stem at full resolution, blocks from s/2 halving after each block
    w0 = c.cnn_widths[0]
    macs += s * s * c.in_channels * w0 * 9
    c_in, res = w0, s // 2
    for i, w in enumerate(c.cnn_widths):
        if i:
            res //= 2
        b = w // 4
        r = max(b // 2, 1)
        per_pixel = c_in * b + (c_in * r + r * b * 9) + (c_in * r + r * b * 25) + c_in * b
        macs += res * res * per_pixel
        c_in = w
    mag = [c.in_channels, *c.mag_widths]
    macs += sum(a * b for a, b in zip(mag[:-1], mag[1:]))
    head = [d + c.cnn_widths[-1] + mag[-1], *c.head_widths, 1]
    macs += sum(a * b for a, b in zip(head[:-1], head[1:]))
    return 2 * macs
