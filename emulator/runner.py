"""The warm Lambda worker pool: executes moto's Lambda functions without Docker.

moto runs Lambda code only through Docker; its one seam is
``moto.awslambda.models.LambdaFunction._invoke_lambda(self, event) -> (payload,
errored, logs)``. ``install(pool)`` replaces it with ``pool.invoke``, which
emulates Lambda's execution environments:

- warm worker processes per function version (code hash + configuration),
  reused across invocations, at most ``capacity`` of them busy at once;
- each worker gets the function's environment plus ``AWS_ENDPOINT_URL`` and
  dummy credentials, and ``torch_threads`` intra-op threads;
- ``Timeout`` and ``MemorySize`` (on RSS) enforced by killing the worker, a
  crash reported with its stack trace, and a replacement worker started;
- each invocation's output written to CloudWatch Logs (``/aws/lambda/<fn>``)
  with Lambda's START/END/REPORT lines.

Artifacts: ``<root>/code/<sha256>/`` (the unzipped function code) and
``<root>/workers/<n>/{worker,invoke}.log``, under a temp folder removed on shutdown.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from typing import Any

import psutil

logger = logging.getLogger(__name__)

SEAM = "_invoke_lambda"
_INIT_TIMEOUT_S = 120.0  # Lambda's init phase limit is separate from the function's Timeout
_POLL_S = 0.05
_LOG_TAIL_BYTES = 4096  # Lambda returns the last 4 KB of logs in x-amz-log-result
_HOST_ONLY_VARS = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE")


class WorkerFailed(Exception):
    """A worker died, timed out or ran out of memory; carries the Lambda error payload."""

    def __init__(self, error_type: str, message: str, logs: str = "") -> None:
        super().__init__(message)
        self.payload = {"errorType": error_type, "errorMessage": message}
        self.logs = logs


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

    @classmethod
    def from_moto(cls, fn: Any) -> "FunctionSpec":
        code = getattr(fn, "code_bytes", b"") or b""
        return cls(
            name=fn.function_name,
            handler=fn.handler or "",
            code_sha=hashlib.sha256(code).hexdigest(),
            timeout_s=float(fn.timeout or 3),
            memory_mb=int(fn.memory_size or 128),
            environment=tuple(sorted((str(k), str(v)) for k, v in (fn.environment_vars or {}).items())),
            region=fn.region,
        )


@dataclass
class Worker:
    """One warm execution environment (a child process)."""

    spec: FunctionSpec
    process: subprocess.Popen
    log_dir: str
    buffer: bytes = b""
    ready: bool = False
    invocations: int = 0
    started: float = field(default_factory=time.perf_counter)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        try:
            for child in psutil.Process(self.pid).children(recursive=True):
                child.kill()
        except psutil.Error:
            pass
        if self.alive():
            self.process.kill()
        self.process.wait(timeout=10)
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass

    def rss_bytes(self) -> int:
        try:
            proc = psutil.Process(self.pid)
            return proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
        except psutil.Error:
            return 0

    def send(self, message: dict[str, Any]) -> None:
        self.process.stdin.write((json.dumps(message) + "\n").encode())
        self.process.stdin.flush()

    def read_log(self, name: str = "invoke.log") -> str:
        try:
            with open(os.path.join(self.log_dir, name), encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except OSError:
            return ""

    def receive(self, deadline: float, memory_mb: int | None, timeout_s: float) -> dict[str, Any]:
        """Wait for one message until deadline, enforcing memory; raise WorkerFailed."""
        fd = self.process.stdout.fileno()
        peak = 0
        while b"\n" not in self.buffer:
            now = time.time()
            if now >= deadline:
                self.kill()
                raise WorkerFailed("Sandbox.Timedout", f"Task timed out after {timeout_s:.2f} seconds")
            readable, _, _ = select.select([fd], [], [], min(_POLL_S, deadline - now))
            if memory_mb is not None:
                rss = self.rss_bytes()
                peak = max(peak, rss)
                if rss > memory_mb * 2**20:
                    self.kill()
                    raise WorkerFailed(
                        "Runtime.OutOfMemory",
                        f"Runtime exited with error: out of memory (RSS {rss / 2**20:.0f} MB > MemorySize {memory_mb} MB)",
                    )
            if readable:
                chunk = os.read(fd, 65536)
                if not chunk:
                    code = self.process.wait(timeout=10)
                    how = f"signal {-code}" if code < 0 else f"exit status {code}"
                    raise WorkerFailed("Runtime.ExitError", f"Runtime exited with error: {how}")
                self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return json.loads(line)


class FunctionPool:
    """The warm workers of one function version, at most ``capacity`` busy at once."""

    def __init__(self, spec: FunctionSpec, code_dir: str, root: str, env: dict[str, str], capacity: int) -> None:
        self.spec, self.code_dir, self.root, self.env = spec, code_dir, root, env
        self.capacity = capacity
        self.slots = threading.BoundedSemaphore(capacity)
        self.idle: list[Worker] = []
        self.all: list[Worker] = []
        self.lock = threading.Lock()
        self.started_workers = 0

    def _start(self) -> Worker:
        log_dir = tempfile.mkdtemp(prefix="worker-", dir=self.root)
        env = dict(self.env, TMPDIR=log_dir)
        process = subprocess.Popen(
            [sys.executable, "-m", "emulator.worker", self.code_dir, self.spec.handler, log_dir],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=self.code_dir,
        )
        worker = Worker(self.spec, process, log_dir)
        with self.lock:
            self.all.append(worker)
            self.started_workers += 1
        return worker

    def acquire(self) -> Worker:
        self.slots.acquire()
        with self.lock:
            while self.idle:
                worker = self.idle.pop()
                if worker.alive():
                    return worker
        try:
            return self._start()
        except BaseException:
            self.slots.release()
            raise

    def release(self, worker: Worker, healthy: bool) -> None:
        with self.lock:
            if healthy and worker.alive():
                self.idle.append(worker)
            else:
                if worker in self.all:
                    self.all.remove(worker)
                shutil.rmtree(worker.log_dir, ignore_errors=True)
        if not healthy:
            self._replace()
        self.slots.release()

    def _replace(self) -> None:
        """Start a replacement environment now, so the pool stays warm after a failure."""
        try:
            worker = self._start()
        except OSError as exc:
            logger.warning("could not start a replacement worker for %s: %s", self.spec.name, exc)
            return
        with self.lock:
            self.idle.append(worker)

    def shutdown(self) -> None:
        with self.lock:
            workers, self.all, self.idle = list(self.all), [], []
        for worker in workers:
            if worker.alive():
                try:
                    worker.send({"op": "stop"})
                except OSError:
                    pass
        deadline = time.time() + 5
        for worker in workers:
            try:
                worker.process.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                pass
            worker.kill()


class WorkerPool:
    """All functions' execution environments behind moto's Lambda seam."""

    def __init__(
        self,
        endpoint_url: str,
        *,
        capacity: int = 2,
        capacities: dict[str, int] | None = None,
        torch_threads: int | None = None,
        enforce_memory: bool = True,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.capacity = capacity
        self.capacities = dict(capacities or {})
        self.torch_threads = torch_threads
        self.enforce_memory = enforce_memory
        self.root = tempfile.mkdtemp(prefix="cosmicai-lambda-")
        self.pools: dict[FunctionSpec, FunctionPool] = {}
        self.lock = threading.Lock()
        self._ids = itertools.count(1)
        self.closed = False

    # -- environments ---------------------------------------------------------

    def _code_dir(self, fn: Any, spec: FunctionSpec) -> str:
        path = os.path.join(self.root, "code", spec.code_sha)
        if not os.path.isdir(path):
            code = getattr(fn, "code_bytes", b"") or b""
            if not code:
                raise WorkerFailed("Runtime.InvalidEntrypoint", f"function {spec.name}: the embedded runner runs zip packages only (no code found)")
            staging = tempfile.mkdtemp(dir=self.root)
            with zipfile.ZipFile(io.BytesIO(code)) as archive:
                for member in archive.namelist():
                    target = os.path.realpath(os.path.join(staging, member))
                    if not target.startswith(os.path.realpath(staging) + os.sep):
                        raise WorkerFailed("Runtime.InvalidZipFileException", f"function {spec.name}: zip member {member!r} escapes the code folder")
                archive.extractall(staging)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            try:
                os.rename(staging, path)
            except OSError:
                shutil.rmtree(staging, ignore_errors=True)
        return path

    def _environment(self, spec: FunctionSpec, capacity: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k not in _HOST_ONLY_VARS and not k.startswith("MOTO_")}
        threads = self.torch_threads or max(1, (os.cpu_count() or 1) // capacity)
        env.update(
            {
                "AWS_ENDPOINT_URL": self.endpoint_url,
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
        pythonpath = [p for p in sys.path if p and os.path.isdir(p)]
        env["PYTHONPATH"] = os.pathsep.join(pythonpath)
        env.update(dict(spec.environment))
        return env

    def _pool(self, fn: Any) -> FunctionPool:
        spec = FunctionSpec.from_moto(fn)
        with self.lock:
            if self.closed:
                raise WorkerFailed("Lambda.ServiceException", "the emulator is shutting down")
            pool = self.pools.get(spec)
            if pool is None:
                for old_spec in [s for s in self.pools if s.name == spec.name]:
                    threading.Thread(target=self.pools.pop(old_spec).shutdown, daemon=True).start()
                capacity = self.capacities.get(spec.name, self.capacity)
                pool = FunctionPool(spec, self._code_dir(fn, spec), self.root, self._environment(spec, capacity), capacity)
                self.pools[spec] = pool
            return pool

    # -- invocation -------------------------------------------------------------

    def invoke(self, fn: Any, event: Any) -> tuple[str, bool, str]:
        """moto's seam: run one invocation; return (payload JSON, errored, logs)."""
        request_id = str(uuid.uuid4())
        fn.logs_backend.ensure_log_group(fn.logs_group_name)
        try:
            pool = self._pool(fn)
        except WorkerFailed as failure:
            return self._finish(fn, request_id, failure.payload, True, failure.logs, 0.0, 0)
        worker = pool.acquire()
        healthy, logs, started = False, "", time.perf_counter()
        try:
            if not worker.ready:
                reply = worker.receive(time.time() + _INIT_TIMEOUT_S, None, _INIT_TIMEOUT_S)
                if reply.get("op") == "init_error":
                    logs = worker.read_log("worker.log")
                    error = reply["error"]
                    return self._finish(fn, request_id, {**error, "errorType": f"Runtime.ImportModuleError"}, True, logs, 0.0, 0)
                worker.ready = True
            started = time.perf_counter()
            deadline = time.time() + pool.spec.timeout_s
            worker.send({"op": "invoke", "event": event, "request_id": request_id, "deadline": deadline})
            limit = pool.spec.memory_mb if self.enforce_memory else None
            reply = worker.receive(deadline, limit, pool.spec.timeout_s)
            worker.invocations += 1
            healthy = True
            logs = worker.read_log()
            return self._finish(fn, request_id, reply["payload"], not reply["ok"], logs, time.perf_counter() - started, worker.rss_bytes())
        except WorkerFailed as failure:
            logs = worker.read_log() + worker.read_log("worker.log")
            payload = dict(failure.payload)
            if payload["errorType"] == "Runtime.ExitError":
                payload["stackTrace"] = logs.splitlines()[-30:]  # faulthandler's dump, or the last output
            return self._finish(fn, request_id, payload, True, logs, time.perf_counter() - started, 0)
        except (OSError, ValueError) as exc:
            logs = worker.read_log() + worker.read_log("worker.log")
            payload = {"errorType": "Runtime.ExitError", "errorMessage": f"Runtime exited with error: {exc}"}
            return self._finish(fn, request_id, payload, True, logs, time.perf_counter() - started, 0)
        finally:
            if not healthy:
                worker.kill()
            pool.release(worker, healthy)

    def _finish(self, fn: Any, request_id: str, payload: Any, errored: bool, logs: str, duration_s: float, rss: int) -> tuple[str, bool, str]:
        """Write the invocation's CloudWatch log stream; shape moto's return value."""
        spec_memory = int(fn.memory_size or 128)
        lines = [f"START RequestId: {request_id} Version: $LATEST", *logs.splitlines()]
        if errored and isinstance(payload, dict):
            lines.append(json.dumps(payload))
        lines.append(f"END RequestId: {request_id}")
        lines.append(
            f"REPORT RequestId: {request_id}\tDuration: {duration_s * 1000:.2f} ms\tBilled Duration: {max(1, round(duration_s * 1000))} ms"
            f"\tMemory Size: {spec_memory} MB\tMax Memory Used: {rss // 2**20} MB"
        )
        text = "\n".join(lines)
        try:
            fn.save_logs(text)
        except Exception as exc:  # logs are best effort; the invocation's result is not
            logger.warning("could not write logs for %s: %s", fn.function_name, exc)
        body = json.dumps(payload)
        return body, errored, text[-_LOG_TAIL_BYTES:]

    # -- lifecycle --------------------------------------------------------------

    def worker_pids(self) -> list[int]:
        with self.lock:
            return [w.pid for pool in self.pools.values() for w in pool.all if w.alive()]

    def shutdown(self) -> None:
        with self.lock:
            self.closed = True
            pools, self.pools = list(self.pools.values()), {}
        stoppers = [threading.Thread(target=pool.shutdown) for pool in pools]  # each waits up to 5 s: in parallel
        for stopper in stoppers:
            stopper.start()
        for stopper in stoppers:
            stopper.join()
        shutil.rmtree(self.root, ignore_errors=True)


def seam_owner() -> Any:
    from moto.awslambda.models import LambdaFunction

    return LambdaFunction


def install(pool: WorkerPool) -> Any:
    """Route moto's Lambda invocations to the pool; return what was there, for ``uninstall``."""
    owner = seam_owner()
    previous = getattr(owner, SEAM, None)
    if not callable(previous):
        raise RuntimeError(f"moto moved its Lambda seam: {owner.__name__}.{SEAM} is gone; pin moto~=5.2.5")

    def _invoke_lambda(self: Any, event: Any = None) -> tuple[str, bool, str]:
        return pool.invoke(self, event if event is not None else {})

    setattr(owner, SEAM, _invoke_lambda)
    return previous


def uninstall(previous: Any) -> None:
    """Put back what ``install`` replaced."""
    setattr(seam_owner(), SEAM, previous)
