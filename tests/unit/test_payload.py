"""Unit tests of inference.payload: canonical keys, reference aliases, and the rejections."""

from __future__ import annotations

import pytest

from inference.errors import PayloadError
from inference.payload import DEFAULT_MODEL_KEY, parse_payload


def _reject(payload: dict) -> str:
    with pytest.raises(PayloadError) as info:
        parse_payload(payload)
    return str(info.value)


# --------------------------------------------------------------------------- accepted keys


def test_canonical_keys():
    p = parse_payload(
        {
            "bucket": "cosmic-bucket",
            "data_prefix": "data/sdss",
            "world_size": 3,
            "batch_size": 64,
            "result_prefix": "results/mine",
            "model_key": "scripts/tiny/model.pt",
            "max_concurrency": 2,
            "device": "cpu",
            "tolerated_failure_percentage": 25.0,
            "run_id": "run-1",
        }
    )
    assert p.bucket == "cosmic-bucket"
    assert p.data_prefix == "data/sdss"
    assert p.world_size == 3
    assert p.batch_size == 64
    assert p.result_prefix == "results/mine"
    assert p.model_key == "scripts/tiny/model.pt"
    assert p.max_concurrency == 2
    assert p.tolerated_failure_percentage == 25.0
    assert p.run_id == "run-1"
    assert p.source_bucket == "cosmic-bucket"
    assert p.partition_prefix == "data/sdss/"


def test_defaults():
    p = parse_payload({"bucket": "cosmic-bucket"})
    assert p.batch_size == 512
    assert p.world_size is None
    assert p.device == "cpu"
    assert p.model_key == DEFAULT_MODEL_KEY == "scripts/astromae"
    assert p.metrics == "wall-clock"
    assert p.tolerated_failure_percentage == 0.0
    assert p.resume is False


def test_reference_aliases():
    p = parse_payload(
        {
            "S3_BUCKET": "cosmic-bucket",
            "DATA_PREFIX": "data/100MB",
            "file_limit": 4,
            "result_path": "results/ref",
            "S3_object_name": "Anomaly Detection",
        }
    )
    assert p.bucket == "cosmic-bucket"
    assert p.data_prefix == "data/100MB"
    assert p.world_size == 4
    assert p.result_prefix == "results/ref"
    assert p.model_key == "Anomaly Detection"
    assert p.results_prefix("whatever") == "results/ref"


def test_file_limit_as_string():
    p = parse_payload({"S3_BUCKET": "cosmic-bucket", "file_limit": "4"})
    assert p.world_size == 4
    assert isinstance(p.world_size, int)


def test_reference_only_keys_are_ignored():
    p = parse_payload({"bucket": "cosmic-bucket", "script": "/opt/ml/inference.py", "object_type": "folder", "batch_size": 8})
    assert p.batch_size == 8
    assert p.bucket == "cosmic-bucket"


def test_a_full_reference_payload_runs_unchanged():
    reference = {
        "S3_BUCKET": "cosmicai-data",
        "DATA_PREFIX": "scripts/Anomaly Detection/Inference/100MB",
        "file_limit": "2",
        "batch_size": 512,
        "result_path": "result-partition-100MB/2GB/2",
        "S3_object_name": "Anomaly Detection",
        "script": "/tmp/Anomaly Detection/Inference/inference.py",
        "object_type": "folder",
    }
    p = parse_payload(reference)
    assert (p.bucket, p.world_size, p.batch_size) == ("cosmicai-data", 2, 512)
    assert p.partition_prefix == "scripts/Anomaly Detection/Inference/100MB/"
    assert p.results_prefix("ignored") == "result-partition-100MB/2GB/2"
    assert p.model_object_key() == "scripts/Anomaly Detection"


# --------------------------------------------------------------------------- rejections


def test_missing_bucket():
    message = _reject({"data_prefix": "data", "world_size": 2})
    assert "bucket" in message


def test_not_an_object():
    assert "object" in _reject(["bucket", "x"])  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [0, -1])
def test_world_size_below_one(value):
    message = _reject({"bucket": "cosmic-bucket", "world_size": value})
    assert "world_size" in message
    assert str(value) in message


def test_file_limit_zero_is_reported_as_world_size():
    assert "world_size" in _reject({"S3_BUCKET": "cosmic-bucket", "file_limit": "0"})


@pytest.mark.parametrize("value", [0, -3])
def test_batch_size_below_one(value):
    message = _reject({"bucket": "cosmic-bucket", "batch_size": value})
    assert "batch_size" in message
    assert str(value) in message


@pytest.mark.parametrize(("typo", "right"), [("batchsize", "batch_size"), ("world_sise", "world_size"), ("data_prefx", "data_prefix")])
def test_typo_key_suggests_the_right_one(typo, right):
    message = _reject({"bucket": "cosmic-bucket", typo: 4})
    assert repr(typo) in message
    assert f"did you mean {right!r}" in message


@pytest.mark.parametrize(
    ("prefix", "words"),
    [
        ("results/../../etc", ".."),
        ("../up", ".."),
        ("/absolute/results", "leading '/'"),
        ("s3://other-bucket/x", "other-bucket"),
    ],
)
def test_bad_result_prefix(prefix, words):
    message = _reject({"bucket": "cosmic-bucket", "result_prefix": prefix})
    assert "result_prefix" in message
    assert words in message


def test_result_prefix_in_the_same_bucket_is_accepted():
    p = parse_payload({"bucket": "cosmic-bucket", "result_prefix": "s3://cosmic-bucket/runs/a/"})
    assert p.results_prefix("r1") == "runs/a"


def test_bad_data_prefix():
    assert "data_prefix" in _reject({"bucket": "cosmic-bucket", "DATA_PREFIX": "data/../secret"})


def test_resume_without_run_id():
    message = _reject({"bucket": "cosmic-bucket", "resume": True})
    assert "resume" in message
    assert "run_id" in message


def test_resume_with_run_id_is_accepted():
    p = parse_payload({"bucket": "cosmic-bucket", "resume": True, "run_id": "run-7"})
    assert p.resume and p.run_id == "run-7"


def test_payload_error_is_one_line():
    message = _reject({"bucket": "cosmic-bucket", "batch_size": 0})
    assert "\n" not in message
    assert message.startswith("payload:")


# --------------------------------------------------------------------------- derived keys


@pytest.mark.parametrize(
    ("model_key", "expected"),
    [
        ("full", "scripts/full"),
        ("tiny", "scripts/tiny"),
        ("scripts/x/model.pt", "scripts/x"),
        ("scripts/x/model.py", "scripts/x"),
        ("Anomaly Detection", "scripts/Anomaly Detection"),
        ("scripts/Anomaly Detection", "scripts/Anomaly Detection"),
    ],
)
def test_model_object_key(model_key, expected):
    assert parse_payload({"bucket": "cosmic-bucket", "model_key": model_key}).model_object_key() == expected


def test_model_object_key_from_alias():
    p = parse_payload({"S3_BUCKET": "cosmic-bucket", "S3_object_name": "full"})
    assert p.model_object_key() == "scripts/full"


def test_results_prefix_default():
    p = parse_payload({"bucket": "cosmic-bucket"})
    assert p.results_prefix("run-42") == "results/run-42"
    assert p.results_prefix("other") == "results/other"
