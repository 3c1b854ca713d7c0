"""compose.yaml and inference/Dockerfile, checked without Docker: pins, loopback-only ports, the socket,
and that the names which must agree (image, runtime, network, version) do."""

from __future__ import annotations

import json
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest

from cosmicai import targets
from cosmicai.deploy import HANDLERS

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed: pip install -e '.[test]'")

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
LOCALSTACK = SERVICES["localstack"]
ENV = LOCALSTACK["environment"]
DOCKERFILE = (REPO / "inference" / "Dockerfile").read_text()
VERSION = re.search(r'^version = "([^"]+)"$', (REPO / "pyproject.toml").read_text(), re.M).group(1)
SOCKET = "/var/run/docker.sock:/var/run/docker.sock"


def _default(value: str) -> str:
    """The default of compose's ${NAME:-default}, or the value itself."""
    match = re.fullmatch(r"\$\{(\w+):-([^}]+)\}", value)
    return match.group(2) if match else value


def _instructions(text: str) -> list[str]:
    """Dockerfile instructions, continuation lines joined, comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return [re.sub(r"\s+", " ", part).strip() for part in re.sub(r"\\\n", " ", "\n".join(lines)).splitlines() if part.strip()]


def _pip_pins() -> dict[str, str]:
    """name -> version of every `pip install ... name==version` in the Dockerfile."""
    pins = {}
    for instruction in _instructions(DOCKERFILE):
        if instruction.startswith("RUN ") and "pip install" in instruction:
            for name, version in re.findall(r"(?<![\w-])([A-Za-z][\w.-]*)==([\w.+]+)", instruction):
                pins[name.lower().replace("_", "-")] = version
    return pins


# -- compose.yaml ----------------------------------------------------------------------------


def test_localstack_image_is_pinned_to_4_14_0_and_overridable():
    assert LOCALSTACK["image"] == "${LOCALSTACK_IMAGE:-localstack/localstack:4.14.0}"
    assert _default(LOCALSTACK["image"]) == targets.LOCALSTACK_IMAGE


def test_every_published_port_is_on_loopback_only():
    published = [(name, port) for name, service in SERVICES.items() for port in service.get("ports", [])]
    assert published, "LocalStack's gateway must be published"
    for name, port in published:
        host_ip = port["host_ip"] if isinstance(port, dict) else str(port).split(":")[0]
        assert host_ip == "127.0.0.1", (name, port)
    assert "127.0.0.1:4566:4566" in LOCALSTACK["ports"]


def test_localstack_has_the_docker_socket():
    assert SOCKET in LOCALSTACK["volumes"]


def test_runtime_mapping_names_the_image_compose_builds_for_the_zip_runtime():
    runtime = SERVICES["runtime"]
    assert runtime["build"] == {"context": ".", "dockerfile": "inference/Dockerfile"}
    assert json.loads(ENV["LAMBDA_RUNTIME_IMAGE_MAPPING"]) == {targets.LOCALSTACK_ZIP_RUNTIME: runtime["image"]}
    assert runtime["image"] == targets.RUNTIME_IMAGE == f"localhost:5000/cosmicai-runtime:{VERSION}"
    assert targets.localstack().zip_runtime == targets.LOCALSTACK_ZIP_RUNTIME


def test_the_runtime_image_reaches_a_registry_localstack_can_pull_from():
    """LocalStack pulls the mapped image before it creates a function: it must be in a registry."""
    registry, publish = SERVICES["registry"], SERVICES["publish"]
    assert registry["image"].startswith("registry:2.") and registry["ports"] == ["127.0.0.1:5000:5000"]
    assert "healthcheck" in registry
    assert publish["command"][:2] == ["docker", "push"] and publish["command"][-1] == targets.RUNTIME_IMAGE
    assert SOCKET in publish["volumes"]
    assert publish["depends_on"]["runtime"] == {"condition": "service_completed_successfully"}
    assert LOCALSTACK["depends_on"]["publish"] == {"condition": "service_completed_successfully"}
    assert LOCALSTACK["depends_on"]["registry"] == {"condition": "service_healthy"}


def test_lambda_containers_join_the_compose_network_by_its_name():
    network = ENV["LAMBDA_DOCKER_NETWORK"]
    assert COMPOSE["networks"]["cosmicai"]["name"] == network
    assert "cosmicai" in LOCALSTACK["networks"]


def test_localstack_settings_for_the_pipeline():
    assert set(ENV["SERVICES"].split(",")) >= set(targets.LOCALSTACK_SERVICES)
    assert int(ENV["LAMBDA_RUNTIME_ENVIRONMENT_TIMEOUT"]) >= 60  # a cold start imports torch; the default is 20 s
    assert int(ENV["LAMBDA_KEEPALIVE_MS"]) > 0
    assert ENV["LOCALSTACK_AUTH_TOKEN"] is None  # passed through from the shell, never written here
    test = " ".join(LOCALSTACK["healthcheck"]["test"])
    assert "/_localstack/health" in test
    assert all(service in test for service in targets.LOCALSTACK_SERVICES)


def test_one_shot_services_are_awaited_so_up_wait_returns():
    """`docker compose up --wait` waits for a one-shot service only when another depends on its completion."""
    for name in ("runtime", "publish"):
        assert any(s.get("depends_on", {}).get(name, {}).get("condition") == "service_completed_successfully" for s in SERVICES.values()), name


# -- inference/Dockerfile --------------------------------------------------------------------


def test_dockerfile_base_is_the_lambda_python_image_of_the_mapped_runtime():
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", DOCKERFILE, re.M).group(1)
    python = targets.LOCALSTACK_ZIP_RUNTIME.removeprefix("python")
    assert base == f"public.ecr.aws/lambda/python:{python}"
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", DOCKERFILE, re.M)


def test_dockerfile_pins_cpu_torch_from_the_cpu_index_only():
    torch_lines = [i for i in _instructions(DOCKERFILE) if "torch==" in i]
    assert len(torch_lines) == 1
    line = torch_lines[0]
    assert "torch==2.13.0" in line and "--index-url https://download.pytorch.org/whl/cpu" in line
    assert "--extra-index-url" not in DOCKERFILE  # PyPI's torch wheel for Linux is the CUDA build


def test_dockerfile_installs_no_cuda_package():
    installs = " ".join(i for i in _instructions(DOCKERFILE) if i.startswith("RUN ") and "pip install" in i)
    assert not re.search(r"nvidia|cuda|cudnn|triton|whl/cu\d", installs, re.I)
    assert all(not re.match(r"(nvidia|triton|cuda)", name) for name in _pip_pins())
    assert "grep -Ei '^(nvidia-|triton|cuda)'" in DOCKERFILE  # and the build fails if one came in anyway


def test_dockerfile_pins_every_package_it_installs():
    for instruction in _instructions(DOCKERFILE):
        if instruction.startswith("RUN ") and "pip install" in instruction and "/tmp/cosmicai" not in instruction:
            assert "--no-deps" in instruction, instruction
            words = [w for w in instruction.split("&&")[0].split() if not w.startswith("-") and w not in ("RUN", "pip", "install", "https://download.pytorch.org/whl/cpu")]
            assert all("==" in w for w in words), words


def test_pinned_packages_bring_all_their_requirements():
    """--no-deps makes the pin list the lock: every requirement of a pinned package must be pinned too."""
    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    pins = _pip_pins()
    environment = {**default_environment(), "python_version": "3.12", "python_full_version": "3.12.0", "sys_platform": "linux", "platform_system": "Linux", "extra": ""}
    checked = 0
    for name in pins:
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue  # not installed here: nothing to read its requirements from
        checked += 1
        for text in requires:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate(environment):
                assert requirement.name.lower().replace("_", "-") in pins, f"{name} needs {requirement}"
    assert checked >= 5  # torch, boto3, pydantic, numpy, psutil at least are installed wherever the tests run


def test_dockerfile_installs_only_what_runs_in_lambda_readable_by_the_lambda_user():
    instructions = _instructions(DOCKERFILE)
    copies = [i for i in instructions if i.startswith("COPY ")]
    assert copies == ["COPY inference /tmp/inference"]  # not cosmicai/, emulator/ or stepfn/: they never run in Lambda
    assert any('cp -r /tmp/inference "$purelib/inference"' in i and "chmod -R a+rX" in i for i in instructions)
    assert "USER 993:993" in instructions and instructions[-2:] == ["USER root", 'CMD ["inference.infer.handler"]']
    assert "inference.infer.handler" in HANDLERS.values()


def test_dockerignore_keeps_the_context_to_what_the_image_copies():
    lines = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"
    assert [line for line in lines if line.startswith("!")] == ["!inference"]


def test_the_image_has_every_package_the_handlers_import():
    """A new third-party import under inference/ must be pinned in the Dockerfile too."""
    stdlib = set(sys.stdlib_module_names)
    modules = set()
    for path in (REPO / "inference").rglob("*.py"):
        modules |= {m.split(".")[0] for m in re.findall(r"^\s*(?:import|from)\s+([A-Za-z_][\w.]*)", path.read_text(), re.M)}
    third_party = sorted(m for m in modules if m not in stdlib and m != "inference" and not (REPO / "inference").joinpath(m).exists())
    distributions = metadata.packages_distributions()
    pins = _pip_pins()
    for module in third_party:
        names = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        assert names & set(pins), f"inference/ imports {module}, which inference/Dockerfile does not install"
