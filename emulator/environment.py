"""One Lambda execution environment as a local process: the component every engine hosts.

An :class:`Environment` is a worker process (``emulator.worker``) that imports
the function's handler once and serves invocations. Its interface is the one
every host needs: ``start()`` it for a :class:`FunctionSpec`, ``invoke(event)``
it within the function's Timeout, ``stop()`` it. It enforces the function's
``Timeout`` (``Sandbox.Timedout``) and ``MemorySize`` (``Runtime.OutOfMemory``,
on the peak RSS of the invocation: the worker's high-water mark, reset before
each invocation, plus its children), reports a crash
(``Runtime.ExitError``, with the process's last output) and an import failure
(``Runtime.ImportModuleError``) in Lambda's error shape, and returns the
invocation's output; :func:`log_text` wraps it in Lambda's START/END/REPORT lines.

Hosts: ``emulator.pool.WorkerPool`` (moto's seam, ``emulator.motoseam``) and
LocalStack's runtime executor, which keeps one Environment per execution environment.

Artifacts: ``<root>/code/<sha256>/`` (a function's unzipped code) and
``<root>/worker-*/{worker,invoke}.log`` (each environment's output).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from typing import Any

import psutil

logger = logging.getLogger(__name__)

INIT_TIMEOUT_S = 120.0  # Lambda's init phase limit is separate from the function's Timeout
_POLL_S = 0.05
LOG_TAIL_BYTES = 4096  # Lambda returns the last 4 KB of logs in x-amz-log-result
LOG_CAP_BYTES = 1 << 20  # an invocation's output kept for its logs: 1 MiB, its start and its end (the rest is dropped, and said so)
_HOST_ONLY_VARS = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")


class WorkerFailed(Exception):
    """An environment died, timed out, ran out of memory or failed to import; carries Lambda's error payload."""

    def __init__(self, error_type: str, message: str, logs: str = "") -> None:
        super().__init__(message)
        self.payload: dict[str, Any] = {"errorType": error_type, "errorMessage": message}
        self.logs = logs
        self.peak_bytes = 0  # the environment's peak RSS when it failed, for the REPORT line


@dataclass(frozen=True)
class FunctionSpec:
    """What identifies an execution environment: a function's code and configuration."""

    name: str
    handler: str
    code_sha: str
    timeout_s: float
    memory_mb: int
    environment: tuple[tuple[str, str], ...]
    region: str


@dataclass
class InvocationResult:
    """One invocation's outcome: the handler's result or Lambda's error payload, its output, its figures."""

    request_id: str
    payload: Any  # JSON-able: the handler's return value, or {"errorType", "errorMessage", ...}
    errored: bool
    logs: str  # the function's own output during the invocation
    duration_s: float
    max_memory_bytes: int
    init_duration_s: float | None = None  # on the first invocation of an environment (a cold start)


def log_text(spec: FunctionSpec, result: InvocationResult) -> str:
    """The invocation's CloudWatch lines, as Lambda writes them: START, the output, END, REPORT."""
    lines = [f"START RequestId: {result.request_id} Version: $LATEST", *result.logs.splitlines()]
    if result.errored and isinstance(result.payload, dict):
        lines.append(json.dumps(result.payload))
    lines.append(f"END RequestId: {result.request_id}")
    lines.append(
        f"REPORT RequestId: {result.request_id}\tDuration: {result.duration_s * 1000:.2f} ms"
        f"\tBilled Duration: {max(1, round(result.duration_s * 1000))} ms"
        f"\tMemory Size: {spec.memory_mb} MB\tMax Memory Used: {result.max_memory_bytes // 2**20} MB"
        + (f"\tInit Duration: {result.init_duration_s * 1000:.2f} ms" if result.init_duration_s is not None else "")
    )
    return "\n".join(lines)


def lambda_environment(spec: FunctionSpec, endpoint_url: str, threads: int) -> dict[str, str]:
    """The variables of a Lambda environment for ``spec``: Lambda's reserved ones, the endpoint, dummy credentials, its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k not in _HOST_ONLY_VARS and not k.startswith("MOTO_")}
    env.update(
        {
            "AWS_ENDPOINT_URL": endpoint_url,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_REGION": spec.region,
            "AWS_DEFAULT_REGION": spec.region,
            "AWS_LAMBDA_FUNCTION_NAME": spec.name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(int(spec.timeout_s)),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
            "_HANDLER": spec.handler,
            "COSMICAI_TORCH_THREADS": str(threads),
            "OMP_NUM_THREADS": str(threads),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
    env.update(dict(spec.environment))
    return env


def unpack_code(code: bytes, root: str, spec: FunctionSpec) -> str:
    """The function's zip unpacked once under ``root/code/<sha256>`` (members that escape it are refused)."""
    path = os.path.join(root, "code", spec.code_sha)
    if os.path.isdir(path):
        return path
    if not code:
        raise WorkerFailed("Runtime.InvalidEntrypoint", f"function {spec.name}: the embedded runner runs zip packages only (no code found)")
    staging = tempfile.mkdtemp(dir=root)
    with zipfile.ZipFile(io.BytesIO(code)) as archive:
        for member in archive.namelist():
            target = os.path.realpath(os.path.join(staging, member))
            if not target.startswith(os.path.realpath(staging) + os.sep):
                raise WorkerFailed("Runtime.InvalidZipFileException", f"function {spec.name}: zip member {member!r} escapes the code folder")
        archive.extractall(staging)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        os.rename(staging, path)
    except OSError:  # another thread unpacked the same code first
        shutil.rmtree(staging, ignore_errors=True)
    return path


@dataclass
class Environment:
    """One execution environment: a worker process serving one function version's invocations."""

    spec: FunctionSpec
    code_dir: str
    env: dict[str, str]
    root: str  # the environment's log folder is made under it
    python: str = sys.executable
    process: subprocess.Popen | None = None
    log_dir: str = ""
    buffer: bytes = b""
    ready: bool = False
    init_s: float | None = None  # start to handler imported
    invocations: int = 0
    started: float = field(default_factory=time.perf_counter)

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> "Environment":
        """Start the worker process (it imports the handler in the background; ``invoke`` waits for it)."""
        self.started = time.perf_counter()
        self.log_dir = tempfile.mkdtemp(prefix="worker-", dir=self.root)
        self.process = subprocess.Popen(
            [self.python, "-m", "emulator.worker", self.code_dir, self.spec.handler, self.log_dir],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=dict(self.env, TMPDIR=self.log_dir),
            cwd=self.code_dir,
            start_new_session=True,  # its own process group: whatever the handler starts is killed with it
        )
        return self

    def wait_ready(self, deadline: float | None = None) -> None:
        """Block until the handler is imported; WorkerFailed(Runtime.ImportModuleError) if it could not be."""
        if self.ready:
            return
        reply = self._receive(deadline or time.time() + INIT_TIMEOUT_S, None, INIT_TIMEOUT_S)
        if reply.get("op") == "init_error":
            failure = WorkerFailed("Runtime.ImportModuleError", str(reply["error"].get("errorMessage", "")), self.read_log("worker.log"))
            failure.payload.update({k: v for k, v in reply["error"].items() if k not in failure.payload})  # stackTrace
            raise failure
        self.ready = True
        self.init_s = time.perf_counter() - self.started

    def stop(self, grace_s: float = 0.0) -> None:
        """Ask the worker to exit (waiting up to ``grace_s``), then kill it and its children."""
        if self.process is None:
            return
        if grace_s and self.alive():
            try:
                self._send({"op": "stop"})
                self.process.wait(timeout=grace_s)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()

    def cleanup(self) -> None:
        shutil.rmtree(self.log_dir, ignore_errors=True)

    @property
    def pid(self) -> int:
        return self.process.pid if self.process else -1

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """Kill the worker's whole process group (the worker and anything its handler started)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        try:
            for child in psutil.Process(self.pid).children(recursive=True):  # a child that left the group
                child.kill()
        except psutil.Error:
            pass
        if self.alive():
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()  # type: ignore[union-attr]
            except OSError:
                pass

    # -- invocation -----------------------------------------------------------

    def invoke(self, event: Any, request_id: str | None = None, enforce_memory: bool = True) -> InvocationResult:
        """One invocation within the function's Timeout; Lambda's error payload when it fails.

        After a failure (timeout, out of memory, crash) the environment is dead:
        ``healthy()`` says so and the host replaces it, as Lambda does.
        """
        request_id = request_id or str(uuid.uuid4())
        started = time.perf_counter()
        try:
            self.wait_ready()
            started = time.perf_counter()
            deadline = time.time() + self.spec.timeout_s
            self._reset_peak()
            self._send({"op": "invoke", "event": event, "request_id": request_id, "deadline": deadline})
            reply = self._receive(deadline, self.spec.memory_mb if enforce_memory else None, self.spec.timeout_s)
            init = self.init_s if self.invocations == 0 else None
            self.invocations += 1
            return InvocationResult(request_id, reply["payload"], not reply["ok"], self.read_log(), time.perf_counter() - started, self.peak_bytes(), init)
        except WorkerFailed as failure:
            logs = failure.logs or (self.read_log() + self.read_log("worker.log"))
            payload = dict(failure.payload)
            if payload["errorType"] == "Runtime.ExitError":
                payload["stackTrace"] = logs.splitlines()[-30:]  # faulthandler's dump, or the last output
            peak = failure.peak_bytes or self.peak_bytes()
            self.kill()
            return InvocationResult(request_id, payload, True, logs, time.perf_counter() - started, peak)
        except (OSError, ValueError) as exc:  # a broken pipe or an unreadable reply: the process is gone
            logs = self.read_log() + self.read_log("worker.log")
            self.kill()
            payload = {"errorType": "Runtime.ExitError", "errorMessage": f"Runtime exited with error: {exc}"}
            return InvocationResult(request_id, payload, True, logs, time.perf_counter() - started, 0)

    def healthy(self) -> bool:
        return self.ready and self.alive()

    def peak_bytes(self) -> int:
        """Peak RSS since the last reset: the worker's high-water mark (VmHWM) plus its children's RSS."""
        try:
            proc = psutil.Process(self.pid)
            children = sum(c.memory_info().rss for c in proc.children(recursive=True))
            with open(f"/proc/{self.pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024 + children
            return proc.memory_info().rss + children
        except (psutil.Error, OSError, ValueError):
            return 0

    def _reset_peak(self) -> None:
        """Reset the worker's high-water mark (Linux ``clear_refs``), so each invocation's peak is its own."""
        with contextlib.suppress(OSError):
            with open(f"/proc/{self.pid}/clear_refs", "w") as refs:
                refs.write("5")

    def read_log(self, name: str = "invoke.log") -> str:
        """The environment's output file; beyond LOG_CAP_BYTES, its first 64 KiB and its end, saying what was dropped."""
        head_bytes = 64 * 1024
        try:
            with open(os.path.join(self.log_dir, name), "rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(0)
                if size <= LOG_CAP_BYTES:
                    return handle.read().decode("utf-8", errors="replace")
                head = handle.read(head_bytes)
                handle.seek(size - (LOG_CAP_BYTES - head_bytes))
                tail = handle.read()
        except OSError:
            return ""
        dropped = size - len(head) - len(tail)
        note = f"\n[cosmicai: output truncated: {dropped:,} of {size:,} bytes dropped here; an invocation keeps {LOG_CAP_BYTES:,}]\n"
        return head.decode("utf-8", errors="replace") + note + tail.decode("utf-8", errors="replace")

    def _send(self, message: dict[str, Any]) -> None:
        self.process.stdin.write((json.dumps(message) + "\n").encode())  # type: ignore[union-attr]
        self.process.stdin.flush()  # type: ignore[union-attr]

    def _receive(self, deadline: float, memory_mb: int | None, timeout_s: float) -> dict[str, Any]:
        """Wait for one message until deadline, watching the peak memory; raise WorkerFailed."""
        fd = self.process.stdout.fileno()  # type: ignore[union-attr]
        peak = 0
        while b"\n" not in self.buffer:
            now = time.time()
            if now >= deadline:
                raise self._fail("Sandbox.Timedout", f"Task timed out after {timeout_s:.2f} seconds", max(peak, self.peak_bytes()))
            readable, _, _ = select.select([fd], [], [], min(_POLL_S, deadline - now))
            peak = max(peak, self.peak_bytes())
            if memory_mb is not None and peak > memory_mb * 2**20:
                raise self._fail("Runtime.OutOfMemory", f"Runtime exited with error: out of memory (peak RSS {peak / 2**20:.0f} MB > MemorySize {memory_mb} MB)", peak)
            if readable:
                chunk = os.read(fd, 65536)
                if not chunk:
                    code = self.process.wait(timeout=10)  # type: ignore[union-attr]
                    how = f"signal {-code}" if code < 0 else f"exit status {code}"
                    raise self._fail("Runtime.ExitError", f"Runtime exited with error: {how}", peak)
                self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)

    def _fail(self, error_type: str, message: str, peak: int) -> WorkerFailed:
        """Kill the environment and describe why, with the peak memory it reached."""
        self.kill()
        failure = WorkerFailed(error_type, message)
        failure.peak_bytes = peak
        return failure
