"""What only the AWS target needs: the image in ECR, vendored zip dependencies, the
confirmation screen, the console URL, and destroy.

Credentials come from botocore's standard chain only; nothing secret is
printed, logged or written. Artifacts: the ECR repository ``<stack>-runtime``
with the image tagged by the hash of its build context, and the vendored
dependencies cached under ``$COSMICAI_HOME/vendor-<python>/``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from botocore.exceptions import ClientError

from cosmicai.deploy import HANDLERS, TAG_KEY, Stack
from cosmicai.targets import TargetSettings

logger = logging.getLogger(__name__)

LAMBDA_PYTHON = "3.11"  # the zip functions' runtime (python3.11)
VENDORED = ("pydantic>=2.5,<3",)  # what the zip functions need beyond the Lambda runtime's boto3
REFERENCE_SAMPLES_PER_S = 245.0  # a 10 GB Lambda in the reference study: 213-245 samples/s (full model)
COLD_START_S = 10.0  # container image pull + torch import, an upper estimate


class RefusedDestroy(RuntimeError):
    """destroy found objects it did not write in the stack's bucket (use --force)."""


class NotConfirmed(RuntimeError):
    """An AWS action that costs money was not confirmed (--yes or an interactive 'y')."""


def repository_name(stack: Stack) -> str:
    return f"{stack.name}-runtime"


def source_root() -> Path:
    """The source checkout holding inference/Dockerfile (the image's build context)."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "inference" / "Dockerfile").is_file():
        raise FileNotFoundError(f"{root}/inference/Dockerfile not found: build the image from a source checkout, or pass --image-uri")
    return root


def context_hash(root: Path) -> str:
    """Tag of the image: the hash of everything the Dockerfile copies (same sources, same tag)."""
    digest = hashlib.sha256()
    files = [root / "pyproject.toml", root / "inference" / "Dockerfile"]
    for package in ("inference", "emulator", "stepfn"):
        files += sorted(p for p in (root / package).rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def ensure_repository(ecr: Any, name: str, tags: dict[str, str]) -> str:
    try:
        return ecr.describe_repositories(repositoryNames=[name])["repositories"][0]["repositoryUri"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "RepositoryNotFoundException":
            raise
    tag_list = [{"Key": k, "Value": v} for k, v in tags.items()]
    return ecr.create_repository(repositoryName=name, imageScanningConfiguration={"scanOnPush": True}, tags=tag_list)["repository"]["repositoryUri"]


def build_and_push(target: TargetSettings, stack: Stack, log: Callable[[str], None] = logger.info) -> str:
    """Build inference/Dockerfile with the Docker SDK and push it to ECR; return the image URI."""
    try:
        import docker
    except ImportError:
        raise RuntimeError("building the image needs the Docker SDK: pip install -e '.[docker]' (or pass --image-uri)") from None
    root = source_root()
    ecr = target.client("ecr")
    repo_uri = ensure_repository(ecr, repository_name(stack), stack.tags)
    tag = context_hash(root)
    uri = f"{repo_uri}:{tag}"
    try:
        ecr.describe_images(repositoryName=repository_name(stack), imageIds=[{"imageTag": tag}])
        log(f"image {uri} is in ECR already")
        return uri
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ImageNotFoundException":
            raise
    client = docker.from_env()
    log(f"building {uri} (linux/amd64) from {root}/inference/Dockerfile")
    client.images.build(path=str(root), dockerfile="inference/Dockerfile", tag=uri, platform="linux/amd64", rm=True)
    token = ecr.get_authorization_token()["authorizationData"][0]
    user, password = base64.b64decode(token["authorizationToken"]).decode().split(":", 1)
    log(f"pushing {uri}")
    for line in client.images.push(repo_uri, tag=tag, auth_config={"username": user, "password": password}, stream=True, decode=True):
        if "error" in line:
            raise RuntimeError(f"docker push failed: {line['error']}")
    return uri


def vendor_dependencies(log: Callable[[str], None] = logger.info) -> Path:
    """pydantic and friends as Lambda (manylinux x86_64, CPython 3.11) wheels, installed once into a cache."""
    from emulator.state import home

    folder = home() / f"vendor-py{LAMBDA_PYTHON.replace('.', '')}-{hashlib.sha256(' '.join(VENDORED).encode()).hexdigest()[:8]}"
    if (folder / ".complete").is_file():
        return folder
    log(f"vendoring {', '.join(VENDORED)} for the zip functions into {folder}")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--target", str(folder), "--platform", "manylinux2014_x86_64",
         "--implementation", "cp", "--python-version", LAMBDA_PYTHON, "--only-binary=:all:", "--upgrade", *VENDORED],
        check=True,
    )
    (folder / ".complete").write_text("ok\n")
    return folder


# -- safety ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What a deploy or run on AWS will do, shown before anything is created."""

    account: str
    region: str
    resources: list[str]
    cost_usd: dict[str, float] | None
    world_size: int | None


def plan(target: TargetSettings, stack: Stack, *, world_size: int | None = None, samples_per_rank: int | None = None) -> Plan:
    from cosmicai.deploy import account_id
    from inference.cost import estimate_cost

    resources = [
        f"S3 bucket {stack.bucket} (results/, scripts/)",
        f"ECR repository {repository_name(stack)} and the inference image",
        f"Lambda {stack.function_name('infer')} (container image, {stack.infer_memory_mb} MB, timeout {stack.infer_timeout_s} s)",
        *[f"Lambda {stack.function_name(k)} (zip, {stack.aux_memory_mb} MB)" for k in HANDLERS if k != "infer"],
        f"IAM roles {stack.name}-lambda and {stack.name}-states (least privilege)",
        f"Step Functions state machine {stack.state_machine_name} (Distributed Map, MaxConcurrency {stack.max_concurrency})",
        f"CloudWatch log groups /aws/lambda/{stack.name}-*",
    ]
    cost = None
    if world_size and samples_per_rank:
        seconds = samples_per_rank / REFERENCE_SAMPLES_PER_S + COLD_START_S
        cost = estimate_cost(world_size=world_size, seconds_per_rank=seconds, memory_mb=stack.infer_memory_mb)
    return Plan(account=account_id(target), region=target.region, resources=resources, cost_usd=cost, world_size=world_size)


def confirm(plan: Plan, *, yes: bool, show: Callable[[str], None], stdin: Any = None) -> None:
    """Show the plan; go on only with --yes or an interactive 'y'. Raise NotConfirmed otherwise."""
    stdin = stdin or sys.stdin
    show(f"AWS account {plan.account}, region {plan.region}. Will create or update (tagged {TAG_KEY}):")
    for item in plan.resources:
        show(f"  - {item}")
    if plan.cost_usd:
        show(f"Estimated cost of this run ({plan.world_size} ranks, inference/cost.py): ${plan.cost_usd['total']:.4f} "
             f"(Lambda ${plan.cost_usd['lambda']:.4f}, Step Functions ${plan.cost_usd['stepfunctions']:.4f}, S3 ${plan.cost_usd['s3']:.4f})")
    if yes:
        return
    if not stdin.isatty():
        raise NotConfirmed("refusing to create AWS resources without --yes (stdin is not interactive)")
    show("Proceed? [y/N] ")
    if stdin.readline().strip().lower() not in ("y", "yes"):
        raise NotConfirmed("not confirmed: nothing was created")


def prepare_stack(
    target: TargetSettings,
    stack: Stack,
    *,
    yes: bool,
    image_uri: str | None,
    show: Callable[[str], None],
    world_size: int | None = None,
    samples_per_rank: int | None = None,
) -> Stack:
    """Confirm, then vendor the zip dependencies and build/push the image (unless given): the deployable stack."""
    from dataclasses import replace

    confirm(plan(target, stack, world_size=world_size, samples_per_rank=samples_per_rank), yes=yes, show=show)
    vendor = vendor_dependencies(show)
    uri = image_uri or build_and_push(target, stack, show)
    return replace(stack, image_uri=uri, vendor_dir=vendor)


def console_url(region: str, execution_arn: str) -> str:
    return f"https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{execution_arn}"


# -- destroy -------------------------------------------------------------------------------


def _tagged(tags: dict[str, str] | list[dict[str, str]], stack_name: str) -> bool:
    if isinstance(tags, list):
        tags = {t.get("Key", t.get("key")): t.get("Value", t.get("value")) for t in tags}
    return tags.get(TAG_KEY) == stack_name


def foreign_objects(s3: Any, bucket: str, stack_name: str, limit: int = 5) -> list[str]:
    """Keys in bucket not written by this stack (no cosmicai:stack tag)."""
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            if not _tagged(s3.get_object_tagging(Bucket=bucket, Key=obj["Key"])["TagSet"], stack_name):
                found.append(obj["Key"])
                if len(found) >= limit:
                    return found
    return found


def destroy(target: TargetSettings, stack_name: str, bucket: str, *, force: bool = False, log: Callable[[str], None] = logger.info) -> list[str]:
    """Delete every resource tagged with the stack; return what was deleted."""
    s3, lam, sfn, iam, logs, ecr = (target.client(s) for s in ("s3", "lambda", "stepfunctions", "iam", "logs", "ecr"))
    deleted: list[str] = []
    bucket_ours = False
    try:
        bucket_ours = _tagged(s3.get_bucket_tagging(Bucket=bucket)["TagSet"], stack_name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("NoSuchBucket", "NoSuchTagSet"):
            raise
    if bucket_ours and not force:
        foreign = foreign_objects(s3, bucket, stack_name)
        if foreign:
            raise RefusedDestroy(f"bucket {bucket} holds objects this stack did not write ({', '.join(foreign)}); nothing was deleted; use --force to delete them too")
    for page in sfn.get_paginator("list_state_machines").paginate():
        for machine in page["stateMachines"]:
            if _tagged(sfn.list_tags_for_resource(resourceArn=machine["stateMachineArn"])["tags"], stack_name):
                sfn.delete_state_machine(stateMachineArn=machine["stateMachineArn"])
                deleted.append(f"state machine {machine['name']}")
    for page in lam.get_paginator("list_functions").paginate():
        for fn in page["Functions"]:
            if _tagged(lam.list_tags(Resource=fn["FunctionArn"])["Tags"], stack_name):
                lam.delete_function(FunctionName=fn["FunctionName"])
                deleted.append(f"function {fn['FunctionName']}")
    for page in logs.get_paginator("describe_log_groups").paginate(logGroupNamePrefix="/aws/lambda/"):
        for group in page["logGroups"]:
            if _tagged(logs.list_tags_log_group(logGroupName=group["logGroupName"]).get("tags", {}), stack_name):
                logs.delete_log_group(logGroupName=group["logGroupName"])
                deleted.append(f"log group {group['logGroupName']}")
    for page in iam.get_paginator("list_roles").paginate():
        for role in page["Roles"]:
            if _tagged(iam.list_role_tags(RoleName=role["RoleName"])["Tags"], stack_name):
                for name in iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"]:
                    iam.delete_role_policy(RoleName=role["RoleName"], PolicyName=name)
                iam.delete_role(RoleName=role["RoleName"])
                deleted.append(f"role {role['RoleName']}")
    for page in ecr.get_paginator("describe_repositories").paginate():
        for repo in page["repositories"]:
            if _tagged(ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"], stack_name):
                ecr.delete_repository(repositoryName=repo["repositoryName"], force=True)
                deleted.append(f"ECR repository {repo['repositoryName']}")
    if bucket_ours:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            batch = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in page.get("Versions", []) + page.get("DeleteMarkers", [])]
            if batch:
                s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        s3.delete_bucket(Bucket=bucket)
        deleted.append(f"bucket {bucket}")
    for item in deleted:
        log(f"deleted {item}")
    return deleted


def has_credentials() -> bool:
    import boto3

    return boto3.Session().get_credentials() is not None or bool(os.environ.get("AWS_PROFILE"))
