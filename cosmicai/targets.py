"""Targets: where the pipeline runs. Settings are resolved once into a frozen dataclass.

Order of precedence: explicit argument, then environment variable, then default.
The switch between targets is an endpoint and credentials, nothing more:
handler code never branches on the target.

==============  =============================================  =====================
target          endpoint                                       packaging
==============  =============================================  =====================
``embedded``    moto in this process (or ``cosmicai emulator   zip of the handlers,
                up``: ``AWS_ENDPOINT_URL``/``--endpoint``)       run by our worker pool
``localstack``  ``AWS_ENDPOINT_URL``, else ``LOCALSTACK_HOST``,  zip (host mode: run by
                else ``cosmicai localstack up``'s, else         our executor; Docker:
                ``http://127.0.0.1:4566``                       the inference image)
``aws``         none (botocore's standard chain)               container image
==============  =============================================  =====================
"""

from __future__ import annotations

import functools
import json
import os
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable

import boto3
from botocore.config import Config

DEFAULT_REGION = "us-east-1"
DUMMY_CREDENTIALS = ("test", "test")
EMULATOR_PORT = 4566

# The localstack target. compose.yaml holds the same names (tests/unit/test_compose.py checks them).
LOCALSTACK_IMAGE = "localstack/localstack:4.14.0"  # the last community image that starts without LOCALSTACK_AUTH_TOKEN
RUNTIME_IMAGE = "localhost:5000/cosmicai-runtime:0.1.0"  # inference/Dockerfile, pushed to compose's registry
LOCALSTACK_ZIP_RUNTIME = "python3.12"  # mapped to RUNTIME_IMAGE by LAMBDA_RUNTIME_IMAGE_MAPPING
LOCALSTACK_SERVICES = ("s3", "lambda", "stepfunctions", "iam", "logs", "sts")  # what deploy and execute call
LOCALSTACK_HEALTH_TIMEOUT_S = 3.0  # connect + read of GET /_localstack/health: fail fast, never hang
LOCALSTACK_START = (
    "start it with 'cosmicai localstack up --detach' (host mode, no Docker) or 'docker compose up -d --wait' in the project "
    "folder (Docker), or point --endpoint / AWS_ENDPOINT_URL at a running LocalStack"
)


class TargetUnavailable(RuntimeError):
    """The target's engine cannot be reached; the message says how to start it."""


class UnknownTarget(ValueError):
    """A target name that is not registered."""


@dataclass(frozen=True)
class TargetSettings:
    """Everything that differs between targets, resolved once."""

    name: str
    endpoint_url: str | None  # None: real AWS endpoints
    region: str
    credentials: tuple[str, str] | None  # None: botocore's standard chain
    packaging: str  # "zip" or "image"
    in_process: bool  # start an embedded emulator for the duration of the command
    zip_runtime: str | None = None  # Lambda runtime of the zip functions (None: the stack's, python3.11)

    def session(self) -> boto3.Session:
        return _session(self.credentials, self.region)

    def client(self, service: str) -> Any:
        """One client per target and service in this process (clients are thread-safe; building one costs ~0.1 s)."""
        return _client(self, service)


_LOCK = threading.Lock()


@functools.lru_cache(maxsize=None)
def _session(credentials: tuple[str, str] | None, region: str) -> boto3.Session:
    if credentials:
        key, secret = credentials
        return boto3.Session(aws_access_key_id=key, aws_secret_access_key=secret, region_name=region)
    return boto3.Session(region_name=region)


@functools.lru_cache(maxsize=None)
def _client_cached(settings: "TargetSettings", service: str) -> Any:
    # Timeouts in proportion: an emulator on loopback answers in milliseconds, so a silent one is an error
    # within tens of seconds naming its endpoint; AWS gets botocore's usual patience.
    if settings.endpoint_url:
        config = Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=3, read_timeout=30)
    else:
        config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=10, read_timeout=120)
    return settings.session().client(service, endpoint_url=settings.endpoint_url, config=config)


def _client(settings: "TargetSettings", service: str) -> Any:
    with _LOCK:  # a boto3 Session is not thread-safe while it builds clients
        return _client_cached(settings, service)


def _region(region: str | None) -> str:
    return region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def embedded(endpoint: str | None = None, region: str | None = None) -> TargetSettings:
    """The embedded target: the given endpoint, else the emulator ``cosmicai emulator up`` registered, else in-process.

    A registered emulator that does not answer is an error saying so, never a silent in-process fallback.
    """
    url = endpoint or os.environ.get("COSMICAI_ENDPOINT")
    if url is None:
        from emulator.server import healthy, registered

        state = registered()  # an emulator started with `cosmicai emulator up`, its process alive
        if state is not None:
            if not healthy(state["endpoint"]):
                raise TargetUnavailable(
                    f"the emulator registered at {state['endpoint']} (pid {state['pid']}) does not answer: "
                    "stop it with 'cosmicai emulator down', or pass --endpoint"
                )
            url = state["endpoint"]
    return TargetSettings("embedded", url, _region(region), DUMMY_CREDENTIALS, "zip", in_process=url is None)


def localstack(endpoint: str | None = None, region: str | None = None) -> TargetSettings:
    host = os.environ.get("LOCALSTACK_HOST")
    url = endpoint or os.environ.get("AWS_ENDPOINT_URL") or (f"http://{host}" if host and "://" not in host else host)
    if url is None:
        from emulator.localstack_host import running

        state = running()  # a host-mode LocalStack started with `cosmicai localstack up`
        url = state["endpoint"] if state else f"http://127.0.0.1:{EMULATOR_PORT}"
    # python3.12: the runtime LocalStack maps to the inference image (compose.yaml), whose AL2023 base has the
    # glibc >= 2.28 that torch 2.13's wheels need (the python3.11 base image is Amazon Linux 2, glibc 2.26)
    return TargetSettings("localstack", url, _region(region), DUMMY_CREDENTIALS, "zip", in_process=False, zip_runtime=LOCALSTACK_ZIP_RUNTIME)


def aws(endpoint: str | None = None, region: str | None = None) -> TargetSettings:
    if endpoint:
        raise ValueError("the aws target takes no endpoint: it uses AWS's own")
    return TargetSettings("aws", None, _region(region), None, "image", in_process=False)


def check_ready(settings: TargetSettings) -> None:
    """Fail fast, with the fix, when the target cannot run the pipeline now."""
    if settings.name == "embedded":
        if settings.endpoint_url and not settings.in_process:
            from emulator.server import healthy

            if not healthy(settings.endpoint_url, timeout_s=5.0):
                raise TargetUnavailable(f"no embedded emulator answers at {settings.endpoint_url}: start one with 'cosmicai emulator up --detach', or fix --endpoint")
        return
    if settings.name == "aws":
        _check_aws(settings)
        return
    if settings.name == "localstack":
        _check_localstack(settings)
        return
    raise NotImplementedError(f"target {settings.name!r}: not built yet")


def localstack_health(endpoint: str, timeout_s: float = LOCALSTACK_HEALTH_TIMEOUT_S) -> dict[str, Any]:
    """LocalStack's ``GET /_localstack/health`` document; TargetUnavailable when nothing (or not LocalStack) answers."""
    url = f"{endpoint.rstrip('/')}/_localstack/health"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # a local endpoint: never through a proxy
    try:
        with opener.open(url, timeout=timeout_s) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise TargetUnavailable(
            f"{endpoint} answers but is not LocalStack (GET /_localstack/health: HTTP {exc.code}; "
            f"is 'cosmicai emulator up' using that port?): {LOCALSTACK_START}"
        ) from None
    except (OSError, ValueError) as exc:  # refused, timed out, unresolvable; a body that is not JSON
        reason = getattr(exc, "reason", None) or exc
        raise TargetUnavailable(f"LocalStack is not reachable at {endpoint} ({reason}): {LOCALSTACK_START}") from None
    if not isinstance(body, dict) or not isinstance(body.get("services"), dict):
        raise TargetUnavailable(f"{endpoint} answers but is not LocalStack (no services in /_localstack/health): {LOCALSTACK_START}")
    return body


def _check_localstack(settings: TargetSettings) -> None:
    """LocalStack answers its health check and every service the pipeline calls is available or running."""
    states = localstack_health(settings.endpoint_url or "")["services"]
    down = {name: states.get(name, "not enabled") for name in LOCALSTACK_SERVICES if states.get(name) not in ("available", "running")}
    if down:
        listed = ", ".join(f"{name} {state}" for name, state in down.items())
        raise TargetUnavailable(
            f"LocalStack at {settings.endpoint_url} is up but not ready ({listed}; SERVICES must include "
            f"{','.join(LOCALSTACK_SERVICES)}): {LOCALSTACK_START}"
        )


def _check_aws(settings: TargetSettings) -> None:
    """Credentials from botocore's standard chain, and an account that answers."""
    from botocore.exceptions import BotoCoreError, ClientError

    if settings.session().get_credentials() is None:
        raise TargetUnavailable(
            "no AWS credentials found (standard chain: environment, ~/.aws/credentials, SSO, instance role); "
            "run 'aws configure' or 'aws sso login', or set AWS_PROFILE"
        )
    try:
        settings.client("sts").get_caller_identity()
    except (BotoCoreError, ClientError) as exc:
        raise TargetUnavailable(f"AWS did not accept the credentials in region {settings.region}: {exc}") from None


TARGETS: dict[str, Callable[..., TargetSettings]] = {"embedded": embedded, "localstack": localstack, "aws": aws}


def resolve(name: str | None = None, *, endpoint: str | None = None, region: str | None = None) -> TargetSettings:
    """The settings of target ``name`` (default: $COSMICAI_TARGET, else embedded)."""
    name = name or os.environ.get("COSMICAI_TARGET") or "embedded"
    try:
        factory = TARGETS[name]
    except KeyError:
        raise UnknownTarget(f"unknown target {name!r}; valid targets: {', '.join(TARGETS)}") from None
    return factory(endpoint=endpoint, region=region)
