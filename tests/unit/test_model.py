"""Unit tests of inference.model: shapes, sizes, determinism, checkpoint I/O and its errors."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from inference.errors import CheckpointMismatch, UnknownModel
from inference.model import (
    CONFIGS, ModelConfig, build_model, count_parameters, flops_per_sample, load_checkpoint, load_model,
    save_checkpoint,
)

TINY = CONFIGS["tiny"]


def _inputs(b: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 5, 32, 32, generator=g), 18 + torch.randn(b, 5, generator=g)


@pytest.fixture(scope="module")
def full_model():
    return load_model("full")


def test_full_shape_and_parameter_count(full_model):
    n = count_parameters(full_model)
    print(f"full parameters: {n:,}")
    assert abs(n - 15_900_000) <= 50_000
    with torch.inference_mode():
        out = full_model(*_inputs(3))
    assert out.shape == (3,) and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_tiny_shape_and_parameter_count():
    model = load_model("tiny")
    n = count_parameters(model)
    print(f"tiny parameters: {n:,}")
    assert n < 1_000_000
    with torch.inference_mode():
        assert model(*_inputs(7)).shape == (7,)
        assert model(*_inputs(1)).shape == (1,)
    assert not model.training


def test_forward_rejects_bad_shapes():
    model = load_model("tiny")
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


def test_config_dict_round_trip_and_unknown_keys():
    for cfg in CONFIGS.values():
        assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="bogus"):
        ModelConfig.from_dict({**TINY.to_dict(), "bogus": 1})


def test_unknown_model_lists_valid_names():
    with pytest.raises(UnknownModel, match="huge") as info:
        load_model("huge")
    assert "full" in str(info.value) and "tiny" in str(info.value)


def test_checkpoint_round_trip(tmp_path):
    model = load_model("tiny", seed=3)
    path = tmp_path / "tiny.pt"
    save_checkpoint(model, path)
    x = _inputs(4)
    with torch.inference_mode():
        want = model(*x)
        for loaded in (load_model("tiny", path), load_checkpoint(path), load_model(TINY, model.state_dict())):
            assert torch.equal(loaded(*x), want)
    # a plain state_dict file loads too
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    with torch.inference_mode():
        assert torch.equal(load_model("tiny", tmp_path / "sd.pt")(*x), want)


def test_mismatched_checkpoints_name_the_first_bad_key(tmp_path):
    sd = build_model(TINY).state_dict()
    first = next(iter(sd))
    with pytest.raises(CheckpointMismatch, match=f"missing key '{first}'"):
        load_model("tiny", {k: v for k, v in sd.items() if k != first})
    with pytest.raises(CheckpointMismatch, match="unexpected key 'extra.weight'"):
        load_model("tiny", {**sd, "extra.weight": torch.zeros(1)})
    wider = ModelConfig.from_dict({**TINY.to_dict(), "embed_dim": 32})
    path = tmp_path / "wider.pt"
    save_checkpoint(build_model(wider), path)
    with pytest.raises(CheckpointMismatch) as info:
        load_model("tiny", path)
    msg = str(info.value)
    assert first == "cls_token"  # parameters of the root module come first in state_dict order
    assert str(path) in msg and "shape mismatch for 'cls_token'" in msg
    assert "checkpoint (1, 1, 32) vs model (1, 1, 64)" in msg
    # same shapes, different head count: the stored config catches it
    heads = ModelConfig.from_dict({**TINY.to_dict(), "num_heads": 2})
    save_checkpoint(build_model(heads), path)
    with pytest.raises(CheckpointMismatch, match="num_heads"):
        load_model("tiny", path)


def test_unloadable_checkpoint_names_the_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(CheckpointMismatch, match="bad.pt"):
        load_model("tiny", bad)
    with pytest.raises(CheckpointMismatch, match="missing.pt"):
        load_model("tiny", tmp_path / "missing.pt")


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def test_checkpoint_with_pickled_code_is_refused(tmp_path):
    marker = tmp_path / "marker.txt"
    path = tmp_path / "evil.pt"
    torch.save({"config": TINY.to_dict(), "state_dict": _Exploit(marker)}, path)
    with pytest.raises(CheckpointMismatch, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # control: an unsafe load would have run it
    assert marker.exists()


def test_flops_estimate_close_to_torch_counter():
    model = build_model(TINY).train()  # train mode: the eval fast path hides matmuls from the counter
    with FlopCounterMode(display=False) as counter:
        model(*_inputs(2))
    counted = counter.get_total_flops() / 2
    assert 0.85 < flops_per_sample(TINY) / counted < 1.15
    assert flops_per_sample("full") > 50 * flops_per_sample("tiny")
