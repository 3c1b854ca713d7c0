"""One Lambda execution environment as a local process: the component every engine hosts.

An :class:`Environment` is a worker process (``emulator.worker``) that imports
the function's handler once and serves invocations. Its interface is the one
every host needs: ``start()`` it for a :class:`FunctionSpec`, ``invoke(event)``
it within the function's Timeout, ``stop()`` it. It enforces the function's
``Timeout`` (``Sandbox.Timedout``) and ``MemorySize`` (``Runtime.OutOfMemory``,
on the peak RSS of the invocation: the worker's high-water mark, reset before
each invocation, plus its children), reports a crash
(``Runtime.ExitError``, with the process's last output) and an import failure
(the runtime's init error: ``Runtime.ImportModuleError``, ``Runtime.HandlerNotFound``, ...) in Lambda's error shape and
message forms (``RequestId: <id> Error: ...``), and returns the
invocation's output; :func:`log_text` wraps it in Lambda's START/END/REPORT lines
(INIT_START and the import-time output first on a cold start; ``Init Duration`` on its
REPORT; ``Billed Duration`` = Duration rounded up to 1 ms).

As on Lambda, a worker has only ``emulator.runtimes.lambda_environment``'s variables, its runtime's packages
(``emulator.runtimes``), its task root as working directory, its own ``/tmp`` (``TMPDIR``, held to
``EphemeralStorage.Size``, kept while it lives), one log stream, and a 10 s init phase
(``COSMICAI_LAMBDA_INIT_TIMEOUT_S``): a longer init is cut and retried at the first invocation, within its Timeout.

Hosts: ``emulator.pool.WorkerPool`` (moto's seam, ``emulator.motoseam``) and
LocalStack's runtime executor, which keeps one Environment per execution environment.

Artifacts: ``<root>/worker-*/{worker,invoke}.log`` (each environment's output) and
``<root>/worker-*/tmp/`` (its ``/tmp``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import psutil

from emulator.proctree import descendants_rss
from emulator.runtimes import worker_command

logger = logging.getLogger(__name__)

INIT_LIMIT_ENV = "COSMICAI_LAMBDA_INIT_TIMEOUT_S"  # the init phase's limit: the emulator's variable, or a function's own (tests)
INIT_LIMIT_S = 10.0  # Lambda's: an init that takes longer is cut and retried at the first invocation, within its Timeout
_POLL_S = 0.05
LOG_TAIL_BYTES = 4096  # Lambda returns the last 4 KB of logs in x-amz-log-result
LOG_CAP_BYTES = 1 << 20  # an invocation's output kept for its logs: 1 MiB, its start and its end (the rest is dropped, and said so)


class WorkerFailed(Exception):
    """An environment died, timed out, ran out of memory or failed to import; carries Lambda's error payload."""

    def __init__(self, error_type: str, message: str, logs: str = "") -> None:
        super().__init__(message)
        self.payload: dict[str, Any] = {"errorType": error_type, "errorMessage": message}
        self.logs = logs
        self.peak_bytes = 0  # the environment's peak RSS when it failed, for the REPORT line


PLATFORM_ERRORS = ("Sandbox.Timedout", "Runtime.ExitError", "Runtime.OutOfMemory")  # Lambda prefixes "RequestId: <id> Error: "


def exit_reason(code: int | None) -> str:
    """Lambda's words for how the runtime process ended (Go's texts: ``exit status 1``, ``signal: killed``)."""
    if not code:
        return "Runtime exited without providing a reason"
    if code > 0:
        return f"Runtime exited with error: exit status {code}"
    name = signal.strsignal(-code) or f"signal {-code}"
    return f"Runtime exited with error: signal: {name[0].lower() + name[1:] if name[1:2].islower() else name}"


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
    runtime: str = "python3.12"  # a zip function's runtime (AWS_EXECUTION_ENV); an image function's is the image's
    version: str = "$LATEST"  # the function version this environment serves (its log stream says so)
    image_uri: str = ""  # a container-image function (PackageType Image): its image, run from the local image store
    image_command: tuple[str, ...] = ()  # ImageConfig.Command: overrides the image's CMD (the handler)
    ephemeral_mb: int = 512  # EphemeralStorage.Size: the environment's /tmp (TMPDIR) quota


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
    log_stream: str = ""  # the environment's CloudWatch log stream (one per execution environment, as on Lambda)
    init_logs: str | None = None  # the environment's import-time output, on its first invocation


def log_stream_name(version: str) -> str:
    """A new execution environment's log stream, named as Lambda names it: ``YYYY/MM/DD/[<version>]<32 hex>``."""
    return f"{time.strftime('%Y/%m/%d', time.gmtime())}/[{version}]{uuid.uuid4().hex}"


def init_lines(spec: FunctionSpec, result: InvocationResult) -> list[str]:
    """The lines an environment writes before its first START: INIT_START and the import-time output."""
    if result.init_logs is None:
        return []
    runtime = "image" if spec.image_uri else spec.runtime.replace("python", "python:")
    return [f"INIT_START Runtime Version: {runtime}.cosmicai", *result.init_logs.splitlines()]


def log_text(spec: FunctionSpec, result: InvocationResult) -> str:
    """The invocation's CloudWatch lines, as Lambda writes them: START, the output, END, REPORT (and, on a cold
    start, INIT_START and the import-time output before them)."""
    lines = [*init_lines(spec, result), f"START RequestId: {result.request_id} Version: {spec.version}", *result.logs.splitlines()]
    if result.errored and isinstance(result.payload, dict):
        lines.append(json.dumps(result.payload))
    lines.append(f"END RequestId: {result.request_id}")
    lines.append(
        f"REPORT RequestId: {result.request_id}\tDuration: {result.duration_s * 1000:.2f} ms"
        f"\tBilled Duration: {math.ceil(round(result.duration_s * 1000, 2))} ms"  # the Duration shown, rounded up to 1 ms
        f"\tMemory Size: {spec.memory_mb} MB\tMax Memory Used: {result.max_memory_bytes // 2**20} MB"
        + (f"\tInit Duration: {result.init_duration_s * 1000:.2f} ms" if result.init_duration_s is not None else "")
    )
    return "\n".join(lines)


@dataclass
class Environment:
    """One execution environment: a worker process serving one function version's invocations."""

    spec: FunctionSpec
    code_dir: str
    env: dict[str, str]
    root: str  # the environment's log folder is made under it
    python: str = sys.executable
    handler: str = ""  # the handler to import: the zip's, or the image's CMD (default: spec.handler)
    process: subprocess.Popen | None = None
    log_dir: str = ""
    log_stream: str = ""  # its CloudWatch log stream: one per environment (LocalStack names it; else a new one)
    buffer: bytes = b""
    ready: bool = False
    init_s: float | None = None  # start to handler imported
    init_logs: str = ""  # the import-time output (with a cut init's, before it)
    init_retry: bool = False  # the init ran past its limit and was cut: Lambda retries it at the first invocation
    invocations: int = 0
    last_peak: int = 0  # the peak memory the last message's wait saw (bytes)
    started: float = field(default_factory=time.perf_counter)
    started_at: float = field(default_factory=time.time)

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> "Environment":
        """Start the worker process (it imports the handler in the background; ``invoke`` waits for it).

        Its task root (``LAMBDA_TASK_ROOT``, the working directory) is the code folder; its ``/tmp`` is its own
        folder (``TMPDIR``, so ``tempfile.gettempdir()``), kept across its invocations, which the worker holds to
        ``EphemeralStorage.Size`` (a write beyond it fails with ENOSPC, errno 28)."""
        self.started, self.started_at = time.perf_counter(), time.time()
        self.log_dir = tempfile.mkdtemp(prefix="worker-", dir=self.root)
        tmp = os.path.join(self.log_dir, "tmp")
        os.mkdir(tmp)
        self.log_stream = self.log_stream or self.env.get("AWS_LAMBDA_LOG_STREAM_NAME") or log_stream_name(self.spec.version)
        env = dict(self.env, LAMBDA_TASK_ROOT=self.code_dir, AWS_LAMBDA_LOG_STREAM_NAME=self.log_stream, TMPDIR=tmp)
        self.process = subprocess.Popen(
            [*worker_command(self.python, bool(self.spec.image_uri)), self.code_dir, self.handler or self.spec.handler, self.log_dir,
             str(self.spec.ephemeral_mb * 2**20)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=self.code_dir,
            start_new_session=True,  # its own process group: whatever the handler starts is killed with it
        )
        return self

    def init_limit_s(self) -> float:
        """The init phase's limit: Lambda's 10 s, unless the function or the emulator sets ``COSMICAI_LAMBDA_INIT_TIMEOUT_S``."""
        value = dict(self.spec.environment).get(INIT_LIMIT_ENV) or os.environ.get(INIT_LIMIT_ENV)
        try:
            return float(value) if value else INIT_LIMIT_S
        except ValueError:
            raise ValueError(f"{INIT_LIMIT_ENV}={value!r}: not a number of seconds") from None

    def wait_ready(self, deadline: float | None = None) -> None:
        """Block until the handler is imported; WorkerFailed with the runtime's init error if it could not be.

        Without ``deadline`` the init phase has its limit (:meth:`init_limit_s`): past it the worker is cut and
        ``init_retry`` set, for the first invocation to retry the init within the function's Timeout (``deadline``)."""
        if self.ready or (self.init_retry and deadline is None):
            return
        cut = self.started_at + self.init_limit_s()
        try:
            reply = self._receive(deadline or cut, None, self.spec.timeout_s)
        except WorkerFailed as failure:
            if deadline is not None or failure.payload["errorType"] != "Sandbox.Timedout":
                raise
            self._cut(time.time() - self.started_at)
            return
        if reply.get("op") == "init_error":
            failure = WorkerFailed(str(reply["error"].get("errorType", "")), str(reply["error"].get("errorMessage", "")), self.read_log("worker.log"))
            failure.payload = dict(reply["error"])  # the runtime's shape: errorMessage, errorType, requestId "", stackTrace
            raise failure
        init_s = float(reply.get("at") or time.time()) - self.started_at  # start to ready, however late it is read (a prewarm)
        if deadline is None and init_s > self.init_limit_s():  # nobody was waiting to cut it: it ran past the limit all the same
            self.kill()
            self._cut(init_s)
            return
        self.ready = True
        self.init_s = None if deadline is not None else init_s  # a retried init is in the Duration
        self.init_logs += self.read_log("worker.log")

    def _cut(self, init_s: float) -> None:
        """The init ran past its limit: Lambda's INIT_REPORT timeout line, and a retry at the first invocation."""
        self.init_logs = self.read_log("worker.log") + f"INIT_REPORT Init Duration: {init_s * 1000:.2f} ms\tPhase: init\tStatus: timeout\n"
        self.init_retry = True

    def _retry_init(self, deadline: float) -> None:
        """Lambda's retry of a cut init, at the first invocation and within its Timeout: a fresh worker, same environment."""
        self.kill()
        shutil.rmtree(self.log_dir, ignore_errors=True)
        self.init_retry, self.buffer = False, b""
        self.start()
        self.wait_ready(deadline)

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
        cold = self.invocations == 0
        try:
            self.wait_ready()
            deadline = time.time() + self.spec.timeout_s
            if self.init_retry:  # the init was cut at its limit: retried now, its time part of this invocation's Timeout
                self._retry_init(deadline)
            else:
                started = time.perf_counter()
            self._reset_peak()
            self._send({"op": "invoke", "event": event, "request_id": request_id, "deadline": deadline})
            reply = self._receive(deadline, self.spec.memory_mb if enforce_memory else None, self.spec.timeout_s)
            self.invocations += 1
            return InvocationResult(request_id, reply["payload"], not reply["ok"], self.read_log(), time.perf_counter() - started,
                                    self.last_peak, self.init_s if cold else None, self.log_stream, self.init_logs if cold else None)
        except WorkerFailed as failure:
            logs = failure.logs or (self.read_log() + self.read_log("worker.log"))
            payload = dict(failure.payload)
            if payload["errorType"] in PLATFORM_ERRORS:  # the last output (faulthandler's dump) is in the logs, as on Lambda
                payload["errorMessage"] = f"RequestId: {request_id} Error: {payload['errorMessage']}"
            peak = failure.peak_bytes or self.peak_bytes()
            self.kill()
            init_logs = self.init_logs if cold and (self.ready or self.init_logs) else None
            return InvocationResult(request_id, payload, True, logs, time.perf_counter() - started, peak, None, self.log_stream, init_logs)
        except (OSError, ValueError) as exc:  # a broken pipe or an unreadable reply: the process is gone
            logs = self.read_log() + self.read_log("worker.log")
            code = self.process.poll() if self.process else None
            self.kill()
            logger.debug("environment %s: %s", self.pid, exc)
            payload = {"errorType": "Runtime.ExitError", "errorMessage": f"RequestId: {request_id} Error: {exit_reason(code)}"}
            return InvocationResult(request_id, payload, True, logs, time.perf_counter() - started, 0, None, self.log_stream)

    def healthy(self) -> bool:
        return self.ready and self.alive()

    def peak_bytes(self) -> int:
        """Peak RSS since the last reset: the worker's high-water mark (VmHWM) plus its descendants' RSS."""
        try:
            children = descendants_rss(self.pid)
            with open(f"/proc/{self.pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024 + children
            return psutil.Process(self.pid).memory_info().rss + children
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
            readable, _, _ = select.select([fd], [], [], max(0.0, min(_POLL_S, deadline - now)))  # what already waits is read first
            peak = max(peak, self.peak_bytes())
            if memory_mb is not None and peak > memory_mb * 2**20:
                raise self._fail("Runtime.OutOfMemory", exit_reason(-signal.SIGKILL), peak)  # Lambda's OOM kill; the REPORT line shows the peak
            if readable:
                chunk = os.read(fd, 65536)
                if not chunk:
                    code = self.process.wait(timeout=10)  # type: ignore[union-attr]
                    raise self._fail("Runtime.ExitError", exit_reason(code), peak)
                self.buffer += chunk
            elif now >= deadline:
                raise self._fail("Sandbox.Timedout", f"Task timed out after {timeout_s:.2f} seconds", max(peak, self.peak_bytes()))
        line, _, self.buffer = self.buffer.partition(b"\n")
        self.last_peak = peak or self.peak_bytes()  # polled once the reply was written: the invocation's peak (VmHWM only grows)
        return json.loads(line)

    def _fail(self, error_type: str, message: str, peak: int) -> WorkerFailed:
        """Kill the environment and describe why, with the peak memory it reached."""
        self.kill()
        failure = WorkerFailed(error_type, message)
        failure.peak_bytes = peak
        return failure
