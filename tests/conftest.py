"""Shared fixtures: one embedded emulator and one deployment per test session.

``--target`` chooses where the functional tests run (embedded by default);
other targets skip with a reason when their engine is not reachable.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--target", default="embedded", help="embedded (default), localstack or aws")


@pytest.fixture(scope="session")
def emulator(request: pytest.FixtureRequest):
    """The session's embedded emulator (moto + worker pool)."""
    from emulator.embedded import EmbeddedEmulator

    name = request.config.getoption("--target")
    if name != "embedded":
        pytest.skip(f"target {name!r}: functional tests run on the embedded target in this version")
    os.environ.pop("COSMICAI_ENDPOINT", None)
    running = EmbeddedEmulator(capacity=2).start()
    request.addfinalizer(running.stop)
    return running


@pytest.fixture(scope="session")
def target(emulator):
    """TargetSettings with the live endpoint of the session's emulator."""
    from emulator.targets import resolve

    return replace(resolve("embedded", endpoint=emulator.endpoint_url), in_process=False)


@pytest.fixture(scope="session")
def tiny_stack():
    from emulator.deploy import Stack

    return Stack(name="cosmicai-test", bucket="cosmicai-test", infer_memory_mb=2048, infer_timeout_s=120, max_concurrency=2)


@pytest.fixture(scope="session")
def deployment(target, tiny_stack):
    from emulator.deploy import deploy

    return deploy(target, tiny_stack)


@pytest.fixture()
def tiny_partitions(tmp_path: Path) -> Path:
    """Four partitions of 24 samples (dict format), 1.pt..4.pt."""
    from inference.data import generate, split

    folder = tmp_path / "parts"
    split(generate(96, seed=3), folder, partitions=4)
    return folder
