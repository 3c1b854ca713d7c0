"""`cosmicai emulator up --detach`: other tools drive it with plain boto3, as they would LocalStack."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import psutil

from inference.data import generate, split


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cosmicai.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_plain_boto3_runs_the_deployed_pipeline_with_a_reference_payload(tmp_path):
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_", "COSMICAI_"))}
    env["COSMICAI_HOME"] = str(tmp_path / "home")
    up = _cli("emulator", "up", "--detach", "--port", str(port), env=env, cwd=tmp_path)
    assert up.returncode == 0, up.stderr
    endpoint = f"http://127.0.0.1:{port}"
    state = json.loads((tmp_path / "home" / "emulator.json").read_text())
    try:
        deployed = _cli("deploy", "--target", "embedded", "--model", "tiny", "--bucket", "my-bucket", env=env, cwd=tmp_path)
        assert deployed.returncode == 0, deployed.stderr

        # From here on: plain boto3, no project imports, as a user's notebook would.
        kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
        s3, sfn, logs = boto3.client("s3", **kw), boto3.client("stepfunctions", **kw), boto3.client("logs", **kw)
        for path in split(generate(40, seed=5), tmp_path / "parts", partitions=2):
            s3.upload_file(str(path), "my-bucket", f"data/mine/{path.name}")
        machine = next(m for m in sfn.list_state_machines()["stateMachines"] if m["name"] == "cosmicai-pipeline")
        payload = {"S3_BUCKET": "my-bucket", "DATA_PREFIX": "data/mine", "file_limit": "2", "batch_size": 8, "result_path": "results/notebook", "S3_object_name": "tiny"}
        arn = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], input=json.dumps(payload))["executionArn"]
        deadline = time.time() + 240
        while sfn.describe_execution(executionArn=arn)["status"] == "RUNNING" and time.time() < deadline:
            time.sleep(0.5)
        assert sfn.describe_execution(executionArn=arn)["status"] == "SUCCEEDED"
        summary = json.loads(s3.get_object(Bucket="my-bucket", Key="results/notebook/summary.json")["Body"].read())
        assert summary["ranks_succeeded"] == 2 and summary["samples_total"] == 40
        events = logs.filter_log_events(logGroupName="/aws/lambda/cosmicai-summarize")["events"]
        assert any("SUMMARY" in e["message"] and "status=SUCCEEDED" in e["message"] for e in events)
    finally:
        down = _cli("emulator", "down", env=env, cwd=tmp_path)
    assert down.returncode == 0 and "stopped" in down.stdout
    assert not psutil.pid_exists(state["pid"]) or psutil.Process(state["pid"]).status() == psutil.STATUS_ZOMBIE
