"""Unit tests of the fast inference paths (inference.precision, predict's precision modes). No timing.

Every optimisation of the fp32 path must give the plain forward's predictions
within TOLERANCE["fp32"]; int8 and bf16 must stay within their documented
tolerance of fp32 and differ from it by a bounded, non-zero amount; what cannot
run here is refused with one clear error before any work.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
from pathlib import Path

import pytest
import torch

from inference import precision as P
from inference.data import generate, save_partition
from inference.local import run_local
from inference.measure import predict
from inference.checkpoint import load_model
from inference.fastpath import InferenceModel, fold_batchnorm
from inference.precision import TOLERANCE, UnsupportedPrecision, prepare

N = 40
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny")


@pytest.fixture(scope="module")
def sample():
    return generate(N, seed=5)


@pytest.fixture(scope="module")
def plain(tiny, sample):
    with torch.inference_mode():
        return tiny(sample["images"], sample["magnitudes"]).float()


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


# --------------------------------------------------------------------------- fp32 paths


ONEDNN = [False, True] if P.onednn_available() else [False]


@pytest.mark.parametrize(
    "fuse_cnn, channels_last, micro_batch, onednn",
    list(itertools.product([False, True], [False, True], [None, 7, 64], ONEDNN)),
)
def test_every_fp32_switch_matches_the_plain_forward(tiny, sample, plain, fuse_cnn, channels_last, micro_batch, onednn):
    net = InferenceModel(tiny, fuse_cnn=fuse_cnn, channels_last=channels_last, micro_batch=micro_batch, onednn=onednn)
    with torch.inference_mode():
        out = net(sample["images"], sample["magnitudes"])
    assert out.shape == (N,) and out.dtype == torch.float32
    assert _max_diff(out, plain) <= TOLERANCE["fp32"]


def test_the_astromae_inference_forward_matches_within_1e5(sample):
    model = load_model("astromae")
    with torch.inference_mode():
        want = model(sample["images"], sample["magnitudes"])
        got = InferenceModel(model)(sample["images"], sample["magnitudes"])
    assert _max_diff(got, want) <= 1e-5


@pytest.mark.parametrize("batch_size", [1, 9, 64])
def test_predict_fp32_default_matches_the_plain_forward(tiny, sample, plain, batch_size):
    predictions, timing = predict(tiny, sample["images"], sample["magnitudes"], batch_size)
    assert _max_diff(predictions, plain) <= TOLERANCE["fp32"]
    assert timing.prepare_s >= 0 and timing.wall_s >= 0 and timing.reference is None


def test_batchnorm_folding_is_exact_for_eval_statistics():
    conv, bn = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4).eval()
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2)
        bn.weight.normal_()
    weight, bias = fold_batchnorm(conv, bn)
    x = torch.randn(2, 3, 8, 8)
    with torch.inference_mode():
        torch.testing.assert_close(torch.nn.functional.conv2d(x, weight, bias, padding=1), bn(conv(x)), rtol=0, atol=1e-5)


def test_prepare_leaves_the_model_as_it_is(tiny, sample, plain):
    state = {k: v.clone() for k, v in tiny.state_dict().items()}
    prepare(tiny, "fp32")
    assert all(torch.equal(state[k], v) for k, v in tiny.state_dict().items())
    with torch.inference_mode():
        assert torch.equal(tiny(sample["images"], sample["magnitudes"]), plain)


def test_inference_model_checks_input_shapes(tiny, sample):
    with pytest.raises(ValueError, match="images"):
        InferenceModel(tiny)(sample["images"][:, :3], sample["magnitudes"])
    with pytest.raises(ValueError, match="magnitudes"):
        InferenceModel(tiny)(sample["images"], sample["magnitudes"][:5])


def test_prepare_runs_other_modules_as_they_are(sample):
    class Mean(torch.nn.Module):
        def forward(self, images, magnitudes):
            return images.mean(dim=(1, 2, 3)) + magnitudes.mean(dim=1)

    module = Mean()
    assert prepare(module, "fp32") is module


# --------------------------------------------------------------------------- reduced precision


@pytest.mark.parametrize("mode", ["int8", "bf16"])
def test_reduced_precision_within_documented_tolerance(tiny, sample, plain, mode):
    if mode == "bf16" and P.cpu_bf16_feature() is None:
        pytest.skip("this CPU has no native bf16 (the refusal is tested below)")
    state = {k: v.clone() for k, v in tiny.state_dict().items()}
    predictions, _ = predict(tiny, sample["images"], sample["magnitudes"], 16, precision=mode)
    diff = _max_diff(predictions, plain)
    assert predictions.dtype == torch.float32 and predictions.shape == (N,)
    assert 0 < diff <= TOLERANCE[mode], f"{mode}: max |diff| {diff:.2e} vs fp32"
    # the caller's model is untouched: same weights, no quantized modules swapped in
    assert all(torch.equal(state[k], v) for k, v in tiny.state_dict().items())
    assert not any("quantized" in type(m).__module__ for m in tiny.modules())


def test_bf16_refused_cleanly_without_native_support(tiny, sample, monkeypatch):
    monkeypatch.setattr(P, "cpu_bf16_feature", lambda: None)
    with pytest.raises(UnsupportedPrecision) as info:
        predict(tiny, sample["images"], sample["magnitudes"], 8, precision="bf16")
    message = str(info.value)
    assert "bf16" in message and "native" in message and "fp32" in message
    assert isinstance(info.value, ValueError)  # the CLI turns it into exit code 2


def test_bf16_refused_before_loading_in_run_local(tmp_path, monkeypatch):
    monkeypatch.setattr(P, "cpu_bf16_feature", lambda: None)
    with pytest.raises(UnsupportedPrecision, match="bf16"):
        run_local(tmp_path / "missing.pt", model="tiny", precision="bf16")


def test_int8_refused_off_the_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(UnsupportedPrecision, match="CPU only"):
        P.check_supported("int8", "cuda")


@pytest.mark.parametrize("bad", ["fp16", "FP32", "", None, 8, "int4"])
def test_invalid_precision_rejected(tiny, sample, bad):
    with pytest.raises(ValueError) as info:
        predict(tiny, sample["images"], sample["magnitudes"], 8, precision=bad)
    assert "precision" in str(info.value) and "fp32, int8, bf16" in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present: the cuda path runs instead")
def test_cuda_without_cuda_is_one_clear_error(tiny, sample, tmp_path):
    with pytest.raises(ValueError, match="no CUDA device"):
        predict(tiny, sample["images"], sample["magnitudes"], 8, device="cuda")
    with pytest.raises(ValueError, match="no CUDA device"):  # before the (missing) file is read
        run_local(tmp_path / "missing.pt", model="tiny", device="cuda")


@pytest.mark.parametrize("bad", ["mps", "tpu", "gpu"])
def test_unknown_device_rejected(bad):
    with pytest.raises(ValueError, match="device must be one of cpu, cuda"):
        P.check_device(bad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_paths_match_the_cpu(sample, plain):  # pragma: no cover - runs only where CUDA exists
    model = load_model("tiny", device="cuda")
    predictions, _ = predict(model, sample["images"], sample["magnitudes"], 16, device="cuda")
    assert predictions.device.type == "cpu"
    assert _max_diff(predictions, plain) <= 1e-3  # TF32 may be on for the GPU's matmuls


def test_run_local_records_the_precision(tmp_path):
    path = tmp_path / "p.pt"
    save_partition(path, generate(24, seed=1))
    record = run_local(path, model="tiny", batch_size=8, precision="int8")
    assert record["precision"] == "int8"
    assert record["prepare_time_s"] >= 0
    assert record["num_samples"] == 24 and record["status"] == "succeeded"


# --------------------------------------------------------------------------- the benchmark's reference loop


def _benchmark_module():
    spec = importlib.util.spec_from_file_location("inference_speed", ROOT / "benchmarks" / "inference_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_reference_loop_matches_predict(tiny, sample):
    bench = _benchmark_module()
    ref, seconds = bench.run_reference(tiny, sample, 16, torch.device("cpu"))  # float64 magnitudes, as the reference's files
    ours, _ = predict(tiny, sample["images"], sample["magnitudes"].float(), 16)
    assert seconds > 0 and ref.shape == (N,)
    assert _max_diff(ref, ours) <= TOLERANCE["fp32"]


def test_predict_with_reference_metrics_runs_the_references_loop(tiny, sample):
    predictions, timing = predict(tiny, sample["images"], sample["magnitudes"], 16, metrics="reference")
    figures = timing.reference
    assert figures is not None and figures.profiler_cpu_s > 0 and figures.profiler_cpu_memory_bytes > 0
    assert figures.bits_fed == N * (5 * 32 * 32 * 4 + 5 * 8) * 8  # float64 magnitudes as given: 20,520 B per sample
    keys = figures.record_keys(N, 16)
    assert keys["sample_persec"] == pytest.approx(N / figures.profiler_cpu_s)
    assert keys["execution_time (seconds/batch)"] == pytest.approx(figures.profiler_cpu_s / (N / 16))
    assert _max_diff(predictions, predict(tiny, sample["images"], sample["magnitudes"], 16)[0]) <= TOLERANCE["fp32"]


# --------------------------------------------------------------------------- thread policy


@pytest.mark.parametrize("capacity", [1, 2, 3, 4, 8, 64])
def test_worker_threads_never_exceed_the_cores(capacity):
    from emulator.environment import FunctionSpec
    from emulator.pool import WorkerPool

    spec = FunctionSpec(name="f", handler="h.h", code_sha="0", timeout_s=3.0, memory_mb=128, environment=(), region="us-east-1")
    pool = WorkerPool("http://127.0.0.1:1", capacity=capacity)
    try:
        env = pool._environment(spec, capacity)
    finally:
        pool.shutdown()
    cores = os.cpu_count() or 1
    assert 1 <= int(env["COSMICAI_TORCH_THREADS"]) <= cores
    assert int(env["COSMICAI_TORCH_THREADS"]) * min(capacity, cores) <= cores
    assert env["OMP_NUM_THREADS"] == env["COSMICAI_TORCH_THREADS"]
