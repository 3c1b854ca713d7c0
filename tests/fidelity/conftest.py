"""Fixtures of the fidelity tests: plain boto3 clients on the test's target, and throwaway functions and roles.

A test asserts AWS's documented behaviour and names its row of the fidelity
table (``@pytest.mark.fidelity("row-id")``, rows in ``fidelity_rows.py``); where
the row says a target differs, the test is expected to fail there (strict xfail).
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from typing import Any, Callable

import boto3
import pytest
from botocore.config import Config

from fidelity_rows import row


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fidelity(row_id): the fidelity-table row (tests/fidelity/fidelity_rows.py) this test asserts")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        marker = item.get_closest_marker("fidelity")
        if marker is None:
            continue
        params = getattr(item, "callspec", None)
        target = params.params.get("target") if params else None
        reason = row(marker.args[0]).differs.get(target or "")
        if reason:
            item.add_marker(pytest.mark.xfail(strict=True, reason=f"{target} differs from AWS: {reason}"))


@pytest.fixture()
def aws(target) -> Callable[..., Any]:
    """``aws("lambda")``: a plain boto3 client on the target (no retries: what a call answers is what the test sees)."""

    def client(service: str, **config: Any) -> Any:
        return boto3.client(
            service,
            endpoint_url=target.endpoint_url,
            region_name=target.region,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(retries={"total_max_attempts": 1}, read_timeout=config.pop("read_timeout", 120), **config),
        )

    return client


@pytest.fixture()
def role_arn(aws) -> str:
    name = f"fidelity-{uuid.uuid4().hex[:8]}"
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    return aws("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]


def zip_of(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


@pytest.fixture()
def make_function(aws, role_arn) -> Callable[..., str]:
    """``make_function({"app.py": source}, handler="app.handler", **create_function_args)``: a new zip function, active; its name."""
    lam = aws("lambda")
    made: list[str] = []

    def make(files: dict[str, str], handler: str = "app.handler", **kwargs: Any) -> str:
        name = f"fidelity-{uuid.uuid4().hex[:10]}"
        lam.create_function(FunctionName=name, Runtime=kwargs.pop("Runtime", "python3.12"), Role=role_arn, Handler=handler,
                            Code={"ZipFile": zip_of(files)}, **kwargs)
        lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        made.append(name)
        return name

    yield make
    for name in made:
        try:
            lam.delete_function(FunctionName=name)
        except Exception:  # noqa: BLE001 - cleanup of a throwaway function never fails a test
            pass
