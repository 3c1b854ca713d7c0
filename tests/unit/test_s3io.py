"""Unit tests of inference.s3io, the handlers' S3 client: what its requests carry (botocore answered in-process)."""

from __future__ import annotations

import pytest
from botocore.awsrequest import AWSResponse

from inference import s3io


class _Raw:
    def stream(self, **_):
        yield b""


@pytest.fixture()
def sent(monkeypatch):
    """The requests the handlers' client sends, each answered 200 without a network."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    s3io.client.cache_clear()
    requests = []

    def answer(request, **_):
        requests.append(request)
        return AWSResponse(request.url, 200, {}, _Raw())

    s3io.client().meta.events.register_first("before-send", answer)
    yield requests
    s3io.client.cache_clear()


def test_puts_go_without_waiting_for_100_continue(sent):
    """botocore asks S3 for a 100 Continue before every PutObject body: a round trip per write, for writes of
    a few kilobytes (a rank's predictions and record). The handlers' client sends the body at once."""
    s3io.put_bytes("bucket", "ranks/0.json", b"{}")
    s3io.put_json("bucket", "ranks/1.json", {"rank": 1})
    assert len(sent) == 2
    assert all("Expect" not in request.headers for request in sent)
    assert [request.method for request in sent] == ["PUT", "PUT"]


def test_a_plain_boto3_client_would_have_waited(sent):
    """The behaviour removed above, so that a botocore upgrade that drops it (or renames its handler) shows here."""
    import boto3

    plain = boto3.client("s3")
    seen = []
    plain.meta.events.register_first("before-send", lambda request, **_: seen.append(request) or AWSResponse(request.url, 200, {}, _Raw()))
    plain.put_object(Bucket="bucket", Key="k", Body=b"{}")
    assert seen[0].headers.get("Expect") in (b"100-continue", "100-continue")


@pytest.mark.parametrize("in_lambda", [True, False])
def test_the_client_is_built_in_a_lambdas_init_phase_and_lazily_elsewhere(in_lambda):
    """In an execution environment (AWS_LAMBDA_FUNCTION_NAME set) importing the handlers builds the S3 client, as AWS
    advises, so no first invocation pays for it; elsewhere it waits for its first call (and that call's endpoint)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "AWS_LAMBDA_FUNCTION_NAME"}
    env.update(AWS_DEFAULT_REGION="us-east-1", **({"AWS_LAMBDA_FUNCTION_NAME": "cosmicai-initialize"} if in_lambda else {}))
    code = "import inference.handlers; from inference import s3io; print(s3io.client.cache_info().currsize)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == (["1"] if in_lambda else ["0"])
