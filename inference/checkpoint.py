"""Model weights in, model weights out: every checkpoint format a user brings, read without running pickled code.

Formats read by :func:`load_checkpoint` / :func:`load_model`:

1. this project's checkpoint: ``{"config": ModelConfig.to_dict(), "state_dict": ...}``
   (written by :func:`save_checkpoint`);
2. a plain ``ViT_Astro`` state dict, with or without DataParallel's ``module.`` prefix;
3. the reference's own format: a whole pickled ``torch.nn.DataParallel(ViT_Astro)``
   (or a bare ``ViT_Astro``), as its training saved it. Such a pickle names the
   reference's classes (``REFERENCE_GLOBALS``); each name resolves to an inert
   stand-in (:class:`ModuleStandIn`) that only holds the pickled attributes, so
   ``torch.load(..., weights_only=True)`` reads it and nothing in it runs. Any
   other global is refused with an error naming it. The stand-ins' parameters and
   buffers are then walked into a state dict and mapped onto :class:`ViTAstro`.

A state dict that does not fit the model gets one :class:`CheckpointMismatch`
listing the missing, unexpected and mis-shaped keys. Without a stored config
the config is read off the tensors' shapes (the attention head count from the
pickled ``Attention`` modules, else from the built-in model of that width).
"""

from __future__ import annotations

import io
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from inference.errors import CheckpointMismatch
from inference.model import CONFIGS, ModelConfig, ViTAstro, build_model, resolve_config
from inference.safeload import safe_load

_TORCH_NN = {
    "conv.Conv2d", "batchnorm.BatchNorm2d", "linear.Linear", "linear.Identity", "normalization.LayerNorm",
    "activation.GELU", "activation.ReLU", "dropout.Dropout", "flatten.Flatten", "pooling.AvgPool2d",
    "pooling.MaxPool2d", "container.Sequential", "container.ModuleList",
}
REFERENCE_GLOBALS = (
    "blocks.model_vit_inception.ViT_Astro",
    "blocks.photoz.Input_Mix_Model",
    "blocks.photoz.InceptionBlock",
    "blocks.photoz.ConvBlock",
    "timm.models.vision_transformer.Block",
    "timm.models.vision_transformer.Attention",
    "timm.models.layers.mlp.Mlp",
    "timm.models.layers.patch_embed.PatchEmbed",
    "torch.nn.parallel.data_parallel.DataParallel",
    *(f"torch.nn.modules.{name}" for name in sorted(_TORCH_NN)),
)  # the module classes a reference checkpoint pickle names (see ../shared/reference/astromae.md)
_ATTENTION = "timm.models.vision_transformer.Attention"


class ModuleStandIn:
    """An inert stand-in for a pickled ``nn.Module`` class: it keeps the pickled attributes and runs nothing."""

    pickled_name = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # never called by the unpickler for modules; harmless
        pass

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = state[0]
        if isinstance(state, dict):
            self.__dict__.update(state)


STANDINS = tuple(
    (type(name.rsplit(".", 1)[1], (ModuleStandIn,), {"pickled_name": name, "__module__": __name__}), name)
    for name in REFERENCE_GLOBALS
)


@dataclass(frozen=True)
class Weights:
    """What a checkpoint file holds, format aside."""

    state_dict: dict[str, torch.Tensor]  # ViTAstro's key names (no ``module.`` prefix)
    config: ModelConfig | None  # stored in the file, or None (read it off the shapes)
    source: str  # "cosmicai", "state_dict" or "pickled DataParallel(ViT_Astro)" ...
    num_heads: int | None = None  # from pickled Attention modules, when the file has them


# --------------------------------------------------------------------------- reading


def _module_tensors(obj: Any, prefix: str, out: dict[str, Any], ancestors: frozenset[int] = frozenset()) -> None:
    """Walk a stand-in module tree into state-dict entries (a shared module appears under each of its names)."""
    state = obj.__dict__
    skip = state.get("_non_persistent_buffers_set") or set()
    for name, value in (state.get("_parameters") or {}).items():
        if value is not None:
            out[prefix + name] = value
    for name, value in (state.get("_buffers") or {}).items():
        if value is not None and name not in skip:
            out[prefix + name] = value
    inside = ancestors | {id(obj)}
    for name, child in (state.get("_modules") or {}).items():
        if isinstance(child, ModuleStandIn) and id(child) not in inside:  # a cycle can only come from a crafted file
            _module_tensors(child, f"{prefix}{name}.", out, inside)


def _num_heads(obj: Any) -> int | None:
    """The ``num_heads`` of the first pickled Attention module in the tree, if any."""
    stack = [obj]
    while stack:
        node = stack.pop()
        if getattr(node, "pickled_name", "") == _ATTENTION and isinstance(node.__dict__.get("num_heads"), int):
            return node.__dict__["num_heads"]
        stack.extend(c for c in (node.__dict__.get("_modules") or {}).values() if isinstance(c, ModuleStandIn))
    return None


def _strip_prefix(sd: Mapping[str, Any]) -> dict[str, Any]:
    keys = list(sd)
    if keys and all(isinstance(k, str) and k.startswith("module.") for k in keys):
        return {k[len("module."):]: v for k, v in sd.items()}
    return dict(sd)


def weights_from_object(obj: Any, where: str) -> Weights:
    """The state dict (and stored config) of anything ``torch.load`` returned for a supported format."""
    if isinstance(obj, ModuleStandIn):
        tensors: dict[str, Any] = {}
        _module_tensors(obj, "", tensors)
        kind = f"pickled {obj.pickled_name.rsplit('.', 1)[1]}"
        if obj.pickled_name.endswith("DataParallel"):
            inner = (obj.__dict__.get("_modules") or {}).get("module")
            kind += f"({getattr(inner, 'pickled_name', '?').rsplit('.', 1)[-1]})"
        return Weights(_check_tensors(_strip_prefix(tensors), where), None, kind, _num_heads(obj))
    if not isinstance(obj, Mapping):
        raise CheckpointMismatch(f"{where}: expected a state dict, a checkpoint dict or a pickled ViT_Astro, got {type(obj).__name__}")
    if isinstance(obj.get("state_dict"), Mapping):
        stored = obj.get("config")
        config = None
        if isinstance(stored, Mapping):
            try:
                config = ModelConfig.from_dict(stored)
            except (TypeError, ValueError) as exc:
                raise CheckpointMismatch(f"{where}: bad stored config: {exc}") from None
        return Weights(_check_tensors(_strip_prefix(obj["state_dict"]), where), config, "cosmicai checkpoint")
    return Weights(_check_tensors(_strip_prefix(obj), where), None, "state dict")


def _check_tensors(sd: dict[str, Any], where: str) -> dict[str, torch.Tensor]:
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointMismatch(f"{where}: entries that are not tensors: {', '.join(map(repr, bad[:5]))}")
    return {k: v.detach() for k, v in sd.items()}


def read_weights(source: str | os.PathLike | Mapping[str, Any]) -> Weights:
    """Read a checkpoint file (any supported format) or take an in-memory state dict."""
    if isinstance(source, Mapping):
        return weights_from_object(source, "state_dict")
    path = Path(source)
    where = f"checkpoint {path}"
    return weights_from_object(safe_load(path, where, CheckpointMismatch, allow=STANDINS), where)


# --------------------------------------------------------------------------- config and fit


def config_from_weights(weights: Weights, where: str) -> ModelConfig:
    """The stored config, else the one the tensors' shapes describe."""
    if weights.config is not None:
        return weights.config
    sd = weights.state_dict
    try:
        proj = sd["patch_embed.proj.weight"]  # (D, C, P, P)
        embed_dim, in_channels, patch = int(proj.shape[0]), int(proj.shape[1]), int(proj.shape[2])
        grid = math.isqrt(int(sd["pos_embed"].shape[1]) - 1)
        depth = len({k.split(".")[1] for k in sd if re.match(r"blocks\.\d+\.", k)})
        inception = sorted((int(m.group(1)), int(sd[k].shape[0])) for k in sd if (m := re.match(r"inception_model\.vis_inception\.(\d+)\.branch1\.conv\.weight$", k)))
        magnitude = [k for k in sd if re.match(r"inception_model\.magnitude_block\.\d+\.weight$", k)]
        values = dict(
            in_channels=in_channels, image_size=grid * patch, patch_size=patch, embed_dim=embed_dim, depth=depth,
            mlp_ratio=int(sd["blocks.0.mlp.fc1.weight"].shape[0]) / embed_dim,
            branch_width=int(sd["vit_block.0.weight"].shape[0]),
            stem_channels=int(sd["inception_model.conv2d_init.weight"].shape[0]),
            inception_widths=tuple(width for _, width in inception),
            magnitude_width=int(sd["inception_model.magnitude_block.0.weight"].shape[0]),
            magnitude_layers=len(magnitude), head_width=int(sd["concat_block.0.weight"].shape[0]),
        )
    except (KeyError, IndexError) as exc:
        raise CheckpointMismatch(f"{where} ({weights.source}): not a ViT_Astro state dict (no {exc})") from None
    heads = weights.num_heads or next(
        (c.num_heads for c in CONFIGS.values() if c.embed_dim == embed_dim and c.depth == depth), None)
    if heads is None:
        raise CheckpointMismatch(
            f"{where} ({weights.source}): cannot tell the number of attention heads of a {embed_dim}-wide model; "
            "save it with cosmicai's checkpoint format (inference.checkpoint.save_checkpoint)")
    try:
        return ModelConfig(num_heads=heads, **values)
    except ValueError as exc:
        raise CheckpointMismatch(f"{where} ({weights.source}): {exc}") from None


def check_fit(model: torch.nn.Module, sd: Mapping[str, torch.Tensor], where: str) -> None:
    """One CheckpointMismatch listing every missing, unexpected and mis-shaped key (10 of each at most)."""
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in own if k in sd and sd[k].shape != own[k].shape]
    if not (missing or unexpected or shapes):
        return
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
        if items:
            more = f", and {len(items) - 10} more" if len(items) > 10 else ""
            parts.append(f"{len(items)} {label} ({'; '.join(map(str, items[:10]))}{more})")
    raise CheckpointMismatch(f"{where}: does not fit the model: {', '.join(parts)}")


def _check_config(cfg: ModelConfig, stored: ModelConfig, where: str) -> None:
    for f in fields(ModelConfig):
        if getattr(cfg, f.name) != getattr(stored, f.name):
            raise CheckpointMismatch(
                f"{where}: config mismatch for {f.name!r}: checkpoint {getattr(stored, f.name)!r} vs requested {getattr(cfg, f.name)!r}")


def model_from_weights(config: ModelConfig, weights: Weights, where: str, device: str | torch.device = "cpu") -> ViTAstro:
    """``config``'s model with ``weights`` loaded (after checking they fit), in eval() mode on ``device``."""
    if weights.config is not None:
        _check_config(config, weights.config, where)
    model = ViTAstro(config)
    check_fit(model, weights.state_dict, where)
    model.load_state_dict(weights.state_dict, strict=True)
    return model.to(device).eval()


# --------------------------------------------------------------------------- the public API


def load_model(
    config: str | ModelConfig = "astromae",
    weights: str | os.PathLike | Mapping[str, Any] | None = None,
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> ViTAstro:
    """``config``'s model in eval() mode: seeded weights, or ``weights`` (any supported format) checked and loaded."""
    cfg = resolve_config(config)
    if weights is None:
        return build_model(cfg, seed=seed).to(device).eval()
    where = "state_dict" if isinstance(weights, Mapping) else f"checkpoint {weights}"
    return model_from_weights(cfg, read_weights(weights), where, device)


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> ViTAstro:
    """The model a checkpoint file describes (stored config, else the shapes'), in eval() mode."""
    where = f"checkpoint {path}"
    weights = read_weights(path)  # read once: the file may be ~60 MiB in a cold Lambda
    return model_from_weights(config_from_weights(weights, where), weights, where, device)


def checkpoint_bytes(model: ViTAstro) -> bytes:
    """``{"config": ..., "state_dict": ...}`` (CPU tensors) as bytes; same model, same bytes.

    Saved through a buffer: torch names the archive's inner folder after the
    file name, so saving to differently named files gives different bytes.
    """
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"config": model.config.to_dict(), "state_dict": sd}, buffer)
    return buffer.getvalue()


def save_checkpoint(model: ViTAstro, path: str | os.PathLike) -> None:
    """Write the self-describing checkpoint (see ``checkpoint_bytes``) to path."""
    Path(path).write_bytes(checkpoint_bytes(model))
