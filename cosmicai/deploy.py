"""Deploy the pipeline: bucket, role, the four functions, the state machine; upload model and data.

The same code deploys every target; what differs is in ``TargetSettings``:
``packaging`` "zip" (embedded, LocalStack: every function a zip of the
handlers) or "image" (AWS: Infer from the inference container image,
Initialize/RecordFailure/Summarize as small zips with their dependencies
vendored). Every resource is tagged ``cosmicai:stack=<name>``. Idempotent:
a second deploy with the same inputs changes nothing.

Objects written: ``results/`` and ``scripts/`` folder markers,
``scripts/<model>/`` (a model folder and its ``cosmicai-folder.json``) and
``data/<name>/<n>.pt`` (partitions), each tagged with the stack.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import re
import time
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from botocore.exceptions import ClientError

from cosmicai import iam as iam_docs
from cosmicai.targets import TargetSettings
from stepfn.definition import render

logger = logging.getLogger(__name__)

TAG_KEY = "cosmicai:stack"
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
STACK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,39}$")
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")  # S3's bucket naming rules
MAX_MEMORY_MB = 10_240  # Lambda's limit
MAX_TIMEOUT_S = 900  # Lambda's limit
_ZIP_DATE = (2024, 1, 1, 0, 0, 0)  # fixed timestamps: same sources, same zip, same CodeSha256


@dataclass(frozen=True)
class Stack:
    """Names and sizes of one deployment; every resource is named from ``name``."""

    name: str = "cosmicai"
    bucket: str = "cosmicai-data"
    infer_memory_mb: int = 3008
    infer_timeout_s: int = 900
    aux_memory_mb: int = 256
    aux_timeout_s: int = 300
    max_concurrency: int = 2
    runtime: str = "python3.11"
    image_uri: str | None = None  # the Infer image (packaging "image")
    vendor_dir: Path | None = None  # dependencies added to the zips (packaging "image")
    extra_files: dict[str, bytes] = field(default_factory=dict)  # added to the code zip (tests, user hooks)
    handler_overrides: dict[str, str] = field(default_factory=dict)  # function key -> handler
    environment: dict[str, str] = field(default_factory=dict)  # extra variables for every function

    def __post_init__(self) -> None:
        if not STACK_NAME.match(self.name):
            raise ValueError(f"stack name {self.name!r}: 1-40 letters, digits and '-', starting with a letter (it prefixes function, role and state machine names)")
        if not BUCKET_NAME.match(self.bucket) or ".." in self.bucket or re.fullmatch(r"[\d.]+", self.bucket):
            raise ValueError(f"bucket name {self.bucket!r}: S3 wants 3-63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit")
        if not 128 <= self.infer_memory_mb <= MAX_MEMORY_MB:
            raise ValueError(f"memory: {self.infer_memory_mb} MB is outside Lambda's 128..{MAX_MEMORY_MB} MB")
        if not 1 <= self.infer_timeout_s <= MAX_TIMEOUT_S:
            raise ValueError(f"timeout: {self.infer_timeout_s} s is outside Lambda's 1..{MAX_TIMEOUT_S} s")

    def function_name(self, key: str) -> str:
        return f"{self.name}-{key}"

    @property
    def state_machine_name(self) -> str:
        return f"{self.name}-pipeline"

    @property
    def tags(self) -> dict[str, str]:
        return {TAG_KEY: self.name}


@dataclass(frozen=True)
class Deployment:
    state_machine_arn: str
    function_arns: dict[str, str]
    bucket: str


# -- code packages -----------------------------------------------------------------------


def _add(archive: zipfile.ZipFile, name: str, body: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, body)


def package_handlers(extra_files: dict[str, bytes] | None = None, vendor_dir: Path | None = None) -> bytes:
    """A zip of the ``inference`` package (Python sources), plus vendored dependencies if given."""
    buffer = io.BytesIO()
    root = resources.files("inference")
    with zipfile.ZipFile(buffer, "w") as archive:
        for entry in sorted(root.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".py"):
                _add(archive, f"inference/{entry.name}", entry.read_bytes())
        if vendor_dir is not None:
            for path in sorted(p for p in vendor_dir.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
                _add(archive, path.relative_to(vendor_dir).as_posix(), path.read_bytes())
        for name, body in sorted((extra_files or {}).items()):
            _add(archive, name, body)
    return buffer.getvalue()


def code_sha256(code: bytes) -> str:
    """Lambda's CodeSha256: base64 of the zip's SHA-256."""
    return base64.b64encode(hashlib.sha256(code).digest()).decode()


# -- resources ------------------------------------------------------------------------------


def ensure_bucket(s3: Any, bucket: str, region: str, tags: dict[str, str]) -> None:
    try:
        if region == "us-east-1":
            s3.create_bucket(Bucket=bucket)
        else:
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region})
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]})
    for folder in ("results/", "scripts/"):
        put_tagged(s3, bucket, folder, b"", tags)


def put_tagged(s3: Any, bucket: str, key: str, body: bytes, tags: dict[str, str]) -> None:
    """PutObject with the stack's tag: destroy deletes only what it wrote."""
    s3.put_object(Bucket=bucket, Key=key, Body=body, Tagging="&".join(f"{k}={v}" for k, v in tags.items()))


def ensure_role(iam: Any, name: str, trust: dict[str, Any], policy: dict[str, Any], tags: dict[str, str]) -> str:
    try:
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NoSuchEntity":
            raise
        tag_list = [{"Key": k, "Value": v} for k, v in tags.items()]
        try:
            arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust), Tags=tag_list)["Role"]["Arn"]
        except ClientError as race:  # another deploy created it first
            if race.response["Error"]["Code"] != "EntityAlreadyExists":
                raise
            arn = iam.get_role(RoleName=name)["Role"]["Arn"]
    policy_name = f"{name}-policy"
    try:
        current = iam.get_role_policy(RoleName=name, PolicyName=policy_name)["PolicyDocument"]
        current = json.loads(current) if isinstance(current, str) else current
    except ClientError:
        current = None
    if current != policy:
        iam.put_role_policy(RoleName=name, PolicyName=policy_name, PolicyDocument=json.dumps(policy))
    return arn


def ensure_log_group(logs: Any, name: str, tags: dict[str, str]) -> None:
    try:
        logs.create_log_group(logGroupName=name, tags=tags)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceAlreadyExistsException":
            raise


def _wait_function_ready(lam: Any, name: str, timeout_s: float = 300) -> None:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        config = lam.get_function_configuration(FunctionName=name)
        if config.get("State") == "Failed":
            raise RuntimeError(f"function {name} failed to deploy: {config.get('StateReason')}")
        if config.get("State", "Active") == "Active" and config.get("LastUpdateStatus", "Successful") != "InProgress":
            return
        time.sleep(0.5)
    raise TimeoutError(f"function {name} was not ready after {timeout_s:.0f} s")


@dataclass(frozen=True)
class FunctionSpec:
    """The desired state of one function."""

    name: str
    role_arn: str
    memory_mb: int
    timeout_s: int
    environment: dict[str, str]
    tags: dict[str, str]
    handler: str | None = None  # zip
    runtime: str | None = None  # zip
    code: bytes | None = None  # zip
    image_uri: str | None = None  # image

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "Role": self.role_arn,
            "MemorySize": self.memory_mb,
            "Timeout": self.timeout_s,
            "Environment": {"Variables": self.environment},
        }
        if self.image_uri is None:
            config.update(Handler=self.handler, Runtime=self.runtime)
        return config


def _config_differs(current: dict[str, Any], desired: dict[str, Any]) -> bool:
    for key, value in desired.items():
        have = current.get(key)
        if key == "Environment":
            have = (have or {}).get("Variables", {})
            value = value["Variables"]
        if have != value:
            return True
    return False


def ensure_function(lam: Any, spec: FunctionSpec) -> str:
    """Create the function, or update its code/configuration only where they differ."""
    try:
        current = lam.get_function(FunctionName=spec.name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        code = {"ImageUri": spec.image_uri} if spec.image_uri else {"ZipFile": spec.code}
        package = "Image" if spec.image_uri else "Zip"
        try:
            arn = lam.create_function(FunctionName=spec.name, Code=code, PackageType=package, Tags=spec.tags, **spec.config())["FunctionArn"]
        except ClientError as exc:  # another deploy created it first: carry on as an update
            if exc.response["Error"]["Code"] != "ResourceConflictException":
                raise
            _wait_function_ready(lam, spec.name)
            return ensure_function(lam, spec)
        _wait_function_ready(lam, spec.name)
        return arn
    config = current["Configuration"]
    if spec.image_uri:
        if current.get("Code", {}).get("ImageUri") != spec.image_uri:
            lam.update_function_code(FunctionName=spec.name, ImageUri=spec.image_uri)
            _wait_function_ready(lam, spec.name)
    elif config.get("CodeSha256") != code_sha256(spec.code or b""):
        lam.update_function_code(FunctionName=spec.name, ZipFile=spec.code)
        _wait_function_ready(lam, spec.name)
    if _config_differs(config, spec.config()):
        lam.update_function_configuration(FunctionName=spec.name, **spec.config())
        _wait_function_ready(lam, spec.name)
    return config["FunctionArn"]


_VERSIONED = ("CodeSha256", "MemorySize", "Timeout", "Handler", "Runtime", "Environment", "Role", "EphemeralStorage")


def ensure_version(lam: Any, name: str) -> str:
    """The qualified ARN of a published version equal to $LATEST (published now only if none is).

    The state machine invokes versions, not $LATEST: an execution keeps the code
    and configuration it started with while another run's deploy changes the
    function, as a careful AWS user pins versions.
    """
    latest = lam.get_function_configuration(FunctionName=name)
    newest = None
    for page in lam.get_paginator("list_versions_by_function").paginate(FunctionName=name):
        for version in page["Versions"]:
            if version["Version"] != "$LATEST" and (newest is None or int(version["Version"]) > int(newest["Version"])):
                newest = version
    if newest is not None and all(newest.get(k) == latest.get(k) for k in _VERSIONED):
        return newest["FunctionArn"]
    try:
        published = lam.publish_version(FunctionName=name, CodeSha256=latest["CodeSha256"])
    except ClientError as exc:  # another deploy changed $LATEST in between: publish what is there now
        if exc.response["Error"]["Code"] not in ("PreconditionFailedException", "ResourceConflictException"):
            raise
        _wait_function_ready(lam, name)
        published = lam.publish_version(FunctionName=name)
    _wait_function_ready(lam, published["FunctionArn"])
    return published["FunctionArn"]


def ensure_state_machine(sfn: Any, name: str, definition: str, role_arn: str, tags: dict[str, str]) -> str:
    """Create the state machine, or update it where it differs; a racing create by another deploy is an update."""
    found = _update_state_machine(sfn, name, definition, role_arn)
    if found:
        return found
    tag_list = [{"key": k, "value": v} for k, v in tags.items()]
    try:
        return sfn.create_state_machine(name=name, definition=definition, roleArn=role_arn, type="STANDARD", tags=tag_list)["stateMachineArn"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "StateMachineAlreadyExists":
            raise
        return _update_state_machine(sfn, name, definition, role_arn) or exc.response["Error"].get("Message", "")


def _update_state_machine(sfn: Any, name: str, definition: str, role_arn: str) -> str | None:
    for page in sfn.get_paginator("list_state_machines").paginate():
        for machine in page["stateMachines"]:
            if machine["name"] == name:
                arn = machine["stateMachineArn"]
                current = sfn.describe_state_machine(stateMachineArn=arn)
                if json.loads(current["definition"]) != json.loads(definition) or current["roleArn"] != role_arn:
                    sfn.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=role_arn)
                return arn
    return None


def account_id(target: TargetSettings) -> str:
    return target.client("sts").get_caller_identity()["Account"]


def deploy(target: TargetSettings, stack: Stack) -> Deployment:
    """Create or update everything the pipeline needs on the target."""
    s3, iam, lam, sfn, logs = (target.client(s) for s in ("s3", "iam", "lambda", "stepfunctions", "logs"))
    image = target.packaging == "image"
    if image and not stack.image_uri:
        raise ValueError("the aws target runs Infer from a container image: build and push it first (see cosmicai.aws)")
    account = account_id(target)
    ensure_bucket(s3, stack.bucket, target.region, stack.tags)
    lambda_policy = iam_docs.lambda_policy(bucket=stack.bucket, data_bucket=stack.bucket, stack_name=stack.name, region=target.region, account=account)
    lambda_role = ensure_role(iam, f"{stack.name}-lambda", iam_docs.LAMBDA_TRUST, lambda_policy, stack.tags)
    code = package_handlers(stack.extra_files, stack.vendor_dir if image else None)
    environment = {
        "COSMICAI_TARGET": target.name,
        "COSMICAI_STACK": stack.name,
        "COSMICAI_INFER_MEMORY_MB": str(stack.infer_memory_mb),
        "COSMICAI_INFER_TIMEOUT_S": str(stack.infer_timeout_s),
        **stack.environment,
    }
    arns = {}
    for key, handler in HANDLERS.items():
        heavy = key == "infer"
        name = stack.function_name(key)
        ensure_log_group(logs, f"/aws/lambda/{name}", stack.tags)
        from_image = image and heavy
        spec = FunctionSpec(
            name=name,
            role_arn=lambda_role,
            memory_mb=stack.infer_memory_mb if heavy else stack.aux_memory_mb,
            timeout_s=stack.infer_timeout_s if heavy else stack.aux_timeout_s,
            environment=environment,
            tags=stack.tags,
            handler=None if from_image else stack.handler_overrides.get(key, handler),
            runtime=None if from_image else (target.zip_runtime or stack.runtime),
            code=None if from_image else code,
            image_uri=stack.image_uri if from_image else None,
        )
        ensure_function(lam, spec)
        arns[key] = ensure_version(lam, name)
    machine_arn = f"arn:aws:states:{target.region}:{account}:stateMachine:{stack.state_machine_name}"
    states_policy = iam_docs.states_policy(bucket=stack.bucket, function_arns=arns.values(), state_machine_arn=machine_arn)
    states_role = ensure_role(iam, f"{stack.name}-states", iam_docs.STATES_TRUST, states_policy, stack.tags)
    definition = render({PLACEHOLDER_OF[k]: v for k, v in arns.items()}, stack.max_concurrency)
    machine = ensure_state_machine(sfn, stack.state_machine_name, definition, states_role, stack.tags)
    logger.info("deployed %s to %s (state machine %s)", stack.name, target.name, machine)
    return Deployment(state_machine_arn=machine, function_arns=arns, bucket=stack.bucket)


def upload_files(s3: Any, bucket: str, prefix: str, paths: list[Path], progress: Callable[[int], None] | None = None, tags: dict[str, str] | None = None) -> list[str]:
    """Upload partition files under ``prefix`` keeping their names; return the keys."""
    keys = []
    extra = {"Tagging": "&".join(f"{k}={v}" for k, v in tags.items())} if tags else None
    for path in paths:
        key = f"{prefix.rstrip('/')}/{path.name}"
        s3.upload_file(str(path), bucket, key, ExtraArgs=extra)
        keys.append(key)
        if progress:
            progress(1)
    return keys


def upload_model_folder(s3: Any, bucket: str, name: str, folder: Path, tags: dict[str, str] | None = None) -> str:
    """Upload a model folder under scripts/<name>/, its manifest (with the content digest) last."""
    from inference.modelfolder import MANIFEST, manifest

    prefix = f"scripts/{name}"
    listing = manifest(folder, name)
    for file in listing["files"]:
        put_tagged(s3, bucket, f"{prefix}/{file}", (folder / file).read_bytes(), tags or {})
    put_tagged(s3, bucket, f"{prefix}/{MANIFEST}", json.dumps(listing, indent=1).encode(), tags or {})
    return prefix
