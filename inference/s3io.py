"""Small S3 helpers the handlers share: paginated listing and JSON/bytes objects.

The client is boto3's default chain: on AWS the function's role, under an
emulator the ``AWS_ENDPOINT_URL`` the runtime injects. Handler code never
branches on the target. Listings always paginate (no 1,000-key truncation).
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Any, Iterator

import boto3
from botocore.config import Config

from inference.constants import STACK

_RETRIES = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=32)


@lru_cache(maxsize=None)
def client() -> Any:
    """One S3 client per process (clients are thread-safe and costly to build)."""
    return boto3.client("s3", config=_RETRIES)


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


def put_bytes(bucket: str, key: str, body: bytes, content_type: str = "application/octet-stream") -> None:
    """One PutObject: S3 makes the object visible whole or not at all (atomic).

    Tagged with the deployment's stack (``COSMICAI_STACK``) so that destroy
    can tell the objects the pipeline wrote from a user's own.
    """
    extra = {"Tagging": f"cosmicai:stack={os.environ[STACK]}"} if os.environ.get(STACK) else {}
    client().put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type, **extra)


def put_json(bucket: str, key: str, value: Any) -> None:
    put_bytes(bucket, key, json.dumps(value, indent=1, default=str).encode(), "application/json")


def etag(bucket: str, key: str) -> str:
    return client().head_object(Bucket=bucket, Key=key)["ETag"]
