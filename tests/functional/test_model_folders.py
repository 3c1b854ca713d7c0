"""Bring your own model: model folders through the whole pipeline, and each malformed one named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cosmicai.deploy import put_tagged, upload_files, upload_model_folder
from cosmicai.runs import RunRequest, execute_run
from inference.data import list_partitions

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "autoencoder"


def test_the_builtin_model_is_a_model_folder_too(target, tiny_stack, deployment, tiny_partitions, tmp_path):
    outcome = execute_run(target, tiny_stack, RunRequest(data=tiny_partitions, model="tiny", batch_size=16), tmp_path / "out", deployment=deployment)
    assert outcome.exit_code == 0
    records = json.loads((outcome.out_dir / "combined_data.json").read_text())
    assert {r["model_folder"]["name"] for r in records} == {"tiny"}
    assert {r["model_key"] for r in records} == {"scripts/tiny"}


def test_the_example_autoencoder_runs_through_the_pipeline(target, tiny_stack, deployment, tiny_partitions, tmp_path):
    request = RunRequest(data=tiny_partitions, model_folder=EXAMPLE, batch_size=16)
    outcome = execute_run(target, tiny_stack, request, tmp_path / "out", deployment=deployment)
    summary = outcome.summary
    assert outcome.exit_code == 0, summary["ranks_failed"]
    assert summary["ranks_succeeded"] == 4 and summary["samples_total"] == 96
    records = json.loads((outcome.out_dir / "combined_data.json").read_text())
    assert {r["model_folder"]["name"] for r in records} == {"autoencoder"}
    assert all(r["sample_persec"] > 0 and r["num_batches"] == 2 for r in records)
    scores = torch.load(outcome.out_dir / "predictions" / "1.pt", weights_only=True)["predictions"]
    assert scores.shape == (24,) and bool((scores >= 0).all())


def _write_folder(root: Path, name: str, model_py: str | None) -> Path:
    folder = root / name
    folder.mkdir()
    if model_py is not None:
        (folder / "model.py").write_text(model_py)
    (folder / "weights.txt").write_text("unused")
    return folder


MALFORMED = {
    "no-load": ("import torch\ndef predict(model, batch):\n    return batch['images'][:, 0, 0, 0]\n", "defines no function 'load'"),
    "short-output": ("import torch\ndef load(folder):\n    return None\ndef predict(model, batch):\n    return torch.zeros(1)\n", "predict() returned (1,) for a batch of 16"),
    "import-error": ("import package_that_is_not_installed\n", "importing model.py failed: ModuleNotFoundError"),
}


@pytest.mark.parametrize("name", sorted(MALFORMED) + ["no-module"])
def test_a_malformed_model_folder_fails_its_ranks_with_the_named_error(target, tiny_stack, deployment, tiny_partitions, tmp_path, name):
    s3 = target.client("s3")
    upload_files(s3, tiny_stack.bucket, "data/reference", list_partitions(tiny_partitions))
    if name == "no-module":  # on S3 without model.py, as a hand-copied folder would be
        put_tagged(s3, tiny_stack.bucket, f"scripts/{name}/cosmicai-folder.json", json.dumps({"name": name, "digest": "0", "files": ["weights.txt"]}).encode(), {})
        put_tagged(s3, tiny_stack.bucket, f"scripts/{name}/weights.txt", b"unused", {})
        expected = "no model.py in it"
    else:
        model_py, expected = MALFORMED[name]
        upload_model_folder(s3, tiny_stack.bucket, name, _write_folder(tmp_path, name, model_py))
    payload = {"bucket": tiny_stack.bucket, "data_prefix": "data/reference", "world_size": 2, "batch_size": 16, "model_key": name}
    outcome = execute_run(target, tiny_stack, RunRequest(payload=payload, run_id=f"bad-folder-{name}"), tmp_path / "out", deployment=deployment)
    failed = outcome.summary["ranks_failed"]
    assert outcome.exit_code == 1 and [f["rank"] for f in failed] == [1, 2]
    for failure in failed:
        assert failure["error"]["type"] == "ModelFolderError"
        assert f"model folder '{name}'" in failure["error"]["message"] and expected in failure["error"]["message"]
