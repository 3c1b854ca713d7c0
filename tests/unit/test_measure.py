"""Unit tests of inference.measure (batched predict, batch-size checks, the record) and inference.records."""

from __future__ import annotations

import math
from datetime import datetime

import pytest
import torch

from inference.data import generate
from inference.measure import (
    EXTRA_KEYS, MIB, REFERENCE_KEYS, LoopTiming, build_record, check_batch_size, model_memory_bytes, predict,
)
from inference.checkpoint import load_model
from inference.records import failed_record

SAMPLE_BYTES = 20_520
N = 50


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny")


@pytest.fixture(scope="module")
def sample():
    return generate(N, seed=3)


@pytest.fixture(scope="module")
def whole(tiny, sample):
    with torch.inference_mode():
        return tiny(sample["images"], sample["magnitudes"]).float()


# --------------------------------------------------------------------------- predict


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_predict_keeps_order(tiny, sample, whole, batch_size):
    predictions, timing = predict(tiny, sample["images"], sample["magnitudes"], batch_size)
    assert predictions.shape == (N,)
    assert predictions.dtype == torch.float32
    assert predictions.device.type == "cpu"
    torch.testing.assert_close(predictions, whole, atol=1e-5, rtol=0)
    assert timing.wall_s >= 0 and timing.cpu_s >= 0
    assert datetime.fromisoformat(timing.started_at) <= datetime.fromisoformat(timing.finished_at)


def test_predict_order_is_not_trivially_constant(tiny, sample, whole):
    # the order check above means something only if the predictions differ between samples
    assert whole.std() > 0
    shuffled = torch.randperm(N, generator=torch.Generator().manual_seed(0))
    predictions, _ = predict(tiny, sample["images"][shuffled], sample["magnitudes"][shuffled], 7)
    torch.testing.assert_close(predictions, whole[shuffled], atol=1e-5, rtol=0)


def test_predict_leaves_the_model_in_eval_mode(sample):
    model = load_model("tiny").train()
    predict(model, sample["images"][:4], sample["magnitudes"][:4], 2)
    assert not model.training


def test_predict_rejects_bad_batch_size(tiny, sample):
    with pytest.raises(ValueError, match="batch_size"):
        predict(tiny, sample["images"], sample["magnitudes"], 0)


# --------------------------------------------------------------------------- check_batch_size


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, False, "8", None])
def test_check_batch_size_rejects(bad):
    with pytest.raises(ValueError) as info:
        check_batch_size(bad)
    assert "batch_size" in str(info.value)
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("good", [1, 7, 512])
def test_check_batch_size_accepts(good):
    assert check_batch_size(good) == good


# --------------------------------------------------------------------------- build_record


TIMING = LoopTiming(wall_s=2.0, cpu_s=3.0, started_at="2025-03-01T12:00:00.000+00:00", finished_at="2025-03-01T12:00:02.000+00:00")


@pytest.fixture(scope="module")
def record(tiny):
    return build_record(
        model=tiny,
        num_samples=1000,
        batch_size=256,
        device="cpu",
        timing=TIMING,
        rank=2,
        world_size=4,
        data_path="s3://b/data/2.pt",
        result_path="s3://b/results/r/predictions/2.npy",
        load_time_s=0.25,
    )


def test_record_has_every_key(record):
    assert set(REFERENCE_KEYS) <= set(record)
    assert set(EXTRA_KEYS) <= set(record)


def test_record_known_figures(record):
    assert record["num_batches"] == 4
    assert record["batch_size"] == 256
    assert record["device"] == "cpu"
    assert record["sample_persec"] == pytest.approx(500.0)
    assert record["throughput_bps"] == pytest.approx(500 * SAMPLE_BYTES * 8)
    assert record["execution_time (seconds/batch)"] == pytest.approx(0.5)
    assert record["total_cpu_time (seconds)"] == pytest.approx(3.0)
    assert record["wall_time_s"] == pytest.approx(2.0)
    assert record["load_time_s"] == pytest.approx(0.25)
    assert record["num_samples"] == 1000
    assert (record["rank"], record["world_size"]) == (2, 4)
    assert record["data_path"] == "s3://b/data/2.pt"
    assert record["result_path"] == "s3://b/results/r/predictions/2.npy"
    assert (record["started_at"], record["finished_at"]) == (TIMING.started_at, TIMING.finished_at)
    assert record["status"] == "succeeded"
    assert record["error"] is None


def test_record_memory_figures(record, tiny):
    assert record["total_image_memory (MB)"] == pytest.approx(256 * SAMPLE_BYTES / 2**20)
    assert record["total_model_memory (MB)"] == pytest.approx(model_memory_bytes(tiny) / MIB)
    assert record["total_model_memory (MB)"] > 0
    assert record["library_overhead_memory (MB)"] == pytest.approx(
        record["total_process_memory (MB)"] - record["total_model_memory (MB)"] - record["total_image_memory (MB)"]
    )
    assert record["peak_rss_mb"] == record["total_process_memory (MB)"]
    assert record["total_process_memory (MB)"] >= record["total_cpu_memory (MB)"] > 0


def test_record_image_memory_is_capped_by_the_samples(tiny):
    small = build_record(
        model=tiny, num_samples=100, batch_size=256, device="cpu", timing=TIMING, rank=1, world_size=1,
        data_path="d", result_path="r", load_time_s=0.0,
    )
    assert small["num_batches"] == 1
    assert small["total_image_memory (MB)"] == pytest.approx(100 * SAMPLE_BYTES / 2**20)
    assert small["execution_time (seconds/batch)"] == pytest.approx(2.0)


def test_reference_image_memory_figure():
    # the reference reports 10.0195 MB for batch 512: MB is MiB
    assert math.isclose(512 * SAMPLE_BYTES / MIB, 10.0195, abs_tol=1e-4)


# --------------------------------------------------------------------------- failed_record


def test_failed_record():
    record = failed_record(3, 5, "PartitionError", "partition data/3.pt: truncated", data_path="data/3.pt")
    assert set(record) >= set(REFERENCE_KEYS) | set(EXTRA_KEYS)
    assert record["status"] == "failed"
    assert record["error"] == {"type": "PartitionError", "message": "partition data/3.pt: truncated"}
    assert (record["rank"], record["world_size"]) == (3, 5)
    assert record["data_path"] == "data/3.pt"
    assert record["finished_at"] and datetime.fromisoformat(record["finished_at"]).tzinfo is not None
    figures = [k for k in REFERENCE_KEYS if k not in ("data_path",)]
    assert all(record[k] is None for k in figures)


def test_failed_record_cannot_be_overridden_to_succeeded():
    record = failed_record(1, 1, "Boom", "bad", status="succeeded", error=None)
    assert record["status"] == "failed"
    assert record["error"] == {"type": "Boom", "message": "bad"}
