"""Host-mode LocalStack's launcher without LocalStack: finding a Python, the settings, the loopback check."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from emulator import localstack_host as host


def test_no_python_313_is_one_clear_error_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv(host.PYTHON_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no python3.13 / python3.14 here
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))
    with pytest.raises(host.LocalStackUnavailable) as info:
        host.find_python()
    message = str(info.value)
    assert "needs Python >= 3.13" in message and "--python" in message and host.PYTHON_ENV in message
    assert "\n" not in message


def test_an_explicit_python_that_is_too_old_is_named(monkeypatch):
    with pytest.raises(host.LocalStackUnavailable, match=r"3\.11|3\.10|3\.12"):
        host.find_python(sys.executable) if sys.version_info < (3, 13) else pytest.skip("this Python is >= 3.13")


def test_pyenv_versions_are_found(tmp_path, monkeypatch):
    fake = tmp_path / "pyenv" / "versions" / "3.13.0" / "bin"
    fake.mkdir(parents=True)
    (fake / "python3.13").symlink_to(sys.executable)
    monkeypatch.delenv(host.PYTHON_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "pyenv"))
    candidates = [python for source, python in host._candidates(None) if source == "pyenv"]
    assert candidates == [str(fake / "python3.13")]


def test_host_mode_settings_bind_loopback_and_name_our_executor(tmp_path):
    env = host.host_mode_env(4599, tmp_path, "/venv/bin/python")
    assert env["GATEWAY_LISTEN"] == "127.0.0.1:4599" and env["LOCALSTACK_HOST"] == "127.0.0.1:4599"
    assert env["OVERRIDE_IN_DOCKER"] == "0" and env["GATEWAY_SERVER"] == "hypercorn" and env["DNS_ADDRESS"] == "0"
    assert env["LAMBDA_RUNTIME_EXECUTOR"] == host.EXECUTOR and env["COSMICAI_WORKER_PYTHON"] == "/venv/bin/python"
    assert set(env["SERVICES"].split(",")) >= {"s3", "lambda", "stepfunctions", "iam", "logs", "sts"}
    assert not any(k.startswith(("AWS_", "PYTHON")) for k in env)


def test_the_executor_is_registered_under_localstacks_entry_point_group():
    text = (host.project_root() / "pyproject.toml").read_text()
    assert '[project.entry-points."localstack.lambda.runtime_executor"]' in text
    assert f'{host.EXECUTOR} = "emulator.localstack_executor:ProcessRuntimeExecutorPlugin"' in text
    assert host.CONSTRAINTS.is_file() and "localstack-core==4.14.0" in host.CONSTRAINTS.read_text()


@pytest.mark.parametrize("bind, exposed", [("127.0.0.1", False), ("0.0.0.0", True)])
def test_listening_addresses_tell_loopback_from_every_interface(bind, exposed):
    server = subprocess.Popen([sys.executable, "-m", "http.server", "0", "--bind", bind], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            addresses = host.listening_addresses(server.pid)
            if addresses:
                break
            time.sleep(0.05)
        assert addresses, "the server never listened"
        assert bool(addresses - {"127.0.0.1", "::1"}) is exposed
    finally:
        server.kill()
        server.wait()
