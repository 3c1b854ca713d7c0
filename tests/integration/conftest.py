"""LocalStack in a container (testcontainers' community module), for the pipeline tests in this folder.

One LocalStack per session, started with the settings compose.yaml gives it (read from compose.yaml,
so the two cannot drift), on its own Docker network, port 4566 published on 127.0.0.1 only. It
overrides the ``target`` and ``deployment`` fixtures of tests/conftest.py: the functional tests run
unchanged against it.

Needs, checked in this order, each a skip with one reason when absent (the suite never fails or
hangs for them): a Docker daemon (a 3 s ping first), the testcontainers package
(``pip install -e '.[docker]'``), the LocalStack image (present or pullable) and the runtime image
in a registry Docker can pull from (``docker compose up -d --wait`` builds and publishes it).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 180  # until LocalStack prints "Ready." (about 10 s; the 4.14.0 image ships its Lambda init, nothing to download)
GUIDE = "see README 'With Docker'"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before any fixture starts an engine: tests that look inside the embedded engine do not apply to LocalStack."""
    if item.get_closest_marker("embedded_only"):
        pytest.skip("embedded target only (this test runs on LocalStack)")


def compose_localstack() -> tuple[str, dict[str, str]]:
    """(image, environment) of compose.yaml's localstack service, ${VAR:-default} resolved as compose does."""
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed: pip install -e '.[test]'")
    service = yaml.safe_load((REPO / "compose.yaml").read_text())["services"]["localstack"]
    environment = {}
    for key, value in service.get("environment", {}).items():
        if value is None:  # a pass-through (LOCALSTACK_AUTH_TOKEN): set only when set here
            if os.environ.get(key):
                environment[key] = os.environ[key]
        else:
            environment[key] = interpolate(str(value))
    return interpolate(service["image"]), environment


def interpolate(text: str) -> str:
    """compose's ``${NAME:-default}`` and ``${NAME}``."""
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: os.environ.get(m.group(1)) or (m.group(2) or ""), text)


def _container_class() -> type:
    try:
        from testcontainers.community.localstack import LocalStackContainer  # testcontainers >= 4.15
    except ImportError:
        module = pytest.importorskip("testcontainers.localstack", reason="testcontainers is not installed: pip install -e '.[docker]'")
        LocalStackContainer = module.LocalStackContainer
    return LocalStackContainer


def _require_images(client: Any, localstack_image: str, runtime_image: str) -> None:
    import docker

    try:
        client.images.get(localstack_image)
    except docker.errors.ImageNotFound:
        try:
            client.images.pull(localstack_image)
        except docker.errors.DockerException as exc:
            pytest.skip(f"LocalStack image {localstack_image} is not present and cannot be pulled ({exc}); {GUIDE}")
    try:
        client.images.get_registry_data(runtime_image)
    except docker.errors.DockerException as exc:
        pytest.skip(f"runtime image {runtime_image} is not in a registry Docker can pull from ({exc}): run 'docker compose up -d --wait' first; {GUIDE}")


@pytest.fixture(scope="session")
def localstack_container(request: pytest.FixtureRequest) -> Any:
    """A started LocalStackContainer (session scope)."""
    from cosmicai.doctor import docker_daemon
    from cosmicai.targets import RUNTIME_IMAGE

    daemon = docker_daemon(timeout_s=3.0)
    if not daemon.ok:
        pytest.skip(f"LocalStack integration tests need Docker: {daemon.detail}; {GUIDE}")
    container_class = _container_class()
    import docker
    from testcontainers.core.network import Network

    image, environment = compose_localstack()
    client = docker.from_env(timeout=60)
    request.addfinalizer(client.close)
    _require_images(client, image, RUNTIME_IMAGE)

    network = Network().create()
    container = container_class(image=image, region_name="us-east-1")
    container.ports["4566"] = ("127.0.0.1", None)  # loopback only, a free port (compose: 127.0.0.1:4566)
    container.with_volume_mapping("/var/run/docker.sock", "/var/run/docker.sock", "rw")
    container.with_network(network)
    for key, value in environment.items():
        container.with_env(key, value)
    container.with_env("LAMBDA_DOCKER_NETWORK", network.name)  # compose names its own network; this one is ours
    request.addfinalizer(lambda: _stop(client, container, network))
    container.start(timeout=START_TIMEOUT_S)
    return container


def _stop(client: Any, container: Any, network: Any) -> None:
    """Stop LocalStack gracefully (it removes its Lambda containers), then anything left on its network."""
    import docker

    try:
        wrapped = container.get_wrapped_container()
        if wrapped is not None:
            wrapped.stop(timeout=20)
        container.stop()
    except docker.errors.DockerException:
        pass
    try:
        for leftover in client.containers.list(all=True, filters={"network": network.name}):
            leftover.remove(force=True)
        network.remove()
    except docker.errors.DockerException:
        pass


@pytest.fixture(scope="session")
def emulator():
    pytest.skip("the embedded emulator is not used on the localstack target")


@pytest.fixture(scope="session")
def target(localstack_container: Any):
    """The localstack target at the container's endpoint (overrides tests/conftest.py's)."""
    from cosmicai.targets import check_ready, localstack

    settings = localstack(endpoint=localstack_container.get_url(), region="us-east-1")
    check_ready(settings)  # the container is up: a service that is not available is a failure, not a skip
    return settings


@pytest.fixture(scope="session")
def deployment(target, tiny_stack):
    """The pipeline deployed into this LocalStack (its own cache: the embedded session's is another deployment)."""
    from cosmicai.deploy import deploy

    return deploy(target, tiny_stack)
