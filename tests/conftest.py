"""Shared fixtures: one target and one deployment per test session.

``--target`` chooses where the functional tests run: ``embedded`` (default: an
in-process emulator), or ``localstack`` (an already running one: AWS_ENDPOINT_URL,
LOCALSTACK_HOST, else http://127.0.0.1:4566; skipped with the reason when it is
not up); never ``aws`` (tests/aws is the opt-in live suite). ``tests/integration`` overrides ``target`` and ``deployment`` with a
LocalStack it starts itself (testcontainers). Tests marked ``embedded_only``
look inside the embedded engine and are skipped on any other target.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

EMBEDDED_ONLY = "embedded_only"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--target", default="embedded", help="embedded (default), localstack or aws")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{EMBEDDED_ONLY}: looks inside the embedded target's engine (worker pool, in-process emulator); skipped on other targets")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture starts an engine: embedded-only tests skip on other targets."""
    name = item.config.getoption("--target")
    if name != "embedded" and item.get_closest_marker(EMBEDDED_ONLY):
        pytest.skip(f"embedded target only (this run's target: {name})")


@pytest.fixture(scope="session")
def emulator(request: pytest.FixtureRequest):
    """The session's embedded emulator (moto + worker pool)."""
    from emulator.embedded import EmbeddedEmulator

    name = request.config.getoption("--target")
    if name != "embedded":
        pytest.skip(f"the embedded emulator is not used on target {name!r}")
    os.environ.pop("COSMICAI_ENDPOINT", None)
    running = EmbeddedEmulator(capacity=2).start()
    request.addfinalizer(running.stop)
    return running


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest):
    """TargetSettings of this run's target, with a live endpoint (the one fixture every pipeline test uses)."""
    from cosmicai.targets import TargetUnavailable, check_ready, resolve

    name = request.config.getoption("--target")
    if name == "embedded":
        emulator = request.getfixturevalue("emulator")
        return replace(resolve("embedded", endpoint=emulator.endpoint_url), in_process=False)
    if name == "aws":
        pytest.skip("the functional tests never deploy to AWS (it costs money): tests/aws holds the opt-in live suite")
    settings = resolve(name)
    try:
        check_ready(settings)
    except (TargetUnavailable, NotImplementedError) as exc:
        pytest.skip(f"target {name!r} is not available: {exc}")
    return settings


@pytest.fixture(scope="session")
def tiny_stack():
    from cosmicai.deploy import Stack

    return Stack(name="cosmicai-test", bucket="cosmicai-test", infer_memory_mb=2048, infer_timeout_s=120, max_concurrency=2)


@pytest.fixture(scope="session")
def deployment(target, tiny_stack):
    from cosmicai.deploy import deploy

    return deploy(target, tiny_stack)


@pytest.fixture()
def tiny_partitions(tmp_path: Path) -> Path:
    """Four partitions of 24 samples (dict format), 1.pt..4.pt."""
    from inference.data import generate, split

    folder = tmp_path / "parts"
    split(generate(96, seed=3), folder, partitions=4)
    return folder
