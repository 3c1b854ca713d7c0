"""Deploy the pipeline: bucket, role, the four functions, the state machine; upload model and data.

The same code deploys every target, packaged as for AWS wherever the engine can
run it, so the emulators prove the packaging: Initialize/RecordFailure/Summarize
are small zips of the handlers with their dependencies (pydantic and co) vendored
into the zip (AWS: wheels that ``cosmicai.aws`` downloads; offline: copied from
this environment, :func:`offline_vendor_dir`), and Infer (torch) is a container
image: on AWS the one ``cosmicai.aws`` builds and pushes; offline (the embedded
target, and LocalStack in host mode, whose engines run images through our
workers) an image "built" into the local image store (``emulator.runtimes``:
the handlers as its files, ``inference.infer.handler`` as its CMD, as
``inference/Dockerfile``) named ``<RUNTIME_IMAGE repository>:<content hash>``.
LocalStack in Docker (compose.yaml; its community edition runs no images) gets
Infer as a zip, run in the runtime image it maps the zip runtime to. Every
resource is tagged ``cosmicai:stack=<name>``. Idempotent: a second deploy with
the same inputs, from the same interpreter, changes nothing (the zips' compiled
modules are that interpreter's, :func:`_compiled`).

Objects written: ``results/`` and ``scripts/`` folder markers,
``scripts/<model>/`` (a model folder and its ``cosmicai-folder.json``) and
``data/<name>/<n>.pt`` (partitions), each tagged with the stack.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Callable


from cosmicai import iam as iam_docs
from cosmicai.resources import (
    FunctionSpec, create_function_request, deploy_lock, ensure_bucket, ensure_function, ensure_log_group, ensure_role, ensure_state_machine,
    ensure_version, put_tagged,
)
from cosmicai.targets import TargetSettings
from stepfn.definition import render

logger = logging.getLogger(__name__)

TAG_KEY = "cosmicai:stack"
HANDLERS = {
    "initialize": "inference.handlers.initialize",
    "infer": "inference.infer.handler",
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
HOST_RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"  # the Lambda runtime this interpreter is
OFFLINE_VENDORED = ("pydantic", "pydantic_core", "typing_extensions", "annotated_types", "typing_inspection")  # cosmicai.aws VENDORED, installed


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


def package_handlers(extra_files: dict[str, bytes] | None = None, vendor_dir: Path | None = None, runtime: str | None = None) -> bytes:
    """A zip of the ``inference`` package (Python sources), plus vendored dependencies if given.

    The vendored part (megabytes of pydantic) is compressed once per vendor folder (:func:`_vendor_zip`); each
    deploy appends only the handlers' sources to a copy of it. Where ``runtime`` (``python3.X``) is this
    interpreter's, the vendored modules come compiled too (:func:`_compiled`)."""
    buffer = io.BytesIO(_vendor_zip(vendor_dir, runtime == HOST_RUNTIME) if vendor_dir is not None else b"")
    root = resources.files("inference")
    with zipfile.ZipFile(buffer, "a" if vendor_dir is not None else "w") as archive:
        for entry in sorted(root.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".py"):
                _add(archive, f"inference/{entry.name}", entry.read_bytes())
        for name, body in sorted((extra_files or {}).items()):
            _add(archive, name, body)
    return buffer.getvalue()


def _vendor_zip(vendor_dir: Path, compiled: bool = False) -> bytes:
    """The vendored files as a zip (with :func:`_compiled` bytecode if ``compiled``); kept beside a finished vendor
    folder (``.complete``: it no longer changes)."""
    cached = vendor_dir.with_name(f"{vendor_dir.name}{'.' + sys.implementation.cache_tag if compiled else ''}.zip")
    complete = (vendor_dir / ".complete").is_file()
    if complete and cached.is_file():
        return cached.read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(p for p in vendor_dir.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.name != ".complete"):
            _add(archive, path.relative_to(vendor_dir).as_posix(), path.read_bytes())
        pycs = _compiled(vendor_dir) if compiled else {}
        for name, body in sorted(pycs.items()):
            _add(archive, name, body)
    if complete and (pycs or not compiled):  # a compile that gave nothing is tried again next time
        staging = cached.with_name(f".{cached.name}-{os.getpid()}")
        staging.write_bytes(buffer.getvalue())
        os.replace(staging, cached)
    return buffer.getvalue()


def _compiled(folder: Path) -> dict[str, bytes]:
    """``folder``'s modules compiled by this interpreter: {``<dir>/__pycache__/<name>.<cache tag>.pyc``: bytecode}.

    Lambda's ``/var/task`` is read-only, so a zip without bytecode compiles every module it imports at every cold
    start (pydantic: about 0.25 s of CPU; far more at a small function's fraction of a vCPU). Unchecked-hash pycs
    (PEP 552) are used whatever the unpacked files' times. Compiled in a fresh isolated interpreter, one file after
    another: marshal's output depends on the compiling process's state, and the zip must not change between
    deploys (its CodeSha256 would publish a new version each time). The bytes are this interpreter's: another
    patch release of the same Python may compile a module differently, so one stack deployed from two such
    interpreters publishes a new version at each switch."""
    import subprocess

    with tempfile.TemporaryDirectory(prefix="cosmicai-pyc-") as work:
        staging = Path(work) / "src"
        shutil.copytree(folder, staging, ignore=shutil.ignore_patterns("__pycache__", ".complete"))
        done = subprocess.run([sys.executable, "-I", "-m", "compileall", "-q", "-f", "-j", "1", "--invalidation-mode", "unchecked-hash",
                               "-s", str(staging), str(staging)], check=False, capture_output=True, text=True)
        tag = f".{sys.implementation.cache_tag}.pyc"
        compiled = {path.relative_to(staging).as_posix(): path.read_bytes() for path in staging.rglob(f"__pycache__/*{tag}")}
    if done.returncode != 0:  # a module it cannot compile ships as source only; nothing compiled at all is said louder
        log = logger.warning if not compiled else logger.debug
        log("compiling %s for the zip: %s", folder, (done.stdout + done.stderr).strip()[-500:] or f"exit {done.returncode}")
    return compiled


def offline_vendor_dir() -> Path:
    """The zips' dependencies (:data:`OFFLINE_VENDORED`) copied from this environment, once, into the cache (no network)."""
    from importlib.metadata import version

    from emulator.runtimes import vendor
    from emulator.state import cache_home

    pins = " ".join(f"{name}=={version(name)}" for name in OFFLINE_VENDORED)
    tag = f"py{sys.version_info.major}{sys.version_info.minor}-{hashlib.sha256(pins.encode()).hexdigest()[:10]}"
    return vendor(OFFLINE_VENDORED, cache_home() / "vendor" / f"offline-{tag}")


def runs_local_images(target: TargetSettings) -> bool:
    """Whether the target's engine runs image functions from the local image store: the embedded target's pool, and
    LocalStack in host mode (our executor); not LocalStack in Docker (its community edition runs no images)."""
    if target.name == "embedded":
        return True
    if target.name != "localstack" or not target.endpoint_url:
        return False
    from emulator.localstack_host import running

    port = target.endpoint_url.rstrip("/").rsplit(":", 1)[-1]
    state = running(int(port)) if port.isdigit() else None
    return bool(state and state.get("endpoint") == target.endpoint_url.rstrip("/"))


def build_local_image(stack: Stack) -> str:
    """The Infer image, offline: the handlers (and ``extra_files``) as its files, Infer's handler as its CMD, saved
    in the local image store under ``<RUNTIME_IMAGE repository>:<content hash>``; its URI."""
    from cosmicai.targets import RUNTIME_IMAGE
    from emulator.runtimes import save_local_image

    files = package_handlers(stack.extra_files)
    command = [HANDLERS["infer"]]
    uri = f"{RUNTIME_IMAGE.rsplit(':', 1)[0]}:{hashlib.sha256(files + json.dumps(command).encode()).hexdigest()[:16]}"
    save_local_image(uri, files, command)
    return uri


def account_id(target: TargetSettings) -> str:
    return target.client("sts").get_caller_identity()["Account"]


Planned = Callable[[str, str, str, dict[str, Any]], None]  # (key, account, region, CreateFunction's parameters)


def deploy(target: TargetSettings, stack: Stack, on_function: Callable[[str, str], None] | None = None,
           on_planned: Planned | None = None) -> Deployment:
    """Create or update everything the pipeline needs on the target.

    ``on_planned(key, account, region, request)`` is called for each function once it is
    packaged, before anything is created (``request``: the CreateFunction parameters it gets
    if it does not exist yet; its Role is left empty, not known yet); ``on_function(key,
    version_arn)`` as soon as each function's version is published. An in-process engine
    starts its workers at either, while the deploy goes on.
    """
    s3, iam, lam, sfn, logs = (target.client(s) for s in ("s3", "iam", "lambda", "stepfunctions", "logs"))
    image = target.packaging == "image"
    if image and not stack.image_uri:
        raise ValueError("the aws target runs Infer from a container image: build and push it first (see cosmicai.aws)")
    account = account_id(target)
    stack, code, environment = packaged(target, stack)
    if on_planned is not None:
        for key, request in planned_requests(target, stack, code, environment).items():
            on_planned(key, account, target.region, request)
    ensure_bucket(s3, stack.bucket, target.region, stack.tags)
    lambda_policy = iam_docs.lambda_policy(bucket=stack.bucket, data_bucket=stack.bucket, stack_name=stack.name, region=target.region, account=account)
    lambda_role = ensure_role(iam, f"{stack.name}-lambda", iam_docs.LAMBDA_TRUST, lambda_policy, stack.tags)
    arns = {}
    with deploy_lock(s3, stack.bucket, f"{stack.name}-deploy"):
        return _deploy_locked(target, stack, account, lambda_role, code, environment, arns, on_function)


def packaged(target: TargetSettings, stack: Stack) -> tuple[Stack, bytes, dict[str, str]]:
    """The stack as deployed to ``target`` (offline: with its vendored modules and local image), the zip of the
    handlers, and the functions' environment variables; no request to the target."""
    if target.packaging != "image":  # offline: packaged as for AWS wherever the engine can run it
        stack = replace(stack, vendor_dir=offline_vendor_dir(), image_uri=build_local_image(stack) if runs_local_images(target) else None)
    code = package_handlers(stack.extra_files, stack.vendor_dir, target.zip_runtime or stack.runtime)
    environment = {
        "COSMICAI_TARGET": target.name,
        "COSMICAI_STACK": stack.name,
        "COSMICAI_INFER_MEMORY_MB": str(stack.infer_memory_mb),
        "COSMICAI_INFER_TIMEOUT_S": str(stack.infer_timeout_s),
        **stack.environment,
    }
    return stack, code, environment


def planned_requests(target: TargetSettings, stack: Stack, code: bytes | None = None, environment: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """CreateFunction's parameters of each function (Role left empty: not known before the deploy), by key."""
    if code is None or environment is None:
        stack, code, environment = packaged(target, stack)
    return {key: create_function_request(function_spec(target, stack, key, "", code, environment)) for key in HANDLERS}


def function_spec(target: TargetSettings, stack: Stack, key: str, lambda_role: str, code: bytes | None, environment: dict[str, str]) -> FunctionSpec:
    """The desired state of one of the stack's functions (Infer from the stack's image where it has one)."""
    heavy = key == "infer"
    from_image = heavy and stack.image_uri is not None
    return FunctionSpec(
        name=stack.function_name(key),
        role_arn=lambda_role,
        memory_mb=stack.infer_memory_mb if heavy else stack.aux_memory_mb,
        timeout_s=stack.infer_timeout_s if heavy else stack.aux_timeout_s,
        environment=environment,
        tags=stack.tags,
        handler=None if from_image else stack.handler_overrides.get(key, HANDLERS[key]),
        runtime=None if from_image else (target.zip_runtime or stack.runtime),
        code=None if from_image else code,
        image_uri=stack.image_uri if from_image else None,
        image_command=(stack.handler_overrides[key],) if from_image and key in stack.handler_overrides else (),
    )


def _deploy_locked(target: TargetSettings, stack: Stack, account: str, lambda_role: str, code: bytes | None,
                   environment: dict[str, str], arns: dict[str, str], on_function: Callable[[str, str], None] | None = None) -> Deployment:
    """The functions, their versions and the state machine (under the deploy lock)."""
    iam, lam, sfn, logs = (target.client(s) for s in ("iam", "lambda", "stepfunctions", "logs"))

    def one(key: str) -> str:
        """Create or update one function and publish its version; its version's ARN."""
        spec = function_spec(target, stack, key, lambda_role, code, environment)
        ensure_log_group(logs, f"/aws/lambda/{spec.name}", stack.tags)
        ensure_function(lam, spec)
        version = ensure_version(lam, spec.name)
        if on_function is not None:
            on_function(key, version)
        return version

    with ThreadPoolExecutor(max_workers=len(HANDLERS)) as pool:  # four independent functions: deployed side by side
        arns.update(zip(HANDLERS, pool.map(one, HANDLERS)))
    machine_arn = f"arn:aws:states:{target.region}:{account}:stateMachine:{stack.state_machine_name}"
    unversioned = [arn.rsplit(":", 1)[0] if arn.rsplit(":", 1)[-1].isdigit() else arn for arn in arns.values()]
    states_policy = iam_docs.states_policy(bucket=stack.bucket, function_arns=unversioned, state_machine_arn=machine_arn)
    states_role = ensure_role(iam, f"{stack.name}-states", iam_docs.STATES_TRUST, states_policy, stack.tags)
    definition = render({PLACEHOLDER_OF[k]: v for k, v in arns.items()}, stack.max_concurrency)
    machine = ensure_state_machine(sfn, stack.state_machine_name, definition, states_role, stack.tags)
    logger.info("deployed %s to %s (state machine %s)", stack.name, target.name, machine)
    return Deployment(state_machine_arn=machine, function_arns=arns, bucket=stack.bucket)


def upload_files(s3: Any, bucket: str, prefix: str, paths: list[Path], progress: Callable[[int], None] | None = None, tags: dict[str, str] | None = None) -> list[str]:
    """Upload partition files under ``prefix`` keeping their names, several at once (one boto3 transfer manager for
    them all: multipart where a file is large); return the keys."""
    from boto3.s3.transfer import TransferConfig, create_transfer_manager

    from cosmicai.execute import TRANSFER_THREADS

    extra = {"Tagging": "&".join(f"{k}={v}" for k, v in tags.items())} if tags else None
    keys = [f"{prefix.rstrip('/')}/{path.name}" for path in paths]
    with create_transfer_manager(s3, TransferConfig(max_concurrency=TRANSFER_THREADS)) as manager:
        uploads = [manager.upload(str(path), bucket, key, extra_args=extra) for path, key in zip(paths, keys)]
        for upload in uploads:
            upload.result()
            if progress:
                progress(1)
    return keys


def upload_model_folder(s3: Any, bucket: str, name: str, folder: Path, tags: dict[str, str] | None = None) -> str:
    """Upload a model folder under scripts/<name>/, its manifest (with the content digest) last."""
    from inference.modelfiles import MANIFEST, manifest

    prefix = f"scripts/{name}"
    listing = manifest(folder, name)
    for file in listing["files"]:
        put_tagged(s3, bucket, f"{prefix}/{file}", (folder / file).read_bytes(), tags or {})
    put_tagged(s3, bucket, f"{prefix}/{MANIFEST}", json.dumps(listing, indent=1).encode(), tags or {})
    return prefix
