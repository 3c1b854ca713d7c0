"""LocalStack 4.14.0 in host mode, without Docker: its cached venv, start, health, loopback check, stop.

LocalStack needs Python >= 3.13 (its code uses 3.12/3.13-only syntax); the
project keeps its own Python. :func:`ensure_venv` creates, once, a venv with a
Python >= 3.13 and installs ``localstack-core[runtime]==4.14.0`` under this
project's tested pins (``localstack-constraints.txt``), then this project
itself without its dependencies, so LocalStack finds our Lambda runtime
executor (``emulator.localstack_executor``, entry point
``localstack.lambda.runtime_executor``). :func:`start` runs
``python -m localstack.runtime.main`` in its own session with the host-mode
settings (:func:`host_mode_env`), waits for ``/_localstack/health``, checks it
listens on loopback only (stopping it otherwise), and records it in a state
file. :func:`stop` sends SIGTERM and kills the process group when shutdown
hangs (LocalStack's shutdown can: a race in its hypercorn server stop).

Artifacts: ``$COSMICAI_CACHE/localstack/venv-<version>-py<x.y>-<pins>/`` (the
venv, kept; default ``~/.cache/cosmicai``), ``$COSMICAI_HOME/localstack/run-<port>/`` (LocalStack's files and
``localstack.log``, removed on stop), ``$COSMICAI_HOME/localstack-<port>.json``
(the state file).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import psutil

from emulator.state import cache_home, home, pid_alive, port_free, read_state, write_state  # noqa: F401 (port_free, read_state: for callers)

VERSION = "4.14.0"
REQUIREMENT = f"localstack-core[runtime]=={VERSION}"
CONSTRAINTS = Path(__file__).with_name("localstack-constraints.txt")
EXECUTOR = "cosmicai-process"  # our runtime executor's plugin name (pyproject.toml's entry point)
SERVICES = "s3,lambda,stepfunctions,iam,logs,sts,events"  # events: silences Step Functions' notification errors
MIN_PYTHON = (3, 13)
PYTHON_ENV = "COSMICAI_LOCALSTACK_PYTHON"
START_TIMEOUT_S = 90.0
Progress = Callable[[str], None]


class LocalStackUnavailable(RuntimeError):
    """Host-mode LocalStack cannot be installed or started here; the message says why and what to do."""


# -- a Python for LocalStack ------------------------------------------------------------


def _version(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True, text=True, timeout=20)
        major, minor = out.stdout.split()
        return int(major), int(minor)
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def _candidates(explicit: str | None) -> Iterator[tuple[str, str]]:
    """(where it came from, interpreter) in the order they are tried."""
    if explicit:
        yield "--python", explicit
    if os.environ.get(PYTHON_ENV):
        yield PYTHON_ENV, os.environ[PYTHON_ENV]
    for name in ("python3.13", "python3.14"):
        found = shutil.which(name)
        if found:
            yield "PATH", found
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    versions = []
    for folder in glob.glob(os.path.join(root, "versions", "3.*")):
        match = re.fullmatch(r"3\.(\d+)\.(\d+)", os.path.basename(folder))
        if match:
            versions.append(((3, int(match.group(1)), int(match.group(2))), folder))
    for version, folder in sorted(versions, reverse=True):
        if version[:2] >= MIN_PYTHON:
            yield "pyenv", os.path.join(folder, "bin", f"python{version[0]}.{version[1]}")


def find_python(explicit: str | None = None) -> str:
    """A Python >= 3.13 for LocalStack: --python, $COSMICAI_LOCALSTACK_PYTHON, python3.13/3.14 on PATH, pyenv's versions."""
    tried = []
    for source, python in _candidates(explicit):
        version = _version(python)
        if version is not None and version >= MIN_PYTHON:
            return python
        tried.append(f"{python} ({source}: {'not runnable' if version is None else '%d.%d' % version})")
        if source == "--python":
            break
    detail = f"; tried {', '.join(tried)}" if tried else ""
    raise LocalStackUnavailable(
        f"LocalStack {VERSION} needs Python >= 3.13 and none was found{detail}: install one (e.g. 'pyenv install 3.13') "
        f"and pass --python PATH or set {PYTHON_ENV}"
    )


# -- the venv ---------------------------------------------------------------------------


def project_root() -> Path:
    """The source checkout this package runs from (its pyproject.toml declares the executor plugin)."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file() or EXECUTOR not in (root / "pyproject.toml").read_text():
        raise LocalStackUnavailable(f"host-mode LocalStack needs this project's source checkout (pip install -e .); {root} is not one")
    return root


def venv_dir(python: str) -> Path:
    major, minor = _version(python) or MIN_PYTHON
    pins = hashlib.sha256(CONSTRAINTS.read_bytes()).hexdigest()[:8]
    return cache_home() / "localstack" / f"venv-{VERSION}-py{major}.{minor}-{pins}"


def _pip(venv: Path, args: list[str], log: Path, progress: Progress) -> None:
    """Run pip in ``venv``, showing its steps; LocalStackUnavailable with the last line when it fails."""
    command = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", args[0], "--progress-bar", "off", *args[1:]]
    last = ""
    with open(log, "a") as out:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in process.stdout:  # type: ignore[union-attr]
            out.write(line)
            line = line.strip()
            if line:
                last = line
            if line.startswith(("Collecting", "Installing", "Building", "Successfully")):
                progress(line[:100])
        code = process.wait()
    if code:
        raise LocalStackUnavailable(
            f"installing {args[-1]} into {venv} failed (pip exit {code}: {last[:200]}); see {log}. "
            "It needs PyPI; after fixing the cause, 'cosmicai localstack up' tries again")


def ensure_venv(python: str | None = None, progress: Progress = lambda message: None) -> Path:
    """LocalStack's venv (created once, under a lock), with our executor registered for this checkout; its path."""
    python = find_python(python)
    venv = venv_dir(python)
    root = project_root()
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = venv / ".cosmicai-installed"
        log = venv.parent / f"{venv.name}.install.log"
        if not marker.is_file():
            progress(f"creating LocalStack's venv with {python} (once, about a minute)")
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([python, "-m", "venv", str(venv)], check=True, capture_output=True)
            _pip(venv, ["install", "-c", str(CONSTRAINTS), REQUIREMENT], log, progress)
            marker.write_text(json.dumps({"python": python, "requirement": REQUIREMENT}))
        registered = venv / ".cosmicai-plugin"
        if not registered.is_file() or registered.read_text() != str(root):
            progress(f"registering the {EXECUTOR} Lambda runtime executor ({root})")
            _pip(venv, ["install", "--no-deps", "--no-build-isolation", "-e", str(root)], log, progress)
            registered.write_text(str(root))
    return venv


# -- start, check, stop -----------------------------------------------------------------


def state_file(port: int) -> Path:
    return home() / f"localstack-{port}.json"


def run_dir(port: int) -> Path:
    return home() / "localstack" / f"run-{port}"


def host_mode_env(port: int, folder: Path, worker_python: str) -> dict[str, str]:
    """LocalStack's settings for host mode on 127.0.0.1:<port> with our executor (see ../shared/DESIGN.md)."""
    for sub in ("fs", "tmp", "cache"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LOCALSTACK_", "PYTHON"))}
    env.update(
        OVERRIDE_IN_DOCKER="0",  # this machine may have /.dockerenv: LocalStack would pick container paths and bind 0.0.0.0
        GATEWAY_SERVER="hypercorn",  # twisted ignores the host and binds every interface
        GATEWAY_LISTEN=f"127.0.0.1:{port}",
        LOCALSTACK_HOST=f"127.0.0.1:{port}",
        DNS_ADDRESS="0",
        DISABLE_EVENTS="1",
        SKIP_SSL_CERT_DOWNLOAD="1",
        SERVICES=SERVICES,
        FILESYSTEM_ROOT=str(folder / "fs"),
        TMPDIR=str(folder / "tmp"),
        XDG_CACHE_HOME=str(folder / "cache"),
        LAMBDA_RUNTIME_EXECUTOR=EXECUTOR,
        LAMBDA_RUNTIME_ENVIRONMENT_TIMEOUT="120",  # a cold Infer imports torch
        LAMBDA_KEEPALIVE_MS="600000",
        COSMICAI_WORKER_PYTHON=worker_python,
    )
    return env


def health(endpoint: str, timeout_s: float = 2.0) -> dict[str, Any] | None:
    """LocalStack's /_localstack/health document, or None when nothing answers."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{endpoint}/_localstack/health", timeout=timeout_s) as response:
            body = json.loads(response.read())
        return body if isinstance(body, dict) else None
    except (OSError, ValueError):
        return None


def listening_addresses(pid: int) -> set[str]:
    """The IP addresses the process and its children listen on (TCP) or have bound (UDP)."""
    addresses: set[str] = set()
    try:
        processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return addresses
    for process in processes:
        try:
            connections = process.net_connections(kind="inet") if hasattr(process, "net_connections") else process.connections(kind="inet")
        except psutil.Error:
            continue
        for conn in connections:
            if conn.laddr and (conn.status == psutil.CONN_LISTEN or conn.type == socket.SOCK_DGRAM):
                addresses.add(conn.laddr.ip)
    return addresses


def start(port: int = 4566, python: str | None = None, progress: Progress = lambda message: None,
          timeout_s: float = START_TIMEOUT_S) -> dict[str, Any]:
    """Start LocalStack in host mode in the background; return its state once it is healthy on loopback only."""
    existing = running(port)
    if existing:
        raise LocalStackUnavailable(f"LocalStack is already up at {existing['endpoint']} (pid {existing['pid']}); stop it with 'cosmicai localstack down --port {port}'")
    if not port_free(port):
        raise LocalStackUnavailable(f"port {port} on 127.0.0.1 is in use (another emulator?): pass --port, or stop what listens there")
    venv = ensure_venv(python, progress)
    folder = run_dir(port)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    endpoint = f"http://127.0.0.1:{port}"
    progress(f"starting LocalStack {VERSION} on {endpoint}")
    started = time.perf_counter()
    with open(folder / "localstack.log", "wb") as log:
        process = subprocess.Popen(
            [str(venv / "bin" / "python"), "-m", "localstack.runtime.main"],
            env=host_mode_env(port, folder, sys.executable), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, cwd=folder,
        )
    state = {"pid": process.pid, "port": port, "endpoint": endpoint, "run_dir": str(folder), "version": VERSION}
    try:
        while health(endpoint, 1.0) is None:
            if process.poll() is not None:
                raise LocalStackUnavailable(f"LocalStack exited with status {process.returncode} while starting; see {folder / 'localstack.log'}")
            if time.perf_counter() - started > timeout_s:
                raise LocalStackUnavailable(f"LocalStack did not answer within {timeout_s:.0f} s; see {folder / 'localstack.log'}")
            time.sleep(0.1)
        exposed = {ip for ip in listening_addresses(process.pid) if ip not in ("127.0.0.1", "::1")}
        if exposed:
            raise LocalStackUnavailable(f"LocalStack listened on {', '.join(sorted(exposed))}, not loopback only: stopped it")
    except BaseException:
        _terminate(process.pid, port)
        shutil.rmtree(folder, ignore_errors=True)
        raise
    state["start_s"] = round(time.perf_counter() - started, 2)
    write_state(state_file(port), state)
    return state


def running(port: int | None = None) -> dict[str, Any] | None:
    """The state of a live host-mode LocalStack (on ``port``, or the first found), else None."""
    files = [state_file(port)] if port else sorted(home().glob("localstack-*.json"))
    for path in files:
        state = read_state(path)
        if state:
            return state
    return None


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _terminate(pid: int, port: int, grace_s: float = 5.0, linger_s: float = 1.0) -> None:
    """SIGTERM; then SIGKILL the whole process group (LocalStack and its workers) once the port has been
    closed for ``linger_s``, or after ``grace_s`` at the latest: LocalStack's shutdown can hang after its hooks ran."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    started, closed_at = time.perf_counter(), None
    while pid_alive(pid):
        now = time.perf_counter()
        if closed_at is None and not _port_open(port):
            closed_at = now
        if (closed_at is not None and now - closed_at > linger_s) or now - started > grace_s:
            break
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(psutil.Error):
        psutil.Process(pid).wait(timeout=5)


def stop(port: int) -> bool:
    """Stop the LocalStack started on ``port`` and everything it started; False if none was running."""
    state = running(port)
    if state is None:
        return False
    _terminate(state["pid"], port)
    shutil.rmtree(state.get("run_dir") or run_dir(port), ignore_errors=True)
    state_file(port).unlink(missing_ok=True)
    if not any(_is_localstack(p) for p in psutil.process_iter(["cmdline"])):
        shutil.rmtree(Path(tempfile.gettempdir()) / "localstack-s3-storage", ignore_errors=True)  # shared, fixed path
    return True


def _is_localstack(process: psutil.Process) -> bool:
    return "localstack.runtime.main" in " ".join(process.info.get("cmdline") or [])


def serve(port: int = 4566, python: str | None = None, progress: Progress = lambda message: None,
          ready: Callable[[dict[str, Any]], None] = lambda state: None) -> None:
    """Run LocalStack in the foreground: start, then stop it on SIGINT or SIGTERM."""
    state = start(port, python, progress)
    ready(state)
    caught: list[int] = []
    previous = {sig: signal.signal(sig, lambda number, _frame: caught.append(number)) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not caught and pid_alive(state["pid"]):
            time.sleep(0.2)
    finally:
        stop(port)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
