"""Shared fixtures: one engine and one deployment per target per test session.

``--target`` names the targets the functional tests run on, comma-separated:
``embedded`` (an in-process emulator) and ``localstack`` (real LocalStack 4.14.0
in host mode, started here once per session on a free loopback port with our
Lambda runtime executor: ``emulator.localstack_host``); default both. Every test
that uses the ``target`` fixture runs once per target. LocalStack is skipped,
with the reason, only where no Python >= 3.13 exists (or it cannot be installed).
``--target localstack`` with ``LOCALSTACK_ENDPOINT`` set uses that running
LocalStack instead (e.g. ``docker compose up``'s). ``aws`` is never a target here:
tests/aws holds the opt-in live suite. Tests marked ``embedded_only`` look inside
the embedded engine and are skipped on other targets, with the marker's reason.
``tests/integration`` (LocalStack in Docker, via testcontainers) has its own fixtures.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

EMBEDDED_ONLY = "embedded_only"
TARGETS = ("embedded", "localstack")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--target", default=",".join(TARGETS), help="targets of the functional tests, comma-separated: embedded, localstack (default both)")


def pytest_configure(config: pytest.Config) -> None:
    # The session's own state folder: never a user's running emulator or LocalStack, and ours is never theirs.
    # What is installed (LocalStack's venv, $COSMICAI_CACHE) is shared.
    config._cosmicai_home = tempfile.mkdtemp(prefix="cosmicai-test-home-")  # type: ignore[attr-defined]
    os.environ["COSMICAI_HOME"] = config._cosmicai_home  # type: ignore[attr-defined]
    config.addinivalue_line("markers", f"{EMBEDDED_ONLY}(reason): looks inside the embedded target's engine; skipped on other targets with the reason")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(getattr(config, "_cosmicai_home", ""), ignore_errors=True)


def _targets(config: pytest.Config) -> list[str]:
    names = [name.strip() for name in config.getoption("--target").split(",") if name.strip()]
    unknown = [name for name in names if name not in TARGETS + ("aws",)]
    if unknown:
        raise pytest.UsageError(f"--target: unknown target(s) {', '.join(unknown)}; valid: {', '.join(TARGETS)}")
    return names


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each test that uses ``target`` runs once per target (tests/integration brings its own)."""
    if "target" in metafunc.fixturenames and "integration" not in Path(str(metafunc.definition.path)).parts:
        names = _targets(metafunc.config)
        metafunc.parametrize("target", names, ids=names, indirect=True, scope="session")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture starts an engine: embedded-only tests skip on other targets, saying why."""
    params = getattr(item, "callspec", None)
    name = params.params.get("target") if params else None
    marker = item.get_closest_marker(EMBEDDED_ONLY)
    if marker and name not in (None, "embedded"):
        reason = marker.args[0] if marker.args else marker.kwargs.get("reason", "looks inside the embedded engine")
        pytest.skip(f"embedded target only: {reason}")


@pytest.fixture(scope="session")
def emulator():
    """The session's embedded emulator (moto + worker pool)."""
    from emulator.embedded import EmbeddedEmulator

    os.environ.pop("COSMICAI_ENDPOINT", None)
    running = EmbeddedEmulator(capacity=2).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def localstack_endpoint():
    """A host-mode LocalStack for the session (or the one LOCALSTACK_ENDPOINT names); its endpoint."""
    given = os.environ.get("LOCALSTACK_ENDPOINT")
    if given:
        yield given
        return
    from emulator import localstack_host as host
    from emulator.embedded import free_port

    try:
        host.find_python()
    except host.LocalStackUnavailable as exc:
        pytest.skip(f"LocalStack target: {exc}")
    port = free_port()
    try:
        state = host.start(port)
    except host.LocalStackUnavailable as exc:
        pytest.fail(f"host-mode LocalStack did not start: {exc}")
    yield state["endpoint"]
    host.stop(port)


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest):
    """TargetSettings of this test's target, with a live endpoint (the one fixture every pipeline test uses)."""
    from cosmicai.targets import check_ready, resolve

    name = getattr(request, "param", None) or _targets(request.config)[0]
    if name == "embedded":
        emulator = request.getfixturevalue("emulator")
        return replace(resolve("embedded", endpoint=emulator.endpoint_url), in_process=False)
    if name == "aws":
        pytest.skip("the functional tests never deploy to AWS (it costs money): tests/aws holds the opt-in live suite")
    settings = resolve(name, endpoint=request.getfixturevalue("localstack_endpoint"))
    check_ready(settings)  # the session started it: not ready is a failure, not a skip
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
    """Four partitions of 24 samples, 1.pt..4.pt (the reference's layout)."""
    from inference.data import generate, split

    folder = tmp_path / "parts"
    split(generate(96, seed=3), folder, partitions=4)
    return folder
