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
