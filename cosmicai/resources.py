"""Create or update, idempotently, each AWS resource the pipeline needs: bucket, roles, log groups, functions
and their published versions, the state machine and its published version; and a lock that makes a deploy atomic.

Each ``ensure_*`` compares what is there with what is wanted and changes only
what differs, so a second deploy with the same inputs changes nothing, and two
first deploys racing each other both succeed. :func:`deploy_lock` serializes
deploys of one stack across processes (a conditional create in the stack's
bucket): a deploy updates $LATEST and then publishes it, and no other deploy
may change $LATEST in between. Runs invoke the published versions.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Iterator

from botocore.exceptions import ClientError


def code_sha256(code: bytes) -> str:
    """Lambda's CodeSha256: base64 of the zip's SHA-256."""
    return base64.b64encode(hashlib.sha256(code).digest()).decode()


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
    """Until the function is Active and its last update done: short polls first (an emulator is ready at once),
    then at most every 2 s (AWS takes seconds; an image function, longer)."""
    deadline = time.time() + timeout_s
    poll = 0.02
    while time.time() < deadline:
        config = lam.get_function_configuration(FunctionName=name)
        if config.get("State") == "Failed":
            raise RuntimeError(f"function {name} failed to deploy: {config.get('StateReason')}")
        if config.get("State", "Active") == "Active" and config.get("LastUpdateStatus", "Successful") != "InProgress":
            return
        time.sleep(poll)
        poll = min(2.0, poll * 2)
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
    image_command: tuple[str, ...] = ()  # image: ImageConfig.Command (the handler; the image's CMD when empty)

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "Role": self.role_arn,
            "MemorySize": self.memory_mb,
            "Timeout": self.timeout_s,
            "Environment": {"Variables": self.environment},
        }
        if self.image_uri is None:
            config.update(Handler=self.handler, Runtime=self.runtime)
        elif self.image_command:
            config.update(ImageConfig={"Command": list(self.image_command)})
        return config


def create_function_request(spec: FunctionSpec) -> dict[str, Any]:
    """CreateFunction's parameters for ``spec``."""
    code = {"ImageUri": spec.image_uri} if spec.image_uri else {"ZipFile": spec.code}
    return {"FunctionName": spec.name, "Code": code, "PackageType": "Image" if spec.image_uri else "Zip", "Tags": spec.tags, **spec.config()}


def _config_differs(current: dict[str, Any], desired: dict[str, Any]) -> bool:
    for key, value in desired.items():
        have = current.get(key)
        if key == "Environment":
            have = (have or {}).get("Variables", {})
            value = value["Variables"]
        if key == "ImageConfig":
            have = {"Command": current.get("ImageConfigResponse", {}).get("ImageConfig", {}).get("Command")}
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
        try:
            arn = lam.create_function(**create_function_request(spec))["FunctionArn"]
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


def _same_image(lam: Any, latest: dict[str, Any], version: dict[str, Any]) -> bool:
    """Whether an image function's version runs $LATEST's image and command (an engine without Docker may give every
    image the same CodeSha256)."""
    if latest.get("PackageType") != "Image":
        return True
    def image(arn: str) -> tuple[Any, Any]:
        answer = lam.get_function(FunctionName=arn)
        return answer.get("Code", {}).get("ImageUri"), answer["Configuration"].get("ImageConfigResponse", {}).get("ImageConfig", {}).get("Command")
    return image(latest["FunctionArn"]) == image(version["FunctionArn"])


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
    if newest is not None and all(newest.get(k) == latest.get(k) for k in _VERSIONED) and _same_image(lam, latest, newest):
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
    """The ARN of a published version of the state machine with this definition (created or updated where it differs).

    Runs start executions on the version, not on the state machine: another
    run's deploy cannot change the definition (and so the function versions)
    a run started with. A racing create by another deploy is an update.
    """
    arn, version = _update_state_machine(sfn, name, definition, role_arn)
    if arn is None:
        tag_list = [{"key": k, "value": v} for k, v in tags.items()]
        try:
            created = sfn.create_state_machine(name=name, definition=definition, roleArn=role_arn, type="STANDARD", tags=tag_list, publish=True)
            return created.get("stateMachineVersionArn") or created["stateMachineArn"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "StateMachineAlreadyExists":
                raise
            arn, version = _update_state_machine(sfn, name, definition, role_arn)
    return version or arn  # type: ignore[return-value]


def _update_state_machine(sfn: Any, name: str, definition: str, role_arn: str) -> tuple[str | None, str | None]:
    """(state machine ARN, version ARN) after updating it to ``definition`` (publishing a version), or (None, None)."""
    for page in sfn.get_paginator("list_state_machines").paginate():
        for machine in page["stateMachines"]:
            if machine["name"] == name:
                arn = machine["stateMachineArn"]
                current = sfn.describe_state_machine(stateMachineArn=arn)
                if json.loads(current["definition"]) == json.loads(definition) and current["roleArn"] == role_arn:
                    latest = _latest_version(sfn, arn)
                    if latest:
                        return arn, latest
                updated = sfn.update_state_machine(stateMachineArn=arn, definition=definition, roleArn=role_arn, publish=True)
                return arn, updated.get("stateMachineVersionArn")
    return None, None


def _latest_version(sfn: Any, arn: str) -> str | None:
    """The newest published version's ARN (None where there is none, or where the engine cannot list them)."""
    try:
        versions = sfn.list_state_machine_versions(stateMachineArn=arn).get("stateMachineVersions", [])
    except ClientError:
        return None
    return versions[0]["stateMachineVersionArn"] if versions else None


LOCK_STALE_S = 300.0  # a lock older than this belongs to a deploy that died: it is broken


@contextlib.contextmanager
def deploy_lock(s3: Any, bucket: str, name: str, timeout_s: float = 600.0) -> Iterator[None]:
    """Hold ``locks/<name>.json`` in ``bucket`` (S3's If-None-Match create) while deploying; released on exit."""
    key = f"locks/{name}.json"
    owner = {"host": socket.gethostname(), "pid": os.getpid(), "at": time.time()}
    deadline, wait = time.time() + timeout_s, 0.05
    while True:
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(owner).encode(), IfNoneMatch="*")
            break
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise
        try:
            held = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            if time.time() - float(held.get("at", 0)) > LOCK_STALE_S:
                s3.delete_object(Bucket=bucket, Key=key)
                continue
        except (ClientError, ValueError):
            continue  # released in between
        if time.time() > deadline:
            raise TimeoutError(f"another deploy of this stack has held s3://{bucket}/{key} for {timeout_s:.0f} s")
        time.sleep(wait)
        wait = min(1.0, wait * 1.5)
    try:
        yield
    finally:
        s3.delete_object(Bucket=bucket, Key=key)
