"""The reference's photometric-redshift network, ``ViT_Astro``, rebuilt from ``torch.nn``.

AstroMAE's ViT encoder, an Inception CNN and a magnitude MLP read one galaxy
(a 5-band 32x32 cutout and its 5 magnitudes); their features are concatenated
and a small head regresses one redshift. Layers, their order and their names
are the reference's (AI-for-Astronomy, ``blocks/model_vit_inception.py``,
``blocks/photoz.py``, timm's ``vision_transformer``), so its state dict maps
onto this code by name (without DataParallel's ``module.`` prefix):
``cls_token``, ``pos_embed``, ``fc_norm``, ``head``, ``inception_model.*``,
``blocks.<i>.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}``,
``patch_embed.proj``, ``vit_block``, ``concat_block``.

Inference order (nanoGPT style): ``build_model(config, seed)`` or a checkpoint
(``inference.checkpoint``), then ``eval()``, then calls under
``torch.inference_mode()``. Built from ``torch.nn`` only: the Lambda image
needs nothing but torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from inference.errors import UnknownModel
from inference.naming import ALIASES, BUILTIN_MODELS, DEFAULT_MODEL, builtin_names, canonical_name, is_builtin  # noqa: F401 (re-exported)


@dataclass(frozen=True)
class ModelConfig:
    """Every size knob of :class:`ViTAstro`; the defaults are the reference's model (``astromae``)."""

    in_channels: int = 5  # SDSS bands u, g, r, i, z
    image_size: int = 32  # cutout side in pixels
    patch_size: int = 8  # ViT patch side: (32/8)^2 = 16 patches + 1 cls token = 17 tokens
    embed_dim: int = 192  # ViT token width
    depth: int = 12  # transformer blocks
    num_heads: int = 3  # attention heads: head dim 192/3 = 64
    mlp_ratio: float = 4.0  # block MLP width: 4 x 192 = 768
    branch_width: int = 1096  # width of vit_block's output and of the CNN's features
    stem_channels: int = 32  # inception_model.conv2d_init: 5 -> 32 channels, 1x1
    inception_widths: tuple[int, ...] = (16, 16, 8, 8, 4)  # per Inception block: each branch's channels
    magnitude_width: int = 1024  # the magnitude MLP's width
    magnitude_layers: int = 5  # Linear layers of the magnitude MLP (ReLU between them)
    head_width: int = 1024  # concat_block's hidden width
    norm_eps: float = 1e-6  # LayerNorm eps (timm's MAE blocks and fc_norm)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inception_widths", tuple(int(w) for w in self.inception_widths))  # JSON gives lists
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.embed_dim % self.num_heads or self.embed_dim % 4:
            raise ValueError(f"embed_dim {self.embed_dim} must divide by num_heads {self.num_heads} and by 4 (2-D sin-cos)")
        if not self.inception_widths or min(self.inception_widths) < 1 or self.magnitude_layers < 1:
            raise ValueError("inception_widths must be positive and magnitude_layers >= 1")
        if self.image_size % self.cnn_downsampling:
            raise ValueError(f"image_size {self.image_size} does not halve {int(math.log2(self.cnn_downsampling))} times")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def cnn_downsampling(self) -> int:
        """The CNN pools after the stem and after every odd-numbered Inception block (the reference's rule)."""
        return 2 ** (1 + len(self.inception_widths) // 2)

    @property
    def cnn_features(self) -> int:
        """Flattened CNN output: the last block's 3 branches x its width x the pooled grid (12 x 4 x 4 = 192)."""
        side = self.image_size // self.cnn_downsampling
        return 3 * self.inception_widths[-1] * side * side

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (tuples become lists)."""
        d = asdict(self)
        d["inception_widths"] = list(d["inception_widths"])
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
    "astromae": ModelConfig(),  # the reference's ViT_Astro: 15,801,513 parameters, 0.219 GFLOP per sample
    "tiny": ModelConfig(
        embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, branch_width=64, stem_channels=8,
        inception_widths=(4, 4, 2, 2, 2), magnitude_width=32, magnitude_layers=2, head_width=32,
    ),  # the same architecture scaled down (54,565 parameters): unit and functional tests
}
assert tuple(CONFIGS) == BUILTIN_MODELS, "inference.naming.BUILTIN_MODELS names the configs"


def resolve_config(config: ModelConfig | str) -> ModelConfig:
    if isinstance(config, ModelConfig):
        return config
    if isinstance(config, str) and is_builtin(config):
        return CONFIGS[canonical_name(config)]
    raise UnknownModel(f"unknown model {config!r}; valid names: {builtin_names()}")


# --------------------------------------------------------------------------- the ViT encoder (timm's names)


class PatchEmbed(nn.Module):
    """(B, 5, 32, 32) -> (B, 16, 192): one strided convolution per 8x8 patch."""

    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(c.in_channels, c.embed_dim, c.patch_size, stride=c.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, D, 4, 4) -> (B, 16, D)


class Attention(nn.Module):
    """Multi-head self-attention over one packed qkv projection, computed as timm 0.4.12 does: softmax(q k^T / 8) v."""

    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.num_heads = c.num_heads
        self.scale = (c.embed_dim // c.num_heads) ** -0.5  # 1/8 for head dim 64
        self.qkv = nn.Linear(c.embed_dim, 3 * c.embed_dim)
        self.proj = nn.Linear(c.embed_dim, c.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape  # (B, 17, 192)
        q, k, v = self.qkv(x).view(b, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, H, T, 64)
        weights = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)  # (B, H, T, T)
        return self.proj((weights @ v).transpose(1, 2).reshape(b, t, d))


class Mlp(nn.Module):
    """fc1 -> exact (erf) GELU -> fc2: 192 -> 768 -> 192."""

    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        hidden = int(c.embed_dim * c.mlp_ratio)
        self.fc1 = nn.Linear(c.embed_dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, c.embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """A pre-norm transformer block: x + attn(norm1(x)), then + mlp(norm2(x)); no dropout."""

    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(c.embed_dim, eps=c.norm_eps)
        self.attn = Attention(c)
        self.norm2 = nn.LayerNorm(c.embed_dim, eps=c.norm_eps)
        self.mlp = Mlp(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def sincos_pos_embed(embed_dim: int, grid: int) -> torch.Tensor:
    """MAE's fixed 2-D sin-cos table with a zero row for the cls token: (1, 1 + grid^2, D).

    Half the width encodes one grid axis and half the other; each half is
    sin and cos of the position times frequencies 1 / 10000^(i / (D/4)).
    """
    quarter = embed_dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)  # (D/4,)
    rows, cols = torch.meshgrid(torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64), indexing="ij")

    def one_axis(pos: torch.Tensor) -> torch.Tensor:
        angles = pos.reshape(-1, 1) * omega  # (grid^2, D/4)
        return torch.cat([angles.sin(), angles.cos()], dim=1)  # (grid^2, D/2)

    table = torch.cat([one_axis(cols), one_axis(rows)], dim=1)  # (grid^2, D)
    return torch.cat([torch.zeros(1, embed_dim, dtype=torch.float64), table]).float().unsqueeze(0)


# --------------------------------------------------------------------------- the Inception CNN (blocks/photoz.py names)


class ConvBlock(nn.Module):
    """Conv2d (with bias) -> BatchNorm2d -> ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel: int, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, padding=padding)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class InceptionBlock(nn.Module):
    """Four branches of ``width`` channels each, concatenated: 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | maxpool -> 1x1.

    ``skip_5x5`` is the reference's ``is_custom`` last block: its 5x5 branch
    has weights but is left out of the forward (3 x width channels out).
    """

    def __init__(self, c_in: int, width: int, skip_5x5: bool = False) -> None:
        super().__init__()
        self.skip_5x5 = skip_5x5
        self.branch1 = ConvBlock(c_in, width, 1)
        self.branch2 = nn.Sequential(ConvBlock(c_in, width, 1), ConvBlock(width, width, 3, padding=1))
        self.branch3 = nn.Sequential(ConvBlock(c_in, width, 1), ConvBlock(width, width, 5, padding=2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), ConvBlock(c_in, width, 1))

    @property
    def out_channels(self) -> int:
        return self.branch1.conv.out_channels * (3 if self.skip_5x5 else 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1, self.branch2, self.branch4) if self.skip_5x5 else (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([branch(x) for branch in branches], dim=1)  # (B, 3 or 4 x width, H, W)


class InputMixModel(nn.Module):
    """The reference's ``Input_Mix_Model``: the Inception CNN over the cutout and the magnitude MLP.

    ``vis_inception`` (a Sequential, indices as the reference's): 0 conv 1x1 (the
    same module as ``conv2d_init``), 1 AvgPool 2, then the Inception blocks with an
    AvgPool after every odd-numbered one, Flatten, Linear -> ReLU -> Linear.
    """

    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.conv2d_init = nn.Conv2d(c.in_channels, c.stem_channels, 1)
        widths = c.magnitude_layers * [c.magnitude_width]
        mag: list[nn.Module] = [nn.Linear(c.in_channels, widths[0])]
        for a, b in zip(widths[:-1], widths[1:]):
            mag += [nn.ReLU(), nn.Linear(a, b)]
        self.magnitude_block = nn.Sequential(*mag)  # (B, 5) -> (B, 1024); no activation after the last
        layers: list[nn.Module] = [self.conv2d_init, nn.AvgPool2d(2)]  # (B, 32, 16, 16)
        c_in = c.stem_channels
        last = len(c.inception_widths) - 1
        for i, width in enumerate(c.inception_widths):
            block = InceptionBlock(c_in, width, skip_5x5=i == last)
            layers.append(block)
            c_in = block.out_channels
            if i % 2 == 1:
                layers.append(nn.AvgPool2d(2))
        layers += [nn.Flatten(), nn.Linear(c.cnn_features, c.branch_width), nn.ReLU(), nn.Linear(c.branch_width, c.branch_width)]
        self.vis_inception = nn.Sequential(*layers)  # (B, 5, 32, 32) -> (B, 1096)

    def forward(self, images: torch.Tensor, magnitudes: torch.Tensor) -> torch.Tensor:
        cnn = self.vis_inception(images)  # (B, 1096)
        return torch.cat([cnn, self.magnitude_block(magnitudes)], dim=1)  # (B, 1096 + 1024)


# --------------------------------------------------------------------------- the whole model


class ViTAstro(nn.Module):
    """The reference's ``ViT_Astro``: (images (B, 5, 32, 32), magnitudes (B, 5)) -> redshift (B,).

    Attribute order is the reference's, so ``state_dict()`` lists its keys in
    the same order as the reference checkpoint's (388 entries for ``astromae``).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        c = self.config = config
        self.fc_norm = nn.LayerNorm(c.embed_dim, eps=c.norm_eps)
        self.head = nn.Linear(c.embed_dim, c.embed_dim)
        self.inception_model = InputMixModel(c)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, c.num_patches + 1, c.embed_dim), requires_grad=False)  # fixed sin-cos
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.depth))
        self.patch_embed = PatchEmbed(c)
        self.vit_block = nn.Sequential(nn.Linear(c.embed_dim, c.branch_width), nn.ReLU(), nn.Linear(c.branch_width, c.branch_width))
        features = 2 * c.branch_width + c.magnitude_width  # 1096 + 1096 + 1024 = 3216
        self.concat_block = nn.Sequential(nn.Linear(features, c.head_width), nn.ReLU(), nn.Linear(c.head_width, 1))

    def forward(self, images: torch.Tensor, magnitudes: torch.Tensor) -> torch.Tensor:
        check_inputs(self.config, images, magnitudes)
        magnitudes = magnitudes.to(images.dtype)  # the reference's partitions store float64 magnitudes
        b = images.shape[0]
        x = torch.cat([self.cls_token.expand(b, -1, -1), self.patch_embed(images)], dim=1) + self.pos_embed  # (B, 17, D)
        for block in self.blocks:
            x = block(x)
        vit = self.vit_block(self.head(self.fc_norm(x[:, 1:].mean(dim=1))))  # mean of the 16 patch tokens -> (B, 1096)
        mixed = self.inception_model(images, magnitudes)  # (B, 2120)
        return self.concat_block(torch.cat([vit, mixed], dim=1)).squeeze(1)  # (B, 3216) -> (B,)


def check_inputs(c: ModelConfig, images: torch.Tensor, magnitudes: torch.Tensor) -> None:
    """Raise ValueError naming the input whose shape does not fit ``c``: images (B, C, S, S), magnitudes (B, C)."""
    want_img = (c.in_channels, c.image_size, c.image_size)
    if images.dim() != 4 or tuple(images.shape[1:]) != want_img:
        raise ValueError(f"images: expected shape (B, {', '.join(map(str, want_img))}), got {tuple(images.shape)}")
    if magnitudes.dim() != 2 or magnitudes.shape[1] != c.in_channels or magnitudes.shape[0] != images.shape[0]:
        raise ValueError(f"magnitudes: expected shape ({images.shape[0]}, {c.in_channels}), got {tuple(magnitudes.shape)}")


def build_model(config: ModelConfig | str, seed: int = 0) -> ViTAstro:
    """A model with seeded weights (the global RNG is left untouched); same seed, bit-identical state dict.

    The ViT gets MAE's fixed sin-cos ``pos_embed`` and a normal(0.02) ``cls_token``;
    BatchNorm gets non-trivial running statistics, as a trained model has, so every
    code path that folds or skips them is exercised.
    """
    config = resolve_config(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ViTAstro(config)
        with torch.no_grad():
            model.pos_embed.copy_(sincos_pos_embed(config.embed_dim, config.image_size // config.patch_size))
            nn.init.normal_(model.cls_token, std=0.02)
            for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
                bn.running_mean.normal_(0.0, 0.1)
                bn.running_var.uniform_(0.5, 1.5)
                bn.weight.normal_(1.0, 0.1)
                bn.bias.normal_(0.0, 0.1)
    return model.eval()


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (a shared module counted once; buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def flops_per_sample(config: ModelConfig | str) -> int:
    """Forward FLOPs for one sample: 2 x the multiply-adds of every convolution, linear layer and attention matmul.

    Ignored (under 1 %): biases, norms, activations, softmax, pooling. The
    ``astromae`` model counts 0.219 G, as torch's FlopCounterMode does.
    """
    c = resolve_config(config)
    d, t, n = c.embed_dim, c.num_patches + 1, c.num_patches
    hidden = int(c.mlp_ratio * d)
    macs = n * c.in_channels * c.patch_size**2 * d  # patch embedding
    macs += c.depth * (t * d * 3 * d + 2 * t * t * d + t * d * d + 2 * t * d * hidden)  # qkv, q k^T and a v, proj, MLP
    macs += d * d + d * c.branch_width + c.branch_width**2  # head, vit_block
    side = c.image_size
    macs += side * side * c.in_channels * c.stem_channels  # conv2d_init at full resolution
    side //= 2
    c_in, last = c.stem_channels, len(c.inception_widths) - 1
    for i, w in enumerate(c.inception_widths):
        per_pixel = c_in * w * 2 + w * w * 9 + c_in * w  # branch1 1x1, branch2 1x1 + 3x3, branch4 1x1
        if i != last:
            per_pixel += c_in * w + w * w * 25  # branch3 1x1 + 5x5 (skipped in the last block's forward)
        macs += side * side * per_pixel
        c_in = w * (3 if i == last else 4)
        if i % 2 == 1:
            side //= 2
    macs += c.cnn_features * c.branch_width + c.branch_width**2  # the CNN's two linear layers
    macs += c.in_channels * c.magnitude_width + (c.magnitude_layers - 1) * c.magnitude_width**2
    macs += (2 * c.branch_width + c.magnitude_width) * c.head_width + c.head_width  # concat_block
    return 2 * macs
