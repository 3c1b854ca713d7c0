"""The localstack target without LocalStack: endpoint resolution, the health check against a stand-in
server, and `cosmicai run --target localstack` failing fast with the way to start it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from cosmicai.targets import LOCALSTACK_SERVICES, TargetUnavailable, check_ready, localstack, resolve

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def health_server():
    """A stand-in for LocalStack's gateway: GET /_localstack/health answers what the test sets."""
    answer = {"status": 200, "body": {}}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            body = json.dumps(answer["body"]).encode() if self.path == "/_localstack/health" else b"not found"
            self.send_response(answer["status"] if self.path == "/_localstack/health" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", answer
    server.shutdown()
    server.server_close()


def _healthy() -> dict:
    return {"services": {**{s: "available" for s in LOCALSTACK_SERVICES}, "lambda": "running"}, "edition": "community", "version": "4.14.0"}


def test_endpoint_comes_from_the_argument_then_aws_endpoint_url_then_localstack_host(monkeypatch, tmp_path):
    monkeypatch.setenv("COSMICAI_HOME", str(tmp_path))  # no host-mode LocalStack registered here
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("LOCALSTACK_HOST", raising=False)
    assert localstack().endpoint_url == "http://127.0.0.1:4566"
    monkeypatch.setenv("LOCALSTACK_HOST", "localhost.localstack.cloud:4566")
    assert localstack().endpoint_url == "http://localhost.localstack.cloud:4566"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4567")
    assert localstack().endpoint_url == "http://127.0.0.1:4567"
    settings = resolve("localstack", endpoint="http://10.0.0.5:4566")
    assert settings.endpoint_url == "http://10.0.0.5:4566"
    assert (settings.packaging, settings.credentials, settings.in_process, settings.zip_runtime) == ("zip", ("test", "test"), False, "python3.12")


def test_a_healthy_localstack_is_ready(health_server):
    url, answer = health_server
    answer["body"] = _healthy()
    check_ready(localstack(endpoint=url))


def test_a_service_that_is_not_up_is_named(health_server):
    url, answer = health_server
    answer["body"] = _healthy()
    answer["body"]["services"]["stepfunctions"] = "error"
    del answer["body"]["services"]["logs"]
    with pytest.raises(TargetUnavailable, match=r"stepfunctions error, logs not enabled.*docker compose up -d --wait"):
        check_ready(localstack(endpoint=url))


def test_something_that_is_not_localstack_is_told_apart(health_server):
    url, answer = health_server
    answer["status"] = 404
    with pytest.raises(TargetUnavailable, match="answers but is not LocalStack"):
        check_ready(localstack(endpoint=url))
    answer["status"], answer["body"] = 200, {"hello": "world"}
    with pytest.raises(TargetUnavailable, match="answers but is not LocalStack"):
        check_ready(localstack(endpoint=url))


def test_nothing_listening_fails_fast_with_the_way_to_start_it():
    url = f"http://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    with pytest.raises(TargetUnavailable) as caught:
        check_ready(localstack(endpoint=url))
    assert time.monotonic() - started < 3.5
    assert f"LocalStack is not reachable at {url}" in str(caught.value)
    assert "docker compose up -d --wait" in str(caught.value)


def test_cli_run_on_localstack_without_localstack_exits_2_in_under_10_seconds(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LOCALSTACK_", "COSMICAI_"))}
    env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{_free_port()}"
    env["COSMICAI_HOME"] = str(tmp_path / "home")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "cosmicai.cli", "run", "--target", "localstack", "--model", "tiny"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert done.returncode == 2, done.stderr
    assert elapsed < 10, elapsed
    assert "LocalStack is not reachable" in done.stderr and "docker compose up -d --wait" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "cosmicai-out").exists()  # nothing was started or written
