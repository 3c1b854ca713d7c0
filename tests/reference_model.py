"""A stand-in for the reference's own model code, for tests: classes registered under the reference's module names.

The reference saves its trained model as a whole pickled
``torch.nn.DataParallel(ViT_Astro)``; such a pickle names the classes
``blocks.model_vit_inception.ViT_Astro``, ``blocks.photoz.*`` and timm's
``Block``/``Attention``/``Mlp``/``PatchEmbed`` (facts: ../shared/reference/astromae.md).
This module defines classes with those names, attributes and forward semantics,
written the way the reference's code computes (timm's explicit attention
``softmax(q k^T * scale) v``, the CNN's ``is_custom`` last block, ``x[1].float()``,
a (B, 1) output from ``model([images, magnitudes])``), and registers them in
``sys.modules`` so that ``torch.save`` pickles them under the reference's names.
It shares no code with ``inference.model``: tests hold the two against each other.
"""

from __future__ import annotations

import io
import sys
import types
from pathlib import Path

import torch
from torch import nn
import torch.nn.functional as F

MODULES = {
    "blocks": None,
    "blocks.model_vit_inception": ("ViT_Astro",),
    "blocks.photoz": ("Input_Mix_Model", "InceptionBlock", "ConvBlock"),
    "timm": None,
    "timm.models": None,
    "timm.models.vision_transformer": ("Block", "Attention"),
    "timm.models.layers": None,
    "timm.models.layers.mlp": ("Mlp",),
    "timm.models.layers.patch_embed": ("PatchEmbed",),
}


class PatchEmbed(nn.Module):
    def __init__(self, img_size=32, patch_size=8, in_chans=5, embed_dim=192):
        super().__init__()
        self.img_size, self.patch_size = (img_size, img_size), (patch_size, patch_size)
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(0.0)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = self.attn_drop(attn.softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(x))


class Mlp(nn.Module):
    def __init__(self, in_features, hidden_features):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(0.0)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.drop_path = nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ConvBlock(nn.Module):
    def __init__(self, in_channels, out_chanels, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_chanels, **kwargs)
        self.bn = nn.BatchNorm2d(out_chanels)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class InceptionBlock(nn.Module):
    def __init__(self, in_channels, width, is_custom=False):
        super().__init__()
        self.is_custom = is_custom
        self.branch1 = ConvBlock(in_channels, width, kernel_size=1)
        self.branch2 = nn.Sequential(ConvBlock(in_channels, width, kernel_size=1, padding=0), ConvBlock(width, width, kernel_size=3, padding=1))
        self.branch3 = nn.Sequential(ConvBlock(in_channels, width, kernel_size=1), ConvBlock(width, width, kernel_size=5, padding=2))
        self.branch4 = nn.Sequential(nn.MaxPool2d(kernel_size=3, padding=1, stride=1), ConvBlock(in_channels, width, kernel_size=1))

    def forward(self, x):
        branches = (self.branch1, self.branch2, self.branch4) if self.is_custom else (self.branch1, self.branch2, self.branch3, self.branch4)
        return torch.cat([branch(x) for branch in branches], 1)


class Input_Mix_Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv2d_init = nn.Conv2d(5, 32, kernel_size=(1, 1))
        self.avgpool = nn.AvgPool2d(kernel_size=2, stride=2)
        self.magnitude_block = nn.Sequential(
            nn.Linear(5, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 1024),
            nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 1024),
        )
        layers = [self.conv2d_init, self.avgpool]
        for i, (c_in, width) in enumerate(((32, 16), (64, 16), (64, 8), (32, 8), (32, 4))):
            layers.append(InceptionBlock(c_in, width, is_custom=i == 4))
            if i % 2:
                layers.append(nn.AvgPool2d(kernel_size=2))
        layers += [nn.Flatten(), nn.Linear(192, 1096), nn.ReLU(), nn.Linear(1096, 1096)]
        self.vis_inception = nn.Sequential(*layers)

    def forward(self, x):
        y = self.vis_inception(x[0])
        return torch.cat((y, self.magnitude_block(x[1].float())), axis=1)


class ViT_Astro(nn.Module):
    def __init__(self, embed_dim, vit_layers):
        super().__init__()
        self.embed_dim = embed_dim
        self.fc_norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, embed_dim)
        self.inception_model = Input_Mix_Model()
        self.cls_token = vit_layers["cls_token"]
        self.pos_embed = vit_layers["pos_embed"]
        self.blocks = vit_layers["blocks"]
        self.patch_embed = vit_layers["patch_embed"]
        self.vit_block = nn.Sequential(nn.Linear(embed_dim, 1096), nn.ReLU(), nn.Linear(1096, 1096))
        self.concat_block = nn.Sequential(nn.Linear(3216, 1024), nn.ReLU(), nn.Linear(1024, 1))

    def forward(self, x):
        B = x[0].shape[0]
        out = torch.cat((self.cls_token.expand(B, -1, -1), self.patch_embed(x[0])), dim=1) + self.pos_embed
        for blk in self.blocks:
            out = blk(out)
        out = self.vit_block(self.head(self.fc_norm(out[:, 1:, :].mean(dim=1))))
        return self.concat_block(torch.cat((out, self.inception_model(x)), axis=1))


def register() -> None:
    """Put the classes into sys.modules under the reference's names (pickle looks them up there)."""
    here = sys.modules[__name__]
    for name, classes in MODULES.items():
        module = sys.modules.get(name) or types.ModuleType(name)
        sys.modules[name] = module
        for cls_name in classes or ():
            cls = getattr(here, cls_name)
            cls.__module__, cls.__qualname__ = name, cls_name
            setattr(module, cls_name, cls)


def build(seed: int = 0) -> ViT_Astro:
    """A ViT_Astro built the way the reference builds it, with seeded weights and non-trivial BatchNorm statistics."""
    register()
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vit_layers = {
            "cls_token": nn.Parameter(torch.randn(1, 1, 192, generator=g) * 0.02),
            "pos_embed": nn.Parameter(torch.randn(1, 17, 192, generator=g) * 0.1, requires_grad=False),
            "blocks": nn.ModuleList(Block(192, 3) for _ in range(12)),
            "patch_embed": PatchEmbed(),
        }
        model = ViT_Astro(192, vit_layers)
        for param in model.patch_embed.parameters():
            param.requres_grad = False  # the reference's freeze() has this typo: it pickles the parameters with state
        with torch.no_grad():
            for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
                bn.running_mean.normal_(0.0, 0.1, generator=g)
                bn.running_var.uniform_(0.5, 1.5, generator=g)
                bn.weight.normal_(1.0, 0.1, generator=g)
                bn.bias.normal_(0.0, 0.1, generator=g)
    return model.eval()


def save_reference_checkpoint(model: nn.Module, path: Path, dataparallel: bool = True) -> Path:
    """Write the model as the reference's training does: the whole (DataParallel-wrapped) module, pickled."""
    register()
    torch.save(nn.DataParallel(model) if dataparallel else model, path)
    return path


def pickled_globals(path: Path) -> set[str]:
    """Every module.name global the checkpoint's pickle names."""
    import pickletools
    import zipfile

    with zipfile.ZipFile(path) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    found, strings = set(), []
    for op, arg, _ in pickletools.genops(io.BytesIO(data)):
        if op.name == "GLOBAL":
            found.add(arg.replace(" ", "."))
        elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(arg)
        elif op.name == "STACK_GLOBAL":
            found.add(f"{strings[-2]}.{strings[-1]}")
    return found
