"""Deploy the pipeline: bucket, model, data, role, the four functions, the state machine.

Idempotent: a second deploy updates functions and the state machine in place.
Objects written: ``scripts/<model>/model.pt`` (checkpoint with its config) and
``data/<name>/<n>.pt`` (partitions); ``results/`` and ``scripts/`` folder markers.
"""

from __future__ import annotations

import io
import json
import logging
import time
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable

from botocore.exceptions import ClientError

from emulator.targets import TargetSettings
from stepfn.definition import render

logger = logging.getLogger(__name__)

HANDLERS = {
    "initialize": "inference.handlers.initialize",
    "infer": "inference.handlers.infer",
    "record-failure": "inference.handlers.record_failure",
    "summarize": "inference.handlers.summarize",
}
PLACEHOLDER_OF = {
    "initialize": "InitializeFunctionArn",
    "infer": "InferFunctionArn",
    "record-failure": "RecordFailureFunctionArn",
    "summarize": "SummarizeFunctionArn",
}
LAMBDA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
STATES_TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


@dataclass(frozen=True)
class Stack:
    """Names of one deployment; every resource is named from ``name``."""

    name: str = "cosmicai"
    bucket: str = "cosmicai-data"
    infer_memory_mb: int = 3008
    infer_timeout_s: int = 900
    aux_memory_mb: int = 256
    aux_timeout_s: int = 300
    max_concurrency: int = 2
    runtime: str = "python3.11"
    extra_files: dict[str, bytes] = field(default_factory=dict)  # added to the code zip (tests, user hooks)
    handler_overrides: dict[str, str] = field(default_factory=dict)  # function key -> handler
    environment: dict[str, str] = field(default_factory=dict)  # extra variables for every function

    def function_name(self, key: str) -> str:
        return f"{self.name}-{key}"

    @property
    def state_machine_name(self) -> str:
        return f"{self.name}-pipeline"


@dataclass(frozen=True)
class Deployment:
    state_machine_arn: str
    function_arns: dict[str, str]
    bucket: str


def package_handlers(extra_files: dict[str, bytes] | None = None) -> bytes:
    """A zip of the ``inference`` package (Python sources only), as Lambda's zip packaging wants."""
    buffer = io.BytesIO()
    root = resources.files("inference")
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for entry in sorted(root.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".py"):
                info = zipfile.ZipInfo(f"inference/{entry.name}", date_time=(2024, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                archive.writestr(info, entry.read_bytes())
        for name, body in sorted((extra_files or {}).items()):
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, body)
    return buffer.getvalue()


def ensure_bucket(s3: Any, bucket: str, region: str) -> None:
    try:
        if region == "us-east-1":
            s3.create_bucket(Bucket=bucket)
        else:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    for folder in ("results/", "scripts/"):
        s3.put_object(Bucket=bucket, Key=folder, Body=b"")


def ensure_role(iam: Any, name: str, trust: dict[str, Any], policy: dict[str, Any]) -> str:
    try:
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NoSuchEntity":
            raise
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName=f"{name}-policy", PolicyDocument=json.dumps(policy))
    return arn


def lambda_policy(bucket: str, stack: Stack) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": f"arn:aws:s3:::{bucket}"},
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": f"arn:aws:s3:::{bucket}/*"},
            {
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": f"arn:aws:logs:*:*:log-group:/aws/lambda/{stack.name}-*",
            },
        ],
    }


def states_policy(bucket: str, function_arns: Iterable[str]) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["lambda:InvokeFunction"], "Resource": sorted(function_arns)},
            {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": f"arn:aws:s3:::{bucket}/results/*"},
            {"Effect": "Allow", "Action": ["states:StartExecution", "states:DescribeExecution", "states:StopExecution"], "Resource": "*"},
        ],
    }


def _wait_function_ready(lam: Any, name: str, timeout_s: float = 120) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        config = lam.get_function_configuration(FunctionName=name)
        if config.get("State", "Active") == "Active" and config.get("LastUpdateStatus", "Successful") != "InProgress":
            return
        if config.get("State") == "Failed":
            raise RuntimeError(f"function {name} failed to deploy: {config.get('StateReason')}")
        time.sleep(0.5)
    raise TimeoutError(f"function {name} was not ready after {timeout_s:.0f} s")


def ensure_function(lam: Any, *, name: str, role_arn: str, handler: str, code: bytes, memory_mb: int, timeout_s: int, environment: dict[str, str], runtime: str) -> str:
    config = {
        "Role": role_arn,
        "Handler": handler,
        "Runtime": runtime,
        "MemorySize": memory_mb,
        "Timeout": timeout_s,
        "Environment": {"Variables": environment},
    }
    try:
        lam.get_function(FunctionName=name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        arn = lam.create_function(FunctionName=name, Code={"ZipFile": code}, PackageType="Zip", **config)["FunctionArn"]
        _wait_function_ready(lam, name)
        return arn
    lam.update_function_code(FunctionName=name, ZipFile=code)
    _wait_function_ready(lam, name)
    arn = lam.update_function_configuration(FunctionName=name, **config)["FunctionArn"]
    _wait_function_ready(lam, name)
    return arn


def ensure_state_machine(sfn: Any, name: str, definition: str, role_arn: str) -> str:
    for page in sfn.get_paginator("list_state_machines").paginate():
        for machine in page["stateMachines"]:
            if machine["name"] == name:
                sfn.update_state_machine(stateMachineArn=machine["stateMachineArn"], definition=definition, roleArn=role_arn)
                return machine["stateMachineArn"]
    return sfn.create_state_machine(name=name, definition=definition, roleArn=role_arn, type="STANDARD")["stateMachineArn"]


def deploy(target: TargetSettings, stack: Stack) -> Deployment:
    """Create or update everything the pipeline needs on the target."""
    s3, iam, lam, sfn = (target.client(s) for s in ("s3", "iam", "lambda", "stepfunctions"))
    ensure_bucket(s3, stack.bucket, target.region)
    lambda_role = ensure_role(iam, f"{stack.name}-lambda", LAMBDA_TRUST, lambda_policy(stack.bucket, stack))
    code = package_handlers(stack.extra_files)
    environment = {
        "COSMICAI_TARGET": target.name,
        "COSMICAI_INFER_MEMORY_MB": str(stack.infer_memory_mb),
        "COSMICAI_INFER_TIMEOUT_S": str(stack.infer_timeout_s),
        **stack.environment,
    }
    arns = {}
    for key, handler in HANDLERS.items():
        heavy = key == "infer"
        arns[key] = ensure_function(
            lam,
            name=stack.function_name(key),
            role_arn=lambda_role,
            handler=stack.handler_overrides.get(key, handler),
            code=code,
            memory_mb=stack.infer_memory_mb if heavy else stack.aux_memory_mb,
            timeout_s=stack.infer_timeout_s if heavy else stack.aux_timeout_s,
            environment=environment,
            runtime=stack.runtime,
        )
    states_role = ensure_role(iam, f"{stack.name}-states", STATES_TRUST, states_policy(stack.bucket, arns.values()))
    definition = render({PLACEHOLDER_OF[k]: v for k, v in arns.items()}, stack.max_concurrency)
    machine = ensure_state_machine(sfn, stack.state_machine_name, definition, states_role)
    logger.info("deployed %s to %s (state machine %s)", stack.name, target.name, machine)
    return Deployment(state_machine_arn=machine, function_arns=arns, bucket=stack.bucket)


def upload_files(s3: Any, bucket: str, prefix: str, paths: list[Path], progress: Callable[[int], None] | None = None) -> list[str]:
    """Upload partition files under ``prefix`` keeping their names; return the keys."""
    keys = []
    for path in paths:
        key = f"{prefix.rstrip('/')}/{path.name}"
        s3.upload_file(str(path), bucket, key)
        keys.append(key)
        if progress:
            progress(1)
    return keys


def upload_model(s3: Any, bucket: str, name: str, checkpoint: bytes) -> str:
    key = f"scripts/{name}/model.pt"
    s3.put_object(Bucket=bucket, Key=key, Body=checkpoint)
    return key
