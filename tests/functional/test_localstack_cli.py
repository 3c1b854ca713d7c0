"""`cosmicai localstack up|down|status`: real LocalStack 4.14.0 in host mode, driven as a user drives it.

Skipped, with the reason, only where no Python >= 3.13 exists. The venv is the cached one
(``$COSMICAI_CACHE``); the state folder is the test's own (``$COSMICAI_HOME``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import boto3
import psutil
import pytest

from emulator import localstack_host as host
from emulator.embedded import free_port

try:
    host.find_python()
except host.LocalStackUnavailable as exc:
    pytest.skip(f"host-mode LocalStack: {exc}", allow_module_level=True)


def _cli(*args: str, env: dict[str, str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cosmicai.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _workers(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def test_up_run_plain_boto3_and_down_leave_nothing_running(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "COSMICAI_HOME", "LOCALSTACK"))}
    env["COSMICAI_HOME"] = str(tmp_path / "home")
    port = free_port()
    up = _cli("localstack", "up", "--detach", "--port", str(port), env=env, cwd=tmp_path)
    assert up.returncode == 0, up.stderr[-3000:]
    state = json.loads((tmp_path / "home" / f"localstack-{port}.json").read_text())
    endpoint = f"http://127.0.0.1:{port}"
    assert state["endpoint"] == endpoint and host.health(endpoint)["version"] == "4.14.0"
    assert host.listening_addresses(state["pid"]) <= {"127.0.0.1", "::1"}
    try:
        status = _cli("localstack", "status", env=env, cwd=tmp_path)
        assert f"at {endpoint}" in status.stdout and "healthy" in status.stdout
        # the localstack target finds it from its state file: no --endpoint
        run = _cli("run", "--target", "localstack", "--model", "tiny", "--samples", "64", "--world-size", "2", "--batch-size", "16", "--json", "--out", "out", env=env, cwd=tmp_path)
        assert run.returncode == 0, run.stderr[-3000:]
        summary = json.loads(run.stdout)
        assert summary["target"] == "localstack" and summary["ranks_succeeded"] == 2 and summary["samples_total"] == 64
        assert _workers(state["pid"]), "the Infer workers run as LocalStack's children"

        # plain boto3, a reference-style payload, against the deployed state machine
        session = boto3.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
        sfn, s3, logs = (session.client(name, endpoint_url=endpoint) for name in ("stepfunctions", "s3", "logs"))
        machine = next(m["stateMachineArn"] for m in sfn.list_state_machines()["stateMachines"] if m["name"] == "cosmicai-pipeline")
        data_prefix = json.loads((tmp_path / "out" / "run.json").read_text())["payload"]["data_prefix"]
        payload = {"S3_BUCKET": "cosmicai-data", "DATA_PREFIX": data_prefix, "file_limit": "2", "batch_size": 16,
                   "result_path": "results/by-hand", "S3_object_name": "tiny"}
        arn = sfn.start_execution(stateMachineArn=machine, input=json.dumps(payload))["executionArn"]
        deadline = time.time() + 300
        while (described := sfn.describe_execution(executionArn=arn))["status"] == "RUNNING" and time.time() < deadline:
            time.sleep(0.5)
        assert described["status"] == "SUCCEEDED", described
        by_hand = json.loads(s3.get_object(Bucket="cosmicai-data", Key="results/by-hand/summary.json")["Body"].read())
        assert by_hand["ranks_succeeded"] == 2 and by_hand["samples_total"] == 64
        messages = [e["message"] for e in logs.filter_log_events(logGroupName="/aws/lambda/cosmicai-summarize")["events"]]
        assert any("SUMMARY run=" in m for m in messages) and any(m.startswith("REPORT RequestId:") for m in messages)
    finally:
        children = _workers(state["pid"])
        down = _cli("localstack", "down", "--port", str(port), env=env, cwd=tmp_path)
    assert down.returncode == 0 and "stopped" in down.stdout, down.stderr
    assert not psutil.pid_exists(state["pid"]) or psutil.Process(state["pid"]).status() == psutil.STATUS_ZOMBIE
    time.sleep(1.0)  # workers notice their parent is gone within 0.5 s, if the group kill missed any
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not (tmp_path / "home" / f"localstack-{port}.json").exists()
    assert not Path(state["run_dir"]).exists()
    assert host.port_free(port)
    again = _cli("localstack", "down", "--port", str(port), env=env, cwd=tmp_path)
    assert again.returncode == 0 and "no LocalStack was running" in again.stdout


def test_up_on_a_busy_port_is_one_line_and_exit_2(tmp_path):
    import socket

    env = {**os.environ, "COSMICAI_HOME": str(tmp_path / "home")}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = _cli("localstack", "up", "--detach", "--port", str(port), env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and f"port {port}" in done.stderr and "in use" in done.stderr


CONTRACT = """
import dataclasses, json
from localstack.services.lambda_.invocation.runtime_executor import RuntimeExecutor
from localstack.services.lambda_.invocation.lambda_models import InvocationResult
from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin
from localstack.services.lambda_.invocation.runtime_executor import EXECUTOR_PLUGIN_MANAGER
from emulator.localstack_executor import ProcessRuntimeExecutor
print(json.dumps({
    "abstract": sorted(RuntimeExecutor.__abstractmethods__),
    "ours_abstract": sorted(ProcessRuntimeExecutor.__abstractmethods__),
    "result_fields": [f.name for f in dataclasses.fields(InvocationResult)],
    "namespace": RuntimeExecutorPlugin.namespace,
    "plugins": sorted(EXECUTOR_PLUGIN_MANAGER.list_names()),
}))
"""


def test_localstacks_executor_seam_is_the_one_our_executor_implements():
    """Contract: a LocalStack upgrade that moves the runtime-executor seam fails here, not in a run."""
    venv = host.ensure_venv()
    done = subprocess.run([str(venv / "bin" / "python"), "-c", CONTRACT], capture_output=True, text=True, timeout=120, cwd=host.project_root())
    assert done.returncode == 0, done.stderr[-3000:]
    seam = json.loads(done.stdout.strip().splitlines()[-1])
    assert seam["abstract"] == ["cleanup_version", "get_address", "get_endpoint_from_executor", "get_logs", "get_runtime_endpoint",
                                "invoke", "prepare_version", "start", "stop"]
    assert seam["ours_abstract"] == []
    assert seam["result_fields"][:4] == ["request_id", "payload", "is_error", "logs"]
    assert seam["namespace"] == "localstack.lambda.runtime_executor"
    assert host.EXECUTOR in seam["plugins"]
