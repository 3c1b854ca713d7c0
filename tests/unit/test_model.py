"""Unit tests of inference.model: the reference's architecture, its sizes and names, determinism, FLOPs."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from inference.errors import UnknownModel
from inference.model import (
    CONFIGS, ModelConfig, ViTAstro, build_model, count_parameters, flops_per_sample, resolve_config, sincos_pos_embed,
)

TINY = CONFIGS["tiny"]


def _inputs(b: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 5, 32, 32, generator=g), 18 + torch.randn(b, 5, generator=g, dtype=torch.float64)


@pytest.fixture(scope="module")
def astromae():
    return build_model("astromae")


def test_astromae_is_the_reference_size(astromae):
    """15,801,513 parameters (the shared first conv counted once) and 388 state-dict entries, as the reference's ViT_Astro."""
    assert count_parameters(astromae) == 15_801_513
    assert len(astromae.state_dict()) == 388
    with torch.inference_mode():
        out = astromae(*_inputs(3))
    assert out.shape == (3,) and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_astromae_state_dict_names_and_shapes_are_the_reference_checkpoints(astromae):
    """Keys and shapes listed in ../shared/reference/astromae.md (its checkpoint, without 'module.')."""
    sd = astromae.state_dict()
    expected = {
        "cls_token": (1, 1, 192), "pos_embed": (1, 17, 192), "patch_embed.proj.weight": (192, 5, 8, 8),
        "blocks.0.attn.qkv.weight": (576, 192), "blocks.11.mlp.fc2.bias": (192,), "fc_norm.weight": (192,),
        "head.weight": (192, 192), "vit_block.0.weight": (1096, 192), "inception_model.conv2d_init.weight": (32, 5, 1, 1),
        "inception_model.vis_inception.2.branch4.1.bn.running_var": (16,), "inception_model.vis_inception.12.weight": (1096, 1096),
        "inception_model.magnitude_block.8.weight": (1024, 1024), "concat_block.0.weight": (1024, 3216), "concat_block.2.bias": (1,),
        "inception_model.vis_inception.8.branch3.1.conv.weight": (4, 4, 5, 5),  # the last block's unused 5x5 branch exists
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    assert not any(k.startswith("module.") for k in sd)
    assert "blocks.12.norm1.weight" not in sd and "blocks.11.norm1.weight" in sd
    # the stem conv is one module under two names, as in the reference
    assert astromae.inception_model.conv2d_init is astromae.inception_model.vis_inception[0]


def test_forward_follows_the_reference_order(astromae):
    """Mean of the 16 patch tokens (cls dropped), fc_norm, head, vit_block; the last Inception block skips its 5x5 branch."""
    images, mags = _inputs(2)
    m = astromae
    with torch.inference_mode():
        x = torch.cat([m.cls_token.expand(2, -1, -1), m.patch_embed(images)], 1) + m.pos_embed
        for block in m.blocks:
            x = block(x)
        vit = m.vit_block(m.head(m.fc_norm(x[:, 1:].mean(1))))
        cnn = m.inception_model.vis_inception(images)
        assert cnn.shape == (2, 1096)
        last = m.inception_model.vis_inception[8]
        assert last.skip_5x5 and last(torch.randn(2, 32, 4, 4)).shape == (2, 12, 4, 4)
        want = m.concat_block(torch.cat([vit, cnn, m.inception_model.magnitude_block(mags.float())], 1)).squeeze(1)
        torch.testing.assert_close(m(images, mags), want, rtol=0, atol=1e-6)


def test_pos_embed_is_the_fixed_sincos_table(astromae):
    table = sincos_pos_embed(192, 4)
    assert table.shape == (1, 17, 192) and torch.equal(table[0, 0], torch.zeros(192))
    assert torch.equal(astromae.pos_embed.detach(), table) and not astromae.pos_embed.requires_grad
    assert table[0, 1:, :48].abs().max() <= 1 and not torch.equal(table[0, 1], table[0, 2])


def test_tiny_is_the_same_architecture_scaled_down():
    model = build_model("tiny")
    assert isinstance(model, ViTAstro) and count_parameters(model) < 100_000
    names = {k.split(".")[0] for k in model.state_dict()}
    assert names == {k.split(".")[0] for k in build_model("astromae").state_dict()}
    with torch.inference_mode():
        assert model(*_inputs(7)).shape == (7,)
        assert model(*_inputs(1)).shape == (1,)
    assert not model.training


def test_forward_rejects_bad_shapes():
    model = build_model("tiny")
    images, mags = _inputs(2)
    with pytest.raises(ValueError, match=r"images: expected shape \(B, 5, 32, 32\), got \(2, 3, 32, 32\)"):
        model(images[:, :3], mags)
    with pytest.raises(ValueError, match=r"magnitudes: expected shape \(2, 5\), got \(2, 4\)"):
        model(images, mags[:, :4])
    with pytest.raises(ValueError, match="magnitudes"):
        model(images, mags[:1])


def test_seeded_build_is_deterministic_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b, c = build_model(TINY, seed=1), build_model(TINY, seed=1), build_model(TINY, seed=2)
    assert torch.equal(state, torch.random.get_rng_state())
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert list(sa) == list(sb)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    assert any(not torch.equal(v, torch.zeros_like(v)) for k, v in sa.items() if k.endswith("running_mean"))


def test_config_dict_round_trip_and_unknown_keys():
    for cfg in CONFIGS.values():
        assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="bogus"):
        ModelConfig.from_dict({**TINY.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="num_heads"):
        ModelConfig(embed_dim=192, num_heads=5)


def test_unknown_model_lists_valid_names_and_full_is_an_alias():
    with pytest.raises(UnknownModel, match="huge") as info:
        resolve_config("huge")
    assert "astromae" in str(info.value) and "tiny" in str(info.value) and "full" in str(info.value)
    assert resolve_config("full") == resolve_config("astromae")


def test_flops_per_sample_is_the_references():
    """0.219 GFLOP per sample for astromae; close to torch's own counter on both configs."""
    assert abs(flops_per_sample("astromae") / 1e9 - 0.219) < 0.001
    for name in ("astromae", "tiny"):
        with FlopCounterMode(display=False) as counter:
            build_model(name)(*_inputs(2))
        counted = counter.get_total_flops() / 2  # the counter leaves out fused attention: a few percent
        assert 0.97 < flops_per_sample(name) / counted < 1.06, name
