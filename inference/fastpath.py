"""The fp32 inference forward of :class:`~inference.model.ViTAstro`: same predictions, less work.

:class:`InferenceModel` computes ``ViTAstro.forward`` up to float rounding (max
|diff| below ``inference.precision.TOLERANCE["fp32"]``) over the model's own
weights, prepared once (``inference.precision.prepare``), outside any timed loop:

- attention through ``F.scaled_dot_product_attention`` on the packed qkv projection;
- on the CPU, every linear layer as a oneDNN matmul over weights re-packed once
  (a ~60 MB copy for ``astromae``), with the GELU / ReLU and the residual adds
  fused into it (``onednn_available`` checks the ops exist and agree with F.linear),
  and each LayerNorm's scale and shift folded into the linear layer it feeds;
- BatchNorm folded into the preceding convolution (eval-mode statistics), and each
  Inception block's three 1x1 convolutions that read the same input run as one;
- the 1x1 stem convolution after its 2x2 average pooling (both linear: they commute;
  4x fewer pixels), the CNN in channels_last;
- linear layers with no activation between them multiplied into one, once: ``head``
  into ``vit_block[0]``, and the last linear layer of each branch (``vit_block[2]``,
  the CNN's ``vis_inception[-1]``, the magnitude MLP's last) into ``concat_block[0]``,
  which reads their concatenated outputs (3.5 M of 108 M multiply-adds per sample);
- the forward over micro-batches of ``MICRO_BATCH`` samples, so a step's
  activations stay in cache.

The switches exist so ``benchmarks/inference_speed.py --ablation`` can measure each.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from inference.model import InceptionBlock, ModelConfig, ViTAstro, check_inputs

log = logging.getLogger(__name__)

MICRO_BATCH = 128  # samples per forward step inside a batch (best of 32..256 at 1 and 2 threads: see --ablation)
_ONEDNN: bool | None = None


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
                ok = all(
                    torch.allclose(ops._linear_pointwise(x, packed, b, act, [], "none" if act == "gelu" else ""), want, atol=1e-5)
                    for act, want in (("gelu", F.gelu(F.linear(x, w, b))), ("relu", F.relu(F.linear(x, w, b))), ("none", F.linear(x, w, b)))
                ) and torch.allclose(ops._linear_pointwise.binary(x, r, packed, b, "add"), r + F.linear(x, w, b), atol=1e-5)
            _ONEDNN = bool(torch.backends.mkldnn.is_available() and ok)
        except (AttributeError, RuntimeError, NotImplementedError) as exc:
            log.debug("oneDNN packed linear unavailable: %s", exc)
            _ONEDNN = False
    return _ONEDNN


class Dense(nn.Module):
    """``act(x @ W^T + b)`` (act: none, relu, gelu), optionally ``+ residual``; oneDNN-packed when asked."""

    def __init__(self, linear: nn.Linear, act: str = "none", onednn: bool = False) -> None:
        super().__init__()
        self.linear, self.act = linear, act
        self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach().contiguous()) if onednn else None

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        shape = x.shape
        if self.packed is not None:
            flat, bias = x.reshape(-1, shape[-1]), self.linear.bias.detach()
            if residual is not None:  # act is "none": x @ W^T + b + residual in one kernel
                out = torch.ops.mkldnn._linear_pointwise.binary(flat, residual.reshape(-1, residual.shape[-1]), self.packed, bias, "add")
            else:
                out = torch.ops.mkldnn._linear_pointwise(flat, self.packed, bias, self.act, [], "none" if self.act == "gelu" else "")
            return out.view(*shape[:-1], out.shape[-1])
        out = self.linear(x)
        if self.act == "relu":
            out = F.relu(out)
        elif self.act == "gelu":
            out = F.gelu(out)
        return out if residual is None else out + residual


def _linear(weight: torch.Tensor, bias: torch.Tensor) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], device=weight.device)
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.copy_(bias)
    return layer.requires_grad_(False)


def norm_into_linear(norm: nn.LayerNorm, linear: nn.Linear) -> nn.Linear:
    """``linear(norm(x))`` as ``linear'(layer_norm(x))`` without the norm's affine: W diag(gamma), b + W beta."""
    w, b = linear.weight.detach().double(), linear.bias.detach().double()
    gamma, beta = norm.weight.detach().double(), norm.bias.detach().double()
    return _linear((w * gamma).to(linear.weight.dtype), (b + w @ beta).to(linear.weight.dtype))


class FastBlock(nn.Module):
    """A transformer block for inference: fused attention, packed linears, norm affines and residual adds folded in."""

    def __init__(self, block: nn.Module, onednn: bool) -> None:
        super().__init__()
        self.heads = block.attn.num_heads
        self.width, self.eps1, self.eps2 = block.norm1.normalized_shape, block.norm1.eps, block.norm2.eps
        self.qkv = Dense(norm_into_linear(block.norm1, block.attn.qkv), onednn=onednn)
        self.proj = Dense(block.attn.proj, onednn=onednn)
        self.fc1 = Dense(norm_into_linear(block.norm2, block.mlp.fc1), "gelu", onednn)
        self.fc2 = Dense(block.mlp.fc2, onednn=onednn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape  # (B, 17, 192)
        y = F.layer_norm(x, self.width, eps=self.eps1)  # norm1's gamma and beta live in qkv
        q, k, v = self.qkv(y).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, H, T, 64)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, d)
        x = self.proj(a, residual=x)  # x + proj(a)
        return self.fc2(self.fc1(F.layer_norm(x, self.width, eps=self.eps2)), residual=x)  # x + fc2(gelu(fc1(norm2(x))))


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of one convolution computing bn(conv(x)) with bn's running statistics."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
    weight = conv.weight.detach() * scale.view(-1, 1, 1, 1)
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    return weight, (bias - bn.running_mean) * scale + bn.bias.detach()


def _conv(weight: torch.Tensor, bias: torch.Tensor, padding: int) -> nn.Conv2d:
    conv = nn.Conv2d(weight.shape[1], weight.shape[0], weight.shape[2], padding=padding, device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
    return conv.requires_grad_(False)


class FastInception(nn.Module):
    """An Inception block with BatchNorm folded and its three input-side 1x1 convolutions run as one."""

    def __init__(self, block: InceptionBlock) -> None:
        super().__init__()
        self.skip_5x5 = block.skip_5x5
        firsts = [block.branch1, block.branch2[0]] + ([] if block.skip_5x5 else [block.branch3[0]])
        folded = [fold_batchnorm(cb.conv, cb.bn) for cb in firsts]
        self.width = folded[0][0].shape[0]
        self.reduce = _conv(torch.cat([w for w, _ in folded]), torch.cat([b for _, b in folded]), 0)  # (B, 2-3 x width, H, W)
        self.conv3 = _conv(*fold_batchnorm(block.branch2[1].conv, block.branch2[1].bn), 1)
        self.conv5 = None if block.skip_5x5 else _conv(*fold_batchnorm(block.branch3[1].conv, block.branch3[1].bn), 2)
        self.pool_conv = _conv(*fold_batchnorm(block.branch4[1].conv, block.branch4[1].bn), 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = F.relu(self.reduce(x)).split(self.width, dim=1)  # branch1 | branch2's 1x1 | branch3's 1x1
        out = [parts[0], F.relu(self.conv3(parts[1]))]
        if self.conv5 is not None:
            out.append(F.relu(self.conv5(parts[2])))
        out.append(F.relu(self.pool_conv(F.max_pool2d(x, 3, stride=1, padding=1))))
        return torch.cat(out, dim=1)


def compose(first: nn.Linear, second: nn.Linear) -> nn.Linear:
    """One linear layer computing second(first(x)) (products in float64, then rounded once)."""
    w1, b1, w2, b2 = (t.detach().double() for t in (first.weight, first.bias, second.weight, second.bias))
    return _linear((w2 @ w1).to(first.weight.dtype), (w2 @ b1 + b2).to(first.weight.dtype))


def fold_into_concat(concat: nn.Linear, lasts: list[nn.Linear]) -> nn.Linear:
    """``concat(cat(last_i(h_i)))`` as one linear layer over ``cat(h_i)``: each column block times its feeding layer."""
    w, bias = concat.weight.detach().double(), concat.bias.detach().double()
    blocks, start = [], 0
    for last in lasts:
        width = last.out_features
        part = w[:, start:start + width]  # (out, width)
        blocks.append(part @ last.weight.detach().double())  # (out, in_i)
        bias = bias + part @ last.bias.detach().double()
        start += width
    if start != w.shape[1]:
        raise ValueError(f"fold_into_concat: the branches give {start} features, the layer reads {w.shape[1]}")
    return _linear(torch.cat(blocks, dim=1).to(concat.weight.dtype), bias.to(concat.weight.dtype))


class InferenceModel(nn.Module):
    """``ViTAstro``'s forward for inference only (see the module docstring); the model is left as it is."""

    def __init__(self, model: ViTAstro, *, micro_batch: int | None = MICRO_BATCH, channels_last: bool = True,
                 fuse_cnn: bool = True, fold_linear: bool = True, onednn: bool | None = None) -> None:
        super().__init__()
        if not isinstance(model, ViTAstro):
            raise ValueError(f"InferenceModel: not a ViTAstro ({type(model).__name__})")
        model.eval()
        on_cpu_fp32 = model.pos_embed.device.type == "cpu" and model.pos_embed.dtype == torch.float32
        self.onednn = bool(on_cpu_fp32 and onednn_available()) if onednn is None else onednn
        self.config: ModelConfig = model.config
        self.micro_batch, self.channels_last = micro_batch, channels_last
        self.patch_embed, self.cls_token, self.pos_embed = model.patch_embed, model.cls_token, model.pos_embed
        self.blocks = nn.ModuleList(FastBlock(block, self.onednn) for block in model.blocks)
        self.fc_norm = model.fc_norm
        mix = model.inception_model
        stages = list(mix.vis_inception)
        flatten = next(i for i, m in enumerate(stages) if isinstance(m, nn.Flatten))
        self.stem = mix.conv2d_init  # applied after the first average pooling when fuse_cnn
        self.fuse_cnn = fuse_cnn
        self.cnn = nn.Sequential(*(FastInception(m) if fuse_cnn and isinstance(m, InceptionBlock) else m for m in stages[2:flatten]))
        mags = [m for m in mix.magnitude_block if isinstance(m, nn.Linear)]
        self.fold_linear = fold_linear
        if fold_linear:  # (B,192) -> fc_norm.head.vit_block[0] -> ReLU -> (B,1096); the branches' last layers live in concat
            self.fc_norm = nn.LayerNorm(model.fc_norm.normalized_shape, eps=model.fc_norm.eps, elementwise_affine=False)
            self.vit = nn.Sequential(Dense(norm_into_linear(model.fc_norm, compose(model.head, model.vit_block[0])), "relu", self.onednn))
            self.cnn_head = nn.Sequential(Dense(stages[flatten + 1], "relu", self.onednn))
            self.magnitude = nn.Sequential(*(Dense(m, "relu", self.onednn) for m in mags[:-1]))
            concat = fold_into_concat(model.concat_block[0], [model.vit_block[2], stages[flatten + 3], mags[-1]])
        else:
            self.vit = nn.Sequential(Dense(model.head, onednn=self.onednn), Dense(model.vit_block[0], "relu", self.onednn),
                                     Dense(model.vit_block[2], onednn=self.onednn))
            self.cnn_head = nn.Sequential(Dense(stages[flatten + 1], "relu", self.onednn), Dense(stages[flatten + 3], onednn=self.onednn))
            self.magnitude = nn.Sequential(*(Dense(m, "relu" if i < len(mags) - 1 else "none", self.onednn) for i, m in enumerate(mags)))
            concat = model.concat_block[0]
        self.concat = nn.Sequential(Dense(concat, "relu", self.onednn), Dense(model.concat_block[2], onednn=self.onednn))
        self.eval()

    def forward(self, images: torch.Tensor, magnitudes: torch.Tensor) -> torch.Tensor:
        check_inputs(self.config, images, magnitudes)
        magnitudes = magnitudes.to(images.dtype)
        step = self.micro_batch
        if not step or images.shape[0] <= step:
            return self._forward(images, magnitudes)
        return torch.cat([self._forward(images[i:i + step], magnitudes[i:i + step]) for i in range(0, images.shape[0], step)])

    def _cnn(self, images: torch.Tensor) -> torch.Tensor:
        if self.fuse_cnn:  # avgpool(conv1x1(x)) == conv1x1(avgpool(x)): pool the 5 input channels, not the 32 outputs
            x = self.stem(F.avg_pool2d(images, 2))
        else:
            x = F.avg_pool2d(self.stem(images), 2)
        x = self.cnn(x)  # (B, 12, 4, 4)
        return self.cnn_head(x.flatten(1))  # (B, 1096); flatten in NCHW order, as the reference's Flatten

    def _forward(self, images: torch.Tensor, magnitudes: torch.Tensor) -> torch.Tensor:
        b = images.shape[0]
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)  # (B, 5, 32, 32), NHWC in memory
        x = torch.cat([self.cls_token.expand(b, -1, -1), self.patch_embed(images)], dim=1) + self.pos_embed  # (B, 17, D)
        for block in self.blocks:
            x = block(x)
        vit = self.vit(self.fc_norm(x[:, 1:].mean(dim=1)))  # (B, 1096)
        features = torch.cat([vit, self._cnn(images), self.magnitude(magnitudes)], dim=1)  # (B, 3216)
        return self.concat(features).squeeze(1)  # (B,)


def inference_module(model: Any, **switches: Any) -> nn.Module:
    """:class:`InferenceModel` for a ViTAstro, the module itself otherwise (a user's model runs as it is)."""
    if isinstance(model, ViTAstro):
        return InferenceModel(model, **switches)
    log.debug("inference forward not used: not a ViTAstro (%s)", type(model).__name__)
    return model
