"""Targets: where the pipeline runs. Settings are resolved once into a frozen dataclass.

Order of precedence: explicit argument, then environment variable, then default.
The switch between targets is an endpoint and credentials, nothing more:
handler code never branches on the target.

==============  =============================================  =====================
target          endpoint                                       packaging
==============  =============================================  =====================
``embedded``    moto in this process (or ``cosmicai emulator   zip of the handlers,
                up``: ``AWS_ENDPOINT_URL``/``--endpoint``)       run by our worker pool
``localstack``  ``AWS_ENDPOINT_URL``, else ``LOCALSTACK_HOST``  zip (runtime mapped to
                (default ``http://127.0.0.1:4566``)              the inference image)
``aws``         none (botocore's standard chain)               container image
==============  =============================================  =====================
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import boto3
from botocore.config import Config

DEFAULT_REGION = "us-east-1"
DUMMY_CREDENTIALS = ("test", "test")
EMULATOR_PORT = 4566


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

    def session(self) -> boto3.Session:
        if self.credentials:
            key, secret = self.credentials
            return boto3.Session(aws_access_key_id=key, aws_secret_access_key=secret, region_name=self.region)
        return boto3.Session(region_name=self.region)

    def client(self, service: str) -> Any:
        config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=900)
        return self.session().client(service, endpoint_url=self.endpoint_url, config=config)


def _region(region: str | None) -> str:
    return region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def embedded(endpoint: str | None = None, region: str | None = None) -> TargetSettings:
    url = endpoint or os.environ.get("COSMICAI_ENDPOINT")
    if url is None:
        from emulator.server import running

        state = running()  # an emulator started with `cosmicai emulator up`
        url = state["endpoint"] if state else None
    return TargetSettings("embedded", url, _region(region), DUMMY_CREDENTIALS, "zip", in_process=url is None)


def localstack(endpoint: str | None = None, region: str | None = None) -> TargetSettings:
    host = os.environ.get("LOCALSTACK_HOST")
    url = endpoint or os.environ.get("AWS_ENDPOINT_URL") or (f"http://{host}" if host and "://" not in host else host) or f"http://127.0.0.1:{EMULATOR_PORT}"
    return TargetSettings("localstack", url, _region(region), DUMMY_CREDENTIALS, "zip", in_process=False)


def aws(endpoint: str | None = None, region: str | None = None) -> TargetSettings:
    if endpoint:
        raise ValueError("the aws target takes no endpoint: it uses AWS's own")
    return TargetSettings("aws", None, _region(region), None, "image", in_process=False)


class TargetUnavailable(RuntimeError):
    """The target's engine cannot be reached; the message says how to start it."""


def check_ready(settings: TargetSettings) -> None:
    """Fail fast, with the fix, when the target cannot run the pipeline now."""
    if settings.name == "embedded":
        return
    if settings.name == "aws":
        _check_aws(settings)
        return
    raise NotImplementedError(f"target {settings.name!r}: not built yet (embedded only in this version)")


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
