"""`cosmicai doctor` on a machine without Docker, LocalStack or AWS credentials (made so, whatever
this machine has), and with stand-ins where a check would need the network."""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys

import pytest
from rich.console import Console

from cosmicai import doctor


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def bare(monkeypatch, tmp_path):
    """No Docker daemon, no LocalStack, no AWS credentials: nothing any check could reach off this machine."""
    for key in list(os.environ):
        if key.startswith(("AWS_", "DOCKER_", "LOCALSTACK_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-docker.sock")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")
    return tmp_path


def _render(checks: list[doctor.Check], monkeypatch) -> str:
    buffer = io.StringIO()
    monkeypatch.setattr(doctor, "_console", lambda: Console(file=buffer, width=240, color_system=None))
    doctor.render(checks)
    return buffer.getvalue()


def test_without_docker_it_says_so_and_how_to_fix_it(bare, monkeypatch):
    checks = {c.name: c for c in doctor.run_checks()}
    docker = checks["Docker daemon"]
    assert docker.status == doctor.MISSING and "no-docker.sock" in docker.detail
    assert "install and start Docker" in docker.fix
    assert checks["LocalStack image"].status == checks["runtime image"].status == doctor.UNKNOWN
    assert checks["LocalStack endpoint"].status == doctor.MISSING and "docker compose up -d --wait" in checks["LocalStack endpoint"].fix
    assert checks["AWS credentials"].status == doctor.MISSING and "none configured" in checks["AWS credentials"].detail
    assert checks["torch"].ok and checks["moto (embedded target)"].ok
    screen = _render(list(checks.values()), monkeypatch)
    assert "Docker daemon" in screen and "✗ missing" in screen and "fix: install and start Docker" in screen
    assert "embedded   │ yes" in screen and "localstack │ no" in screen


def test_exit_0_always_and_1_with_strict_when_something_is_missing(bare, monkeypatch):
    monkeypatch.setattr(doctor, "_console", lambda: Console(file=io.StringIO()))
    assert doctor.main(argparse.Namespace(endpoint=None, strict=False)) == 0
    assert doctor.main(argparse.Namespace(endpoint=None, strict=True)) == 1
    everything = [doctor.Check("torch", doctor.OK, "2.13.0"), doctor.Check("python", doctor.INFO, "3.11")]
    monkeypatch.setattr(doctor, "run_checks", lambda endpoint=None: everything)
    assert doctor.main(argparse.Namespace(endpoint=None, strict=True)) == 0


def test_credentials_show_the_account_never_the_keys(bare, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEYID0000")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")

    class Sts:
        def get_caller_identity(self):
            return {"Account": "123456789012", "Arn": "arn:aws:iam::123456789012:user/someone", "UserId": "AIDA"}

    import boto3

    calls = []
    monkeypatch.setattr(boto3.Session, "client", lambda self, service, **kw: calls.append((service, kw["endpoint_url"])) or Sts())
    check = doctor.aws_check(region="eu-west-1")
    assert check.ok and "account 123456789012" in check.detail and "source: env" in check.detail
    assert "AKIA" not in check.detail and "secret" not in check.detail
    assert calls == [("sts", "https://sts.eu-west-1.amazonaws.com")]  # AWS's own STS, not AWS_ENDPOINT_URL's emulator


def test_no_credentials_means_no_network_call(bare, monkeypatch):
    import boto3

    monkeypatch.setattr(boto3.Session, "client", lambda *a, **kw: pytest.fail("STS must not be called without credentials"))
    assert doctor.aws_check().status == doctor.MISSING


def test_the_command_prints_one_screen_and_exits_0(bare, tmp_path):
    done = subprocess.run([sys.executable, "-m", "cosmicai.cli", "doctor"], env={**os.environ, "COLUMNS": "200"}, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for name in ("torch", "Docker daemon", "LocalStack image", "LocalStack endpoint", "AWS credentials", "targets"):
        assert name in done.stdout, name
    assert "install and start Docker" in done.stdout


def test_docker_daemon_through_the_sdk_or_the_cli(monkeypatch):
    class Client:
        def ping(self):
            return True

        def version(self):
            return {"Version": "27.5.1"}

        def close(self):
            pass

    fake_sdk = type(sys)("docker")
    fake_sdk.from_env = lambda timeout: Client()
    monkeypatch.setitem(sys.modules, "docker", fake_sdk)
    check = doctor.docker_daemon()
    assert check.ok and "engine 27.5.1" in check.detail

    monkeypatch.setitem(sys.modules, "docker", None)  # the SDK is not installed: the CLI answers
    monkeypatch.setattr(doctor.shutil, "which", lambda name: "/usr/bin/docker")
    monkeypatch.setattr(doctor, "_run", lambda command, timeout: subprocess.CompletedProcess(command, 0, "28.0.1\n", ""))
    assert doctor.docker_daemon().ok
    refused = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n"
    monkeypatch.setattr(doctor, "_run", lambda command, timeout: subprocess.CompletedProcess(command, 1, "", refused))
    check = doctor.docker_daemon()
    assert check.status == doctor.MISSING and "Cannot connect to the Docker daemon" in check.detail and check.fix


@pytest.mark.parametrize(
    ("state", "in_registry", "status", "words"),
    [
        ((True, False, ""), False, doctor.OK, "present"),
        ((False, True, ""), False, doctor.OK, "pullable"),
        ((False, False, "manifest unknown"), False, doctor.MISSING, "neither present nor pullable (manifest unknown)"),
        ((True, True, ""), True, doctor.OK, "in its registry and present"),
        ((True, False, "connection refused"), True, doctor.MISSING, "built, but its registry does not have it"),
    ],
)
def test_images_present_or_pullable(monkeypatch, state, in_registry, status, words):
    monkeypatch.setattr(doctor, "_image_state", lambda image, always_ask_registry=False: state)
    daemon = doctor.Check("Docker daemon", doctor.OK, "fake")
    check = doctor.image_check("runtime image", "localhost:5000/cosmicai-runtime:0.1.0", daemon, pull_fix="docker compose up -d --wait", in_registry=in_registry)
    assert check.status == status and words in check.detail
    assert bool(check.fix) == (status == doctor.MISSING)
