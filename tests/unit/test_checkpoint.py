"""Unit tests of inference.checkpoint: every checkpoint format a user brings, read without running pickled code.

The reference's own format (a whole pickled DataParallel(ViT_Astro)) is built by
``tests/reference_model.py``: classes written the reference's way, registered under
the reference's module names, held against our model with the imported weights.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import reference_model
from inference.checkpoint import REFERENCE_GLOBALS, load_checkpoint, load_model, read_weights, save_checkpoint
from inference.errors import CheckpointMismatch
from inference.model import CONFIGS, ModelConfig, build_model

TINY = CONFIGS["tiny"]


def _inputs(b: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 5, 32, 32, generator=g) * 0.5, 18 + 2 * torch.randn(b, 5, generator=g, dtype=torch.float64)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A reference-style model, its pickles (DataParallel and bare) and its outputs on float64 magnitudes."""
    model = reference_model.build(seed=7)
    folder = tmp_path_factory.mktemp("reference")
    images, mags = _inputs(16, seed=1)
    with torch.no_grad():
        outputs = model([images, mags])  # (B, 1), as the reference calls it
    return {
        "model": model, "images": images, "magnitudes": mags, "outputs": outputs,
        "dataparallel": reference_model.save_reference_checkpoint(model, folder / "Mixed_Inception_z_VITAE.pt"),
        "bare": reference_model.save_reference_checkpoint(model, folder / "bare.pt", dataparallel=False),
        "state_dict": folder / "sd.pt", "folder": folder,
    }


def test_reference_pickle_names_only_the_allowed_globals(reference):
    names = reference_model.pickled_globals(reference["dataparallel"])
    assert "blocks.model_vit_inception.ViT_Astro" in names and "torch.nn.parallel.data_parallel.DataParallel" in names
    assert "torch._utils._rebuild_parameter_with_state" in names  # from the reference's requres_grad typo
    ours = set(REFERENCE_GLOBALS)
    module_classes = {n for n in names if n.startswith(("blocks.", "timm.", "torch.nn."))}
    assert module_classes <= ours, module_classes - ours


@pytest.mark.parametrize("fmt", ["dataparallel", "bare"])
def test_reference_checkpoint_predicts_what_the_reference_model_computes(reference, fmt):
    weights = read_weights(reference[fmt])
    assert weights.num_heads == 3 and "ViT_Astro" in weights.source
    model = load_checkpoint(reference[fmt])
    assert model.config == CONFIGS["astromae"]
    with torch.inference_mode():
        ours = model(reference["images"], reference["magnitudes"])
    assert ours.shape == (16,)
    torch.testing.assert_close(ours, reference["outputs"].squeeze(1), rtol=0, atol=1e-6)


def test_reference_pickle_loads_in_a_process_without_the_reference_code(reference, tmp_path):
    """Nothing of the reference's classes is needed (or run): a fresh interpreter loads it with our stand-ins."""
    out = tmp_path / "out.pt"
    code = (
        "import sys, torch; from inference.checkpoint import load_checkpoint; "
        f"m = load_checkpoint({str(reference['dataparallel'])!r}); "
        "assert 'blocks' not in sys.modules and 'timm' not in sys.modules; "
        f"x = torch.load({str(tmp_path / 'in.pt')!r}, weights_only=True); "
        f"torch.save(m(x['images'], x['magnitudes']).detach(), {str(out)!r})"
    )
    torch.save({"images": reference["images"], "magnitudes": reference["magnitudes"]}, tmp_path / "in.pt")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
    torch.testing.assert_close(torch.load(out, weights_only=True), reference["outputs"].squeeze(1), rtol=0, atol=1e-6)


def test_plain_state_dicts_with_and_without_the_module_prefix(reference):
    sd = reference["model"].state_dict()
    for name, state in (("plain", sd), ("prefixed", {f"module.{k}": v for k, v in sd.items()})):
        path = reference["folder"] / f"{name}.pt"
        torch.save(state, path)
        with torch.inference_mode():
            for model in (load_checkpoint(path), load_model("astromae", path), load_model("astromae", state)):
                torch.testing.assert_close(model(reference["images"], reference["magnitudes"]), reference["outputs"].squeeze(1), rtol=0, atol=1e-6)


def test_our_checkpoint_round_trip(tmp_path):
    model = load_model("tiny", seed=3)
    path = tmp_path / "tiny.pt"
    save_checkpoint(model, path)
    x = _inputs(4)
    with torch.inference_mode():
        want = model(*x)
        for loaded in (load_model("tiny", path), load_checkpoint(path), load_model(TINY, model.state_dict())):
            assert torch.equal(loaded(*x), want)
    torch.save(model.state_dict(), tmp_path / "sd.pt")  # no stored config: read off the shapes
    with torch.inference_mode():
        assert torch.equal(load_checkpoint(tmp_path / "sd.pt")(*x), want)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_with_code_is_refused_before_any_of_it_runs(tmp_path):
    marker = tmp_path / "marker.txt"
    path = tmp_path / "evil.pt"
    torch.save({"config": TINY.to_dict(), "state_dict": _Exploit(marker)}, path)
    with pytest.raises(CheckpointMismatch) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "refused" in message and "'posix.system'" in message and "evil.pt" in message
    assert "weights_only=False" not in message and "add_safe_globals" not in message
    assert not marker.exists()
    torch.load(path, weights_only=False)  # control: an unsafe load would have run it
    assert marker.exists()


def test_a_reference_style_pickle_naming_another_class_is_refused(tmp_path, reference):
    """A module class outside the allow-list (here: a ReLU6 in the model) is named in the error; nothing runs."""
    model = reference_model.build(seed=1)
    model.concat_block[1] = torch.nn.ReLU6()
    path = reference_model.save_reference_checkpoint(model, tmp_path / "other.pt")
    with pytest.raises(CheckpointMismatch, match=r"'torch\.nn\.modules\.activation\.ReLU6'.*not on the allow-list"):
        load_checkpoint(path)


def test_mismatched_keys_are_listed_in_one_error(tmp_path):
    sd = build_model(TINY).state_dict()
    broken = {k: v for k, v in sd.items() if k not in ("cls_token", "head.bias")}
    broken["extra.weight"] = torch.zeros(1)
    broken["concat_block.2.weight"] = torch.zeros(1, 7)
    with pytest.raises(CheckpointMismatch) as info:
        load_model("tiny", broken)
    message = str(info.value)
    assert "2 missing (cls_token; head.bias)" in message
    assert "1 unexpected (extra.weight)" in message
    assert "concat_block.2.weight: checkpoint (1, 7) vs model (1, 32)" in message
    wider = ModelConfig.from_dict({**TINY.to_dict(), "embed_dim": 64})
    save_checkpoint(build_model(wider), tmp_path / "wider.pt")
    with pytest.raises(CheckpointMismatch, match="config mismatch for 'embed_dim'"):
        load_model("tiny", tmp_path / "wider.pt")
    torch.save(build_model(wider).state_dict(), tmp_path / "wider-sd.pt")
    with pytest.raises(CheckpointMismatch, match=r"wider-sd\.pt.*shape mismatch"):
        load_model("tiny", tmp_path / "wider-sd.pt")


def test_not_a_model_is_one_clear_error(tmp_path):
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointMismatch, match="not a ViT_Astro state dict"):
        load_checkpoint(tmp_path / "other.pt")
    (tmp_path / "bad.pt").write_text("not a checkpoint")
    with pytest.raises(CheckpointMismatch, match="bad.pt"):
        load_model("tiny", tmp_path / "bad.pt")
    with pytest.raises(CheckpointMismatch, match="missing.pt: file not found"):
        load_model("tiny", tmp_path / "missing.pt")
