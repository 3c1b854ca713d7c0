"""Small S3 helpers the handlers share: paginated listing and JSON/bytes objects.

The client is boto3's default chain: on AWS the function's role, under an
emulator the ``AWS_ENDPOINT_URL`` the runtime injects. Handler code never
branches on the target. Listings always paginate (no 1,000-key truncation).

Every S3 call of the process is timed, as the reference's Lambda code times
its own (botocore's ``before-call``/``after-call`` events), and charged to the
phase named by :func:`phase`; :func:`timings` gives the record's ``s3_*`` keys.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from functools import lru_cache
from typing import Any, Iterator

import boto3
from botocore.config import Config

from inference.constants import STACK

_RETRIES = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=32)


PHASES = {"data": "s3_data_download_s", "model": "s3_model_download_s", "result": "s3_result_upload_s"}


class _Timings:
    """Start and end (epoch seconds) of each S3 call, and the phase it belonged to."""

    def __init__(self) -> None:
        self.calls: list[tuple[str | None, float, float]] = []
        self.local = threading.local()
        self.lock = threading.Lock()

    def before(self, **_: Any) -> None:
        self.local.started = time.time()

    def after(self, **_: Any) -> None:
        started = getattr(self.local, "started", None)
        if started is not None:
            with self.lock:
                self.calls.append((getattr(self.local, "phase", None), started, time.time()))
            self.local.started = None


_TIMINGS = _Timings()


@lru_cache(maxsize=None)
def client() -> Any:
    """One S3 client per process (clients are thread-safe and costly to build); its calls are timed. Its PUTs send
    their body at once: botocore would first ask for a ``100 Continue`` (a round trip per write, on AWS as here),
    which pays off only for large bodies; the handlers write a rank's predictions and records (kilobytes)."""
    from botocore.handlers import add_expect_header

    s3 = boto3.client("s3", config=_RETRIES)
    s3.meta.events.unregister("before-call.s3", add_expect_header)
    s3.meta.events.register("before-call.s3", _TIMINGS.before)
    s3.meta.events.register("after-call.s3", _TIMINGS.after)
    return s3


def build_in_init() -> None:
    """Build the client now when this is a Lambda execution environment's init phase (``AWS_LAMBDA_FUNCTION_NAME``
    set: the handler module being imported), as AWS advises for SDK clients: the first invocation then does not pay
    for it (about 0.1 s: the S3 model and endpoint rules loaded). Elsewhere (tests, the CLI) it stays lazy, built
    with the environment of its first call."""
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        client()


def reset_timings() -> None:
    """Forget earlier calls (a warm worker starts each rank afresh)."""
    with _TIMINGS.lock:
        _TIMINGS.calls.clear()


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Charge this thread's S3 calls inside the block to ``name`` (data, model or result)."""
    previous = getattr(_TIMINGS.local, "phase", None)
    _TIMINGS.local.phase = name
    try:
        yield
    finally:
        _TIMINGS.local.phase = previous


def timings() -> dict[str, Any]:
    """The ``s3_*`` record keys over the calls since :func:`reset_timings`."""
    with _TIMINGS.lock:
        calls = list(_TIMINGS.calls)
    durations = [end - start for _, start, end in calls]
    keys: dict[str, Any] = {
        "s3_num_requests": len(calls),
        "s3_total_time": sum(durations),
        "s3_avg_time": sum(durations) / len(durations) if durations else None,
        "s3_min_time": min(durations, default=None),
        "s3_max_time": max(durations, default=None),
        "s3_first_request_time": calls[0][1] if calls else None,
        "s3_last_response_time": calls[-1][2] if calls else None,
    }
    for name, key in PHASES.items():
        keys[key] = sum(end - start for phase_name, start, end in calls if phase_name == name)
    return keys


def iter_keys(bucket: str, prefix: str) -> Iterator[str]:
    """Every key under prefix, following continuation tokens."""
    paginator = client().get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            yield obj["Key"]


def get_bytes(bucket: str, key: str) -> bytes:
    return client().get_object(Bucket=bucket, Key=key)["Body"].read()


def get_json(bucket: str, key: str) -> Any:
    return json.loads(get_bytes(bucket, key))


def put_bytes(bucket: str, key: str, body: bytes, content_type: str = "application/octet-stream", if_none_match: bool = False) -> None:
    """One PutObject: S3 makes the object visible whole or not at all (atomic).

    Tagged with the deployment's stack (``COSMICAI_STACK``) so that destroy
    can tell the objects the pipeline wrote from a user's own. ``if_none_match``:
    create only (S3's conditional write; ClientError PreconditionFailed if the key exists).
    """
    extra: dict[str, Any] = {"Tagging": f"cosmicai:stack={os.environ[STACK]}"} if os.environ.get(STACK) else {}
    if if_none_match:
        extra["IfNoneMatch"] = "*"
    client().put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type, **extra)


def put_json(bucket: str, key: str, value: Any, if_none_match: bool = False) -> None:
    put_bytes(bucket, key, json.dumps(value, indent=1, default=str).encode(), "application/json", if_none_match)


def etag(bucket: str, key: str) -> str:
    return client().head_object(Bucket=bucket, Key=key)["ETag"]
