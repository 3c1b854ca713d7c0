"""The whole pipeline on the embedded target: Step Functions -> Lambda workers -> S3."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch

from cosmicai.deploy import upload_files, upload_model_folder
from cosmicai.execute import read_log_events
from cosmicai.runs import Progress, RunRequest, execute_run, model_folder
from inference.data import generate, list_partitions, split
from inference.measure import REFERENCE_KEYS


def run_tiny(target, stack, deployment, out: Path, **kw):
    request = RunRequest(model="tiny", batch_size=kw.pop("batch_size", 16), **kw)
    return execute_run(target, stack, request, out, deployment=deployment)


def predictions_count(s3, bucket: str, result_prefix: str, world_size: int) -> int:
    total = 0
    for rank in range(1, world_size + 1):
        body = s3.get_object(Bucket=bucket, Key=f"{result_prefix}/predictions/{rank}.pt")["Body"].read()
        total += len(torch.load(io.BytesIO(body), weights_only=True)["predictions"])
    return total


def test_all_ranks_succeed_and_every_sample_is_predicted(target, tiny_stack, deployment, tiny_partitions, tmp_path):
    outcome = run_tiny(target, tiny_stack, deployment, tmp_path / "out", data=tiny_partitions)
    summary = outcome.summary
    assert outcome.exit_code == 0, summary
    assert summary["status"] == "SUCCEEDED"
    assert summary["ranks_succeeded"] == 4 and summary["ranks_failed"] == []
    assert summary["samples_total"] == 96
    assert summary["bytes_total"] == 96 * 20_520
    assert set(summary["cost_usd"]) == {"lambda", "stepfunctions", "s3", "total"}
    s3 = target.client("s3")
    assert predictions_count(s3, tiny_stack.bucket, summary["result_prefix"], 4) == 96
    combined = json.loads((outcome.out_dir / "combined_data.json").read_text())
    assert [r["rank"] for r in combined] == [1, 2, 3, 4]
    assert all(set(REFERENCE_KEYS) <= set(r) for r in combined)
    assert [json.loads((outcome.out_dir / "ranks" / f"{i}.json").read_text())["num_samples"] for i in range(1, 5)] == [24] * 4
    assert (outcome.out_dir / "logs" / f"{tiny_stack.function_name('summarize')}.log").stat().st_size > 0


def test_progress_counts_ranks_out_of_the_whole_world_size(target, tiny_stack, deployment, tiny_partitions, tmp_path):
    """The bar's total is the ranks given, from the first report on (a Map Run's own total grows as items start)."""
    reported: list[tuple[int, int]] = []
    request = RunRequest(model="tiny", batch_size=16, data=tiny_partitions)
    outcome = execute_run(target, tiny_stack, request, tmp_path / "out", Progress(ranks=lambda done, total: reported.append((done, total))),
                          deployment=deployment)
    assert outcome.exit_code == 0, outcome.summary
    assert reported and {total for _, total in reported} == {4}, reported
    assert reported[-1] == (4, 4)
    assert [done for done, _ in reported] == sorted(done for done, _ in reported)


def test_reference_payload_keys_start_an_execution(target, tiny_stack, deployment, tiny_partitions, tmp_path):
    s3 = target.client("s3")
    upload_files(s3, tiny_stack.bucket, "data/reference", list_partitions(tiny_partitions))
    upload_model_folder(s3, tiny_stack.bucket, "tiny", model_folder("tiny", None, tmp_path)[1])
    payload = {
        "S3_BUCKET": tiny_stack.bucket,
        "DATA_PREFIX": "data/reference",
        "file_limit": "2",
        "batch_size": 16,
        "result_path": "results/reference-style",
        "S3_object_name": "tiny",
        "script": "/tmp/Anomaly Detection/Inference/inference.py",
    }
    outcome = execute_run(target, tiny_stack, RunRequest(payload=payload, run_id="reference-style"), tmp_path / "out", deployment=deployment)
    assert outcome.exit_code == 0, outcome.summary
    assert outcome.summary["world_size"] == 2
    records = json.loads((outcome.out_dir / "combined_data.json").read_text())
    assert [r["partitions"] for r in records] == [["data/reference/1.pt", "data/reference/2.pt"], ["data/reference/3.pt", "data/reference/4.pt"]]
    assert records[0]["result_path"] == "results/reference-style/predictions/1.pt"


def test_corrupt_partition_fails_only_its_rank(target, tiny_stack, deployment, tiny_partitions, tmp_path):
    (tiny_partitions / "3.pt").write_bytes(b"this is not a torch file")
    outcome = run_tiny(target, tiny_stack, deployment, tmp_path / "out", data=tiny_partitions)
    summary = outcome.summary
    assert outcome.exit_code == 1
    assert summary["status"] == "FAILED"
    assert [f["rank"] for f in summary["ranks_failed"]] == [3]
    error = summary["ranks_failed"][0]["error"]
    assert error["type"] == "PartitionError" and "3.pt" in error["message"]
    assert summary["ranks_succeeded"] == 3 and summary["samples_total"] == 72
    for rank in (1, 2, 4):
        record = json.loads((outcome.out_dir / "ranks" / f"{rank}.json").read_text())
        assert record["status"] == "succeeded" and record["num_samples"] == 24


@pytest.mark.embedded_only("counts the embedded pool's worker processes")
def test_a_warm_worker_serves_the_next_invoke_without_reloading_the_model(target, emulator, tiny_stack, deployment, tiny_partitions, tmp_path):
    run_tiny(target, tiny_stack, deployment, tmp_path / "first", data=tiny_partitions, world_size=2)
    pids_before = set(emulator.worker_pids())
    outcome = run_tiny(target, tiny_stack, deployment, tmp_path / "second", data=tiny_partitions, world_size=2)
    records = json.loads((outcome.out_dir / "combined_data.json").read_text())
    assert [r["cold_start"] for r in records] == [False, False]
    assert set(emulator.worker_pids()) == pids_before


def test_summarize_log_line_is_readable_through_cloudwatch_logs(target, tiny_stack, deployment, tiny_partitions, tmp_path):
    outcome = run_tiny(target, tiny_stack, deployment, tmp_path / "out", data=tiny_partitions, world_size=2)
    logs = target.client("logs")
    group = f"/aws/lambda/{tiny_stack.function_name('summarize')}"
    lines = [e["message"] for e in read_log_events(logs, group)]
    assert any("SUMMARY" in line and f"run={outcome.run_id}" in line and "status=SUCCEEDED" in line for line in lines)
    assert any(line.startswith("REPORT RequestId:") for line in lines)


@pytest.mark.embedded_only("runs `cosmicai run` on an in-process emulator and kills it")
def test_no_worker_process_outlives_the_emulator(tmp_path):
    marker = f"cosmicai-orphan-check-{os.getpid()}-{time.time_ns()}"
    env = dict(os.environ, COSMICAI_ORPHAN_MARK=marker, COSMICAI_HOME=str(tmp_path / "home"))
    env.pop("COSMICAI_ENDPOINT", None)
    split(generate(32, seed=1), tmp_path / "parts", partitions=2)
    done = subprocess.run(
        [sys.executable, "-m", "cosmicai.cli", "run", "--model", "tiny", "--data", str(tmp_path / "parts"), "--batch-size", "8", "--json", "--out", str(tmp_path / "out")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["ranks_succeeded"] == 2
    cpu = json.loads((tmp_path / "out" / "run.json").read_text())["cpu_s"]  # the workers were ended and reaped: their CPU is counted
    assert cpu["this_process"] > 0 and cpu["subprocesses"] > 0.5, cpu  # Infer's workers each imported torch
    time.sleep(0.5)
    survivors = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if "emulator.worker" in " ".join(proc.info["cmdline"] or []) and proc.environ().get("COSMICAI_ORPHAN_MARK") == marker:
                survivors.append(proc.pid)
        except psutil.Error:
            continue
    assert survivors == []
