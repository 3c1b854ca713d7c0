"""Model folders load in isolation and fail with errors naming the folder, the function and the problem."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from inference.modelfolder import ModelFolderError, load_folder, manifest, parse_manifest, run_batches

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "autoencoder"


def _folder(root: Path, name: str, model_py: str, **files: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "model.py").write_text(model_py)
    for file, text in files.items():
        (folder / file).write_text(text)
    return folder


CONSTANT_MODEL = """
from .net import VALUE
import torch

def load(folder):
    return VALUE

def predict(model, batch):
    return torch.full((len(batch["images"]),), float(model))
"""


def test_two_folders_with_same_named_modules_do_not_leak_into_each_other(tmp_path):
    path_before = list(sys.path)
    one = load_folder(_folder(tmp_path, "one", CONSTANT_MODEL, **{"net.py": "VALUE = 1"}))
    two = load_folder(_folder(tmp_path, "two", CONSTANT_MODEL, **{"net.py": "VALUE = 2"}))
    batch = {"images": torch.zeros(3, 5, 32, 32)}
    assert one.predict(one.model, batch).tolist() == [1.0] * 3
    assert two.predict(two.model, batch).tolist() == [2.0] * 3
    assert sys.path == path_before and "net" not in sys.modules and "model" not in sys.modules


def test_the_example_autoencoder_scores_each_sample(tmp_path):
    from inference.data import generate

    loaded = load_folder(EXAMPLE)
    data = generate(20, seed=4)
    scores, timing = run_batches(loaded, data, batch_size=8)
    assert scores.shape == (20,) and bool((scores >= 0).all()) and timing.wall_s > 0
    shuffled = {k: v.flip(0) for k, v in data.items()}
    assert torch.allclose(run_batches(loaded, shuffled, batch_size=7)[0], scores.flip(0), atol=1e-6)


@pytest.mark.parametrize(
    ("model_py", "message"),
    [
        ("def predict(model, batch):\n    return batch['images']\n", "defines no function 'load'"),
        ("def load(folder):\n    return None\n", "defines no function 'predict'"),
        ("import nonexistent_package_xyz\n", "importing model.py failed: ModuleNotFoundError"),
        ("def load(folder):\n    raise RuntimeError('weights missing')\ndef predict(m, b):\n    return b\n", "load() failed: RuntimeError: weights missing"),
    ],
)
def test_malformed_folders_are_named(tmp_path, model_py, message):
    with pytest.raises(ModelFolderError, match="model folder 'bad'") as caught:
        load_folder(_folder(tmp_path, "bad", model_py))
    assert message in str(caught.value)


def test_predict_with_the_wrong_number_of_outputs_is_named(tmp_path):
    folder = _folder(tmp_path, "short", "import torch\ndef load(f):\n    return None\ndef predict(m, b):\n    return torch.zeros(3)\n")
    with pytest.raises(ModelFolderError, match=r"model folder 'short': predict\(\) returned \(3,\) for a batch of 8"):
        run_batches(load_folder(folder), {"images": torch.zeros(10, 5, 32, 32)}, batch_size=8)


def test_a_folder_without_model_py_is_refused_before_upload(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    (folder / "weights.pt").write_bytes(b"x")
    with pytest.raises(ModelFolderError, match="no model.py"):
        manifest(folder, "empty")


@pytest.mark.parametrize("bad", ["../escape.py", "/etc/passwd", "a/../../b"])
def test_manifest_entries_cannot_escape_the_folder(bad):
    body = f'{{"name": "x", "digest": "d", "files": ["model.py", "{bad}"]}}'.encode()
    with pytest.raises(ModelFolderError, match="unsafe file name"):
        parse_manifest(body, "s3://b/scripts/x/")


def test_the_digest_changes_with_the_contents(tmp_path):
    folder = _folder(tmp_path, "m", CONSTANT_MODEL, **{"net.py": "VALUE = 1"})
    first = manifest(folder, "m")["digest"]
    (folder / "net.py").write_text("VALUE = 2")
    assert manifest(folder, "m")["digest"] != first


def test_cosmicai_local_runs_a_model_folder(tmp_path):
    import json
    import subprocess

    from inference.data import generate, save_partition

    save_partition(tmp_path / "p.pt", generate(40, seed=2))
    cli = [sys.executable, "-m", "cosmicai.cli", "local", "--data", str(tmp_path / "p.pt"), "--batch-size", "16", "--json"]
    done = subprocess.run([*cli, "--model-folder", str(EXAMPLE)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["num_batches"] == 3 and record["model_folder"]["name"] == "autoencoder" and record["output_shape"] == [40]
    bad = subprocess.run([*cli, "--model-folder", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "no model.py" in bad.stderr
