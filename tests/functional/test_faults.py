"""Failures: every rank ends in exactly one recorded state, nothing else is lost, failures are named."""

from __future__ import annotations

import json
import re
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from cosmicai.deploy import Stack, deploy
from cosmicai.runs import RunRequest, execute_run
from inference.data import generate, split

FAULTS = {"1": "oom", "2": "timeout", "3": "crash", "4": "error", "5": "missing"}


@pytest.fixture(scope="module")
def fault_stack(target):
    """A deployment whose Infer handler injects real faults into ranks 1-5 (6 and 7 run normally)."""
    handler = (Path(__file__).parent / "fault_handler.py").read_bytes()
    stack = Stack(
        name="cosmicai-faults",
        bucket="cosmicai-faults",
        infer_memory_mb=1200,
        infer_timeout_s=6,
        max_concurrency=2,
        extra_files={"fault_handler.py": handler},
        handler_overrides={"infer": "fault_handler.infer"},
        environment={"COSMICAI_TEST_FAULTS": json.dumps(FAULTS)},
    )
    return stack, deploy(target, stack)


@pytest.fixture(scope="module")
def fault_run(target, fault_stack, tmp_path_factory):
    stack, deployment = fault_stack
    folder = tmp_path_factory.mktemp("faults")
    split(generate(7 * 8, seed=11), folder / "parts", partitions=7)
    request = RunRequest(data=folder / "parts", model="tiny", batch_size=8)
    return execute_run(target, stack, request, folder / "out", deployment=deployment)


def _invocations(out_dir: Path, rank: int) -> int:
    log = (out_dir / "logs" / "cosmicai-faults-infer.log").read_text()
    return sum(1 for line in log.splitlines() if line.startswith(f"fault-injection rank={rank} "))


def test_each_fault_is_recorded_on_its_own_rank(fault_run):
    failed = {f["rank"]: f["error"] for f in fault_run.summary["ranks_failed"]}
    assert sorted(failed) == [1, 2, 3, 4, 5]
    request = r"RequestId: [0-9a-f-]{36} Error: "  # Lambda's words for what ended the runtime
    assert failed[1]["type"] == "Runtime.OutOfMemory" and re.fullmatch(request + "Runtime exited with error: signal: killed", failed[1]["message"])
    assert failed[2]["type"] == "Sandbox.Timedout" and re.fullmatch(request + r"Task timed out after 6\.00 seconds", failed[2]["message"])
    assert failed[3]["type"] == "Runtime.ExitError" and re.fullmatch(request + "Runtime exited with error: exit status 139", failed[3]["message"])
    assert failed[4] == {"type": "InjectedError", "message": "injected failure in rank 4"}
    assert failed[5]["type"] == "PartitionError" and "5.pt" in failed[5]["message"] and "missing" in failed[5]["message"]
    for rank in (1, 2, 3, 4, 5):
        record = json.loads((fault_run.out_dir / "ranks" / f"{rank}.json").read_text())
        assert record["status"] == "failed" and record["error"] == failed[rank]


def test_other_ranks_results_are_kept_and_the_run_fails(fault_run):
    assert fault_run.exit_code == 1
    assert fault_run.summary["status"] == "FAILED"
    assert fault_run.execution.status == "FAILED" and fault_run.execution.error == "RanksFailed"
    assert fault_run.summary["ranks_succeeded"] == 2
    for rank in (6, 7):
        record = json.loads((fault_run.out_dir / "ranks" / f"{rank}.json").read_text())
        assert record["status"] == "succeeded" and record["num_samples"] == 8
        assert len(torch.load(fault_run.out_dir / "predictions" / f"{rank}.pt", weights_only=True)["predictions"]) == 8


def test_only_transient_errors_are_retried(fault_run):
    assert _invocations(fault_run.out_dir, 3) == 3  # a crashed worker: retried twice
    for rank in (1, 2, 4, 5):  # out of memory, timeout, handler error, data error: never retried
        assert _invocations(fault_run.out_dir, rank) == 1, rank


def test_tolerated_failures_let_the_execution_succeed_but_are_still_listed(target, tiny_stack, deployment, tiny_partitions, tmp_path):
    (tiny_partitions / "2.pt").write_bytes(b"corrupt")
    request = RunRequest(data=tiny_partitions, model="tiny", batch_size=16, tolerated_failure_percentage=25.0)
    outcome = execute_run(target, tiny_stack, request, tmp_path / "out", deployment=deployment)
    assert outcome.execution.status == "SUCCEEDED"
    assert outcome.summary["status"] == "SUCCEEDED"
    assert [f["rank"] for f in outcome.summary["ranks_failed"]] == [2]
    assert outcome.exit_code == 1


def test_a_malicious_pickle_partition_is_refused_without_running_its_code(target, tiny_stack, deployment, tiny_partitions, tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"images": Exploit()}, tiny_partitions / "4.pt")
    outcome = execute_run(target, tiny_stack, RunRequest(data=tiny_partitions, model="tiny", batch_size=16), tmp_path / "out", deployment=deployment)
    failed = outcome.summary["ranks_failed"]
    assert [f["rank"] for f in failed] == [4]
    assert failed[0]["error"]["type"] == "PartitionError" and "refused" in failed[0]["error"]["message"]
    assert not marker.exists()
    assert outcome.summary["ranks_succeeded"] == 3


def test_two_executions_at_once_on_one_bucket_keep_separate_results(target, tiny_stack, deployment, tmp_path):
    def one(samples: int, name: str):
        split(generate(samples, seed=samples), tmp_path / name, partitions=2)
        return execute_run(target, tiny_stack, RunRequest(data=tmp_path / name, model="tiny", batch_size=16), tmp_path / f"out-{name}", deployment=deployment)

    with ThreadPoolExecutor(max_workers=2) as pool:
        first, second = pool.map(lambda args: one(*args), [(30, "a"), (50, "b")])
    assert first.run_id != second.run_id
    assert (first.summary["samples_total"], second.summary["samples_total"]) == (30, 50)
    assert first.summary["result_prefix"] != second.summary["result_prefix"]
    assert first.exit_code == second.exit_code == 0


def test_resume_reruns_only_the_failed_rank(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COSMICAI_", "MOTO_"))}
    env["COSMICAI_HOME"] = str(tmp_path / "home")
    parts = tmp_path / "parts"
    data = generate(64, seed=9)
    split(data, parts, partitions=4)
    good_third = (parts / "3.pt").read_bytes()
    (parts / "3.pt").write_bytes(b"\x00" * 100)
    cli = [sys.executable, "-m", "cosmicai.cli", "run"]
    first = subprocess.run([*cli, "--data", str(parts), "--model", "tiny", "--batch-size", "8", "--run-id", "resumable", "--json"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert first.returncode == 1, first.stderr[-2000:]
    assert [f["rank"] for f in json.loads(first.stdout)["ranks_failed"]] == [3]
    out = tmp_path / "cosmicai-out" / "resumable"
    before = {r: json.loads((out / "ranks" / f"{r}.json").read_text()) for r in (1, 2, 4)}

    (parts / "3.pt").write_bytes(good_third)
    second = subprocess.run([*cli, "--resume", "resumable", "--json"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    summary = json.loads(second.stdout)
    assert summary["status"] == "SUCCEEDED" and summary["ranks_succeeded"] == 4 and summary["samples_total"] == 64
    for rank, record in before.items():
        assert json.loads((out / "ranks" / f"{rank}.json").read_text()) == record  # kept, not re-run
    assert json.loads((out / "ranks" / "3.json").read_text())["status"] == "succeeded"
    assert json.loads((out / "summary.json").read_text())["ranks_failed"] == []


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"data_prefix": "data/nothing-here"}, "no partitions"),
        ({"data_prefix": "data/reference", "world_size": 99}, re.escape("world_size: 99 is larger than the number of partitions (4)")),
    ],
)
def test_bad_payloads_fail_at_initialize_before_any_rank_runs(target, tiny_stack, deployment, tiny_partitions, tmp_path, payload, message):
    from cosmicai.deploy import upload_files
    from inference.data import list_partitions
    from inference.errors import PayloadError

    upload_files(target.client("s3"), tiny_stack.bucket, "data/reference", list_partitions(tiny_partitions))
    full = {"bucket": tiny_stack.bucket, "model_key": "tiny", **payload}
    with pytest.raises(PayloadError, match=message):
        execute_run(target, tiny_stack, RunRequest(payload=full), tmp_path / "out", deployment=deployment)
    assert not list((tmp_path / "out").glob("ranks/*.json"))


def test_two_executions_on_one_result_prefix_cannot_both_have_it(target, tiny_stack, deployment, tiny_partitions, tmp_path):
    from cosmicai.deploy import upload_files, upload_model_folder
    from cosmicai.runs import RunRequest, execute_run, model_folder
    from inference.data import list_partitions
    from inference.errors import PayloadError

    s3 = target.client("s3")
    upload_files(s3, tiny_stack.bucket, "data/race", list_partitions(tiny_partitions))
    upload_model_folder(s3, tiny_stack.bucket, "tiny", model_folder("tiny", None, tmp_path)[1])
    outcomes: dict[str, object] = {}

    def one(name: str) -> None:
        payload = {"bucket": tiny_stack.bucket, "data_prefix": "data/race", "model_key": "tiny", "batch_size": 8, "result_prefix": "results/shared-prefix"}
        try:
            outcomes[name] = execute_run(target, tiny_stack, RunRequest(payload=payload, run_id=name), tmp_path / name, deployment=deployment)
        except PayloadError as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=one, args=(name,)) for name in ("first", "second")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    refused = [o for o in outcomes.values() if isinstance(o, PayloadError)]
    finished = [o for o in outcomes.values() if not isinstance(o, PayloadError)]
    assert len(refused) == 1 and len(finished) == 1, outcomes
    assert "claimed by run" in str(refused[0]) or "already holds results" in str(refused[0])
    assert finished[0].summary["run_id"] == finished[0].run_id and finished[0].exit_code == 0
