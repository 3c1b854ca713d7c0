"""`cosmicai doctor`: one screen saying what this machine can run, each missing piece with its fix.

Checks, each bounded by a short timeout: torch (version, CUDA), moto, the Docker daemon, the LocalStack
and runtime images, the LocalStack endpoint's health, and AWS credentials (the account id through STS,
never the keys; no network call at all when no credentials are configured, and the instance metadata
service is never probed). Exit 0: it is a report. ``--strict`` exits 1 when something is missing.
Nothing is written.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from cosmicai import targets

OK, MISSING, UNKNOWN, INFO = "ok", "missing", "unknown", "info"
DOCKER_TIMEOUT_S = 3.0  # the daemon's ping
REGISTRY_TIMEOUT_S = 10.0  # asking a registry whether an image can be pulled
STS_CONNECT_TIMEOUT_S = 2.0
STS_READ_TIMEOUT_S = 4.0
INSTALL_DOCKER = (
    "install and start Docker (Linux: https://docs.docker.com/engine/install/ then 'sudo systemctl start docker'; "
    "macOS/Windows: Docker Desktop) and make its socket usable by you (the docker group, or rootless Docker); "
    "without Docker, the embedded target (the default) runs everything"
)


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    status: str  # ok | missing | unknown (cannot tell: something it needs is missing) | info
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.status == OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint", default=None, help="LocalStack endpoint to check (default: AWS_ENDPOINT_URL, LOCALSTACK_HOST, else http://127.0.0.1:4566)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when something is missing (default: always 0, it is a report)")


def main(args: argparse.Namespace) -> int:
    checks = run_checks(endpoint=args.endpoint)
    render(checks)
    missing = [c for c in checks if c.status == MISSING]
    return 1 if (args.strict and missing) else 0


# -- the checks ------------------------------------------------------------------------------


def run_checks(endpoint: str | None = None) -> list[Check]:
    docker = docker_daemon()
    localstack_image = os.environ.get("LOCALSTACK_IMAGE") or targets.LOCALSTACK_IMAGE
    return [
        python_check(),
        torch_check(),
        moto_check(),
        docker,
        image_check("LocalStack image", localstack_image, docker, pull_fix=f"docker pull {localstack_image} (docker compose up pulls it too)"),
        image_check(
            "runtime image", targets.RUNTIME_IMAGE, docker, in_registry=True,
            pull_fix="docker compose up -d --wait (builds inference/Dockerfile and pushes it to the registry on 127.0.0.1:5000)",
        ),
        localstack_python_check(),
        localstack_check(targets.localstack(endpoint=endpoint).endpoint_url or ""),
        aws_check(),
    ]


def localstack_python_check() -> Check:
    """A Python >= 3.13 for host-mode LocalStack, and whether its venv is installed yet."""
    from emulator import localstack_host as host

    name = "host-mode LocalStack"
    try:
        python = host.find_python()
    except host.LocalStackUnavailable as exc:
        return Check(name, MISSING, str(exc).split(": install")[0], "install Python 3.13 (e.g. pyenv install 3.13), then: cosmicai localstack up --detach")
    venv = host.venv_dir(python)
    installed = (venv / ".cosmicai-installed").is_file()
    state = host.running()
    detail = f"Python {python}; LocalStack {host.VERSION} " + (f"installed in {venv}" if installed else "not installed yet (the first 'cosmicai localstack up' installs it from PyPI, about a minute)")
    if state:
        detail += f"; running at {state['endpoint']} (pid {state['pid']})"
    return Check(name, OK, detail, "" if state else "cosmicai localstack up --detach")


def python_check() -> Check:
    return Check("python", INFO, f"{platform.python_version()} ({sys.executable}) on {platform.system()} {platform.machine()}")


def torch_check() -> Check:
    try:
        import torch
    except ImportError as exc:
        return Check("torch", MISSING, f"not importable ({exc})", "pip install torch==2.13.0 (the CPU wheel is enough)")
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        device = f"device cuda ({names}); --device cuda runs on it"
    else:
        device = "device cpu (CUDA not available" + (": a CPU-only build)" if torch.version.cuda is None else f"; built for CUDA {torch.version.cuda})")
    return Check("torch", OK, f"{torch.__version__}, {device}, {torch.get_num_threads()} threads")


def moto_check() -> Check:
    try:
        version = importlib.metadata.version("moto")
    except importlib.metadata.PackageNotFoundError:
        return Check("moto (embedded target)", MISSING, "not installed", "pip install -e . (moto~=5.2.5 is a dependency)")
    return Check("moto (embedded target)", OK, version)


def docker_daemon(timeout_s: float = DOCKER_TIMEOUT_S) -> Check:
    """Ping the Docker daemon: the docker SDK when installed, else the docker CLI."""
    try:
        import docker
    except ImportError:
        docker = None
    if docker is not None:
        try:
            client = docker.from_env(timeout=timeout_s)
            client.ping()
            version = client.version().get("Version", "?")
            client.close()
        except Exception as exc:  # DockerException, requests' errors, a socket without permission
            return Check("Docker daemon", MISSING, _docker_reason(exc), INSTALL_DOCKER)
        return Check("Docker daemon", OK, f"reachable (engine {version}, {_docker_host()})")
    cli = shutil.which("docker")
    if cli is None:
        return Check("Docker daemon", MISSING, "no docker CLI and no docker SDK (pip install -e '.[docker]')", INSTALL_DOCKER)
    done = _run([cli, "version", "--format", "{{.Server.Version}}"], timeout_s)
    if done is None or done.returncode != 0 or not done.stdout.strip():
        reason = _first_line(done.stderr if done is not None else "") or f"no answer in {timeout_s:.0f} s"
        return Check("Docker daemon", MISSING, f"docker CLI at {cli}, but no daemon: {reason}", INSTALL_DOCKER)
    return Check("Docker daemon", OK, f"reachable (engine {done.stdout.strip()}, {_docker_host()})")


def image_check(name: str, image: str, daemon: Check, pull_fix: str, in_registry: bool = False) -> Check:
    """Present in the local image store, or pullable (the registry answers for it).

    ``in_registry``: only pullable counts (LocalStack pulls the runtime image before it creates a function).
    """
    if not daemon.ok:
        return Check(name, UNKNOWN, f"{image}: cannot tell without the Docker daemon")
    present, pullable, reason = _image_state(image, always_ask_registry=in_registry)
    if pullable:
        return Check(name, OK, f"{image} " + ("in its registry" + (" and present" if present else "") if in_registry else "pullable (not present yet)"))
    if present and not in_registry:
        return Check(name, OK, f"{image} present")
    if present:
        return Check(name, MISSING, f"{image} built, but its registry does not have it ({reason}): LocalStack pulls it from there", pull_fix)
    return Check(name, MISSING, f"{image} neither present nor pullable ({reason})", pull_fix)


def localstack_check(endpoint: str) -> Check:
    try:
        health = targets.localstack_health(endpoint)
    except targets.TargetUnavailable as exc:
        return Check("LocalStack endpoint", MISSING, str(exc).removesuffix(f": {targets.LOCALSTACK_START}"),
                     "cosmicai localstack up --detach (host mode, no Docker), or docker compose up -d --wait (Docker)")
    states = health["services"]
    down = [s for s in targets.LOCALSTACK_SERVICES if states.get(s) not in ("available", "running")]
    about = f"{health.get('edition', '?')} {health.get('version', '?')} at {endpoint}"
    if down:
        listed = ", ".join(f"{s} {states.get(s, 'not enabled')}" for s in down)
        return Check("LocalStack endpoint", MISSING, f"{about}: {listed}", f"SERVICES={','.join(targets.LOCALSTACK_SERVICES)} (compose.yaml sets it); docker compose up -d --wait")
    return Check("LocalStack endpoint", OK, f"healthy: {about} ({', '.join(targets.LOCALSTACK_SERVICES)})")


def aws_check(region: str | None = None) -> Check:
    """Credentials from botocore's chain (never printed) and the account they belong to."""
    import boto3
    import botocore.session
    from botocore.config import Config

    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or targets.DEFAULT_REGION
    core = botocore.session.Session()
    core.get_component("credential_provider").remove("iam-role")  # instance metadata: a network probe, not a laptop's keys
    session = boto3.Session(botocore_session=core, region_name=region)
    fix = "aws configure, or aws sso login, or export AWS_PROFILE=...: only the aws target needs them"
    try:
        credentials = session.get_credentials()
    except Exception as exc:  # a broken profile: name it, never its contents
        return Check("AWS credentials", MISSING, f"the configuration cannot be read ({type(exc).__name__})", fix)
    if credentials is None:
        return Check("AWS credentials", MISSING, "none configured (environment, ~/.aws/credentials, ~/.aws/config; instance metadata not probed)", fix)
    source = getattr(credentials, "method", "?")
    config = Config(connect_timeout=STS_CONNECT_TIMEOUT_S, read_timeout=STS_READ_TIMEOUT_S, retries={"max_attempts": 1, "mode": "standard"})
    try:  # AWS's own STS endpoint, even when AWS_ENDPOINT_URL points at an emulator
        sts = session.client("sts", endpoint_url=f"https://sts.{region}.amazonaws.com", config=config)
        identity = sts.get_caller_identity()
    except Exception as exc:  # no route to AWS from here, or AWS refused the credentials
        return Check("AWS credentials", MISSING, f"found (source: {source}) but STS did not confirm them: {_short(exc)}", "check the network route to AWS, then the credentials: " + fix)
    return Check("AWS credentials", OK, f"account {identity['Account']} (source: {source}, region {region})")


# -- rendering -------------------------------------------------------------------------------

_MARK = {OK: "[green]✓ ok[/]", MISSING: "[red]✗ missing[/]", UNKNOWN: "[yellow]? unknown[/]", INFO: "[dim]· info[/]"}


def target_readiness(checks: list[Check]) -> list[tuple[str, bool, str]]:
    """(target, ready, what it needs) for each target, from the checks."""
    by_name = {c.name: c for c in checks}

    def ok(*names: str) -> bool:
        return all(n in by_name and by_name[n].ok for n in names)

    return [
        ("embedded", ok("torch", "moto (embedded target)"), "torch and moto"),
        ("localstack", ok("LocalStack endpoint"), "a healthy LocalStack: 'cosmicai localstack up --detach' (Python >= 3.13) or 'docker compose up -d --wait' (Docker)"),
        ("aws", ok("AWS credentials"), "AWS credentials that STS confirms"),
    ]


def render(checks: list[Check]) -> None:
    from rich.table import Table

    out = _console()
    table = Table(title="cosmicai doctor: what this machine can run", show_lines=True, header_style="bold")
    table.add_column("check", style="bold", no_wrap=True)
    table.add_column("result", no_wrap=True)
    table.add_column("detail / fix")
    for check in checks:
        detail = _escape(check.detail)
        if check.fix and not check.ok:
            detail += f"\n[yellow]fix:[/] {_escape(check.fix)}"
        table.add_row(check.name, _MARK[check.status], detail)
    out.print(table)
    ready = Table(title="targets", header_style="bold")
    ready.add_column("target", style="bold")
    ready.add_column("ready")
    ready.add_column("needs")
    for name, is_ready, needs in target_readiness(checks):
        ready.add_row(name, "[green]yes[/]" if is_ready else "[red]no[/]", needs)
    out.print(ready)
    out.print("run one with: cosmicai run --target embedded|localstack|aws")


def _console() -> Any:
    try:
        from cosmicai.console import out
    except ImportError:  # console imports torch: the report must still show that torch is missing
        from rich.console import Console

        out = Console()
    return out


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


# -- helpers ---------------------------------------------------------------------------------


def _image_state(image: str, always_ask_registry: bool = False) -> tuple[bool, bool, str]:
    """(present, pullable, why not) through the docker SDK, else the CLI; the registry is asked only when
    the image is not present, or always with ``always_ask_registry``."""
    try:
        import docker
    except ImportError:
        docker = None
    if docker is not None:
        try:
            client = docker.from_env(timeout=REGISTRY_TIMEOUT_S)
        except Exception as exc:
            return False, False, _docker_reason(exc)
        try:
            try:
                client.images.get(image)
                present = True
            except docker.errors.ImageNotFound:
                present = False
            if present and not always_ask_registry:
                return True, False, ""
            try:
                client.images.get_registry_data(image)
                return present, True, ""
            except Exception as exc:
                return present, False, _short(exc)
        finally:
            client.close()
    cli = shutil.which("docker") or "docker"
    inspected = _run([cli, "image", "inspect", "--format", "{{.Id}}", image], DOCKER_TIMEOUT_S)
    present = inspected is not None and inspected.returncode == 0
    if present and not always_ask_registry:
        return True, False, ""
    manifest = _run([cli, "manifest", "inspect", image], REGISTRY_TIMEOUT_S)
    if manifest is not None and manifest.returncode == 0:
        return present, True, ""
    return present, False, _first_line(manifest.stderr if manifest is not None else "") or "the registry did not answer"


def _run(command: list[str], timeout_s: float) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None


def _docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def _docker_reason(exc: BaseException) -> str:
    host = _docker_host()
    if host.startswith("unix://") and not os.path.exists(host[len("unix://"):]):
        return f"no daemon socket at {host[len('unix://'):]}" + (f" (docker CLI at {shutil.which('docker')})" if shutil.which("docker") else "")
    if isinstance(exc, PermissionError) or "Permission denied" in str(exc):
        return f"{host}: permission denied"
    return f"{host}: {_short(exc)}"


def _short(exc: BaseException, limit: int = 160) -> str:
    text = _first_line(str(exc)) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")

