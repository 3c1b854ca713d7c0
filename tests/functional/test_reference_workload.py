"""The reference's own workload through the whole pipeline: its checkpoint format, its partition layout, its metrics."""

from __future__ import annotations

import io
import json

import torch
from torch.utils.data import TensorDataset

import reference_model
from cosmicai.runs import RunRequest, execute_run
from inference.data import generate


def _reference_partitions(folder, samples: int, parts: int) -> dict[str, torch.Tensor]:
    """Partitions as the reference's split_data.py writes them: TensorDataset(images f32, magnitudes f64, redshifts)."""
    data = generate(samples, seed=11)
    folder.mkdir()
    per = samples // parts
    for i in range(parts):
        chunk = [data[k][i * per:(i + 1) * per].numpy() for k in ("images", "magnitudes", "redshifts")]
        torch.save(TensorDataset(*(torch.tensor(c) for c in chunk)), folder / f"{i + 1}.pt")
    return data


def test_a_reference_checkpoint_over_reference_partitions_predicts_what_the_reference_computes(target, tiny_stack, deployment, tmp_path):
    model = reference_model.build(seed=5)
    checkpoint = reference_model.save_reference_checkpoint(model, tmp_path / "Mixed_Inception_z_VITAE_Base_Img_Full_New_Full.pt")
    data = _reference_partitions(tmp_path / "parts", 48, 3)
    assert data["magnitudes"].dtype == torch.float64
    request = RunRequest(data=tmp_path / "parts", model=str(checkpoint), batch_size=16, metrics="reference")
    outcome = execute_run(target, tiny_stack, request, tmp_path / "out", deployment=deployment)
    assert outcome.exit_code == 0, outcome.summary
    with torch.no_grad():
        want = model([data["images"], data["magnitudes"]]).squeeze(1)  # the reference's own call on its own dtypes
    s3 = target.client("s3")
    got = []
    for rank in (1, 2, 3):
        body = s3.get_object(Bucket=tiny_stack.bucket, Key=f"{outcome.summary['result_prefix']}/predictions/{rank}.pt")["Body"].read()
        got.append(torch.load(io.BytesIO(body), weights_only=True)["predictions"])
    torch.testing.assert_close(torch.cat(got), want, rtol=0, atol=1e-5)
    records = json.loads((outcome.out_dir / "combined_data.json").read_text())
    for record in records:
        assert record["metrics"] == "reference"
        assert record["sample_persec"] == record["num_samples"] / record["total_cpu_time (seconds)"]  # the reference's definition
        assert record["s3_num_requests"] >= 2 and record["s3_data_download_s"] > 0 and record["s3_result_upload_s"] > 0
        if record["cold_start"]:
            assert record["s3_model_download_s"] > 0
        else:  # the run's model digest (read once by Initialize): a warm worker holding it asks S3 nothing about the model
            assert record["s3_model_download_s"] == 0
    assert any(record["cold_start"] for record in records)
    logs = (outcome.out_dir / "logs" / f"{tiny_stack.function_name('infer')}.log").read_text()
    assert "cast magnitudes float64 to float32" in logs
