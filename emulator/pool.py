"""A warm pool of Lambda execution environments, for a host that does not keep environments itself (moto).

:class:`WorkerPool` keeps warm ``emulator.environment.Environment`` processes per
function version (code hash + configuration), reused across invocations, at
most ``capacity`` busy per function; each gets ``torch_threads`` intra-op
threads (default: the cores shared among the busy ones). A failed environment
(timeout, out of memory, crash) is dropped and a replacement started, so the
pool stays warm. Everything lives under a temp folder (``cosmicai-lambda-*``)
removed on shutdown.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import threading
import shutil
import uuid
import zipfile
from typing import Any

from emulator.environment import Environment, FunctionSpec, InvocationResult, WorkerFailed
from emulator.runtimes import ImageNotFound, lambda_environment, load_local_image, runtime_dir
from emulator.state import owned_tempdir, sweep_stale_tempdirs

TEMP_PREFIX = "cosmicai-lambda-"  # the pool's folder: cosmicai-lambda-<pid>-<random>

logger = logging.getLogger(__name__)


def unpack_code(code: bytes, root: str, spec: FunctionSpec) -> str:
    """The function's zip unpacked once under ``root/code/<sha256>`` (members that escape it are refused)."""
    path = os.path.join(root, "code", spec.code_sha)
    if os.path.isdir(path):
        return path
    if not code:
        raise WorkerFailed("Runtime.InvalidEntrypoint", f"function {spec.name}: no code found")
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


def code_location(spec: FunctionSpec, code: bytes, root: str) -> tuple[str, str]:
    """(task root, handler) of a function: its unpacked zip and Handler, or its image's files and CMD
    (ImageConfig.Command first), from the local image store."""
    if not spec.image_uri:
        if not spec.runtime.startswith("python"):
            raise WorkerFailed("Runtime.InvalidEntrypoint", f"function {spec.name}: runtime {spec.runtime}: the emulator runs Python runtimes only")
        return unpack_code(code, root, spec), spec.handler
    try:
        task, command = load_local_image(spec.image_uri)
    except ImageNotFound as exc:
        raise WorkerFailed("Runtime.InvalidEntrypoint", str(exc)) from None
    handler = (spec.image_command or tuple(command) or ("",))[0]
    return task, handler


class FunctionPool:
    """The warm environments of one function version, at most ``capacity`` busy at once."""

    def __init__(self, spec: FunctionSpec, code_dir: str, root: str, env: dict[str, str], capacity: int, handler: str = "") -> None:
        self.spec, self.code_dir, self.root, self.env, self.handler = spec, code_dir, root, env, handler or spec.handler
        self.capacity = capacity
        self.slots = threading.BoundedSemaphore(capacity)
        self.idle: list[Environment] = []
        self.all: list[Environment] = []
        self.lock = threading.Lock()
        self.started_workers = 0
        self.retiring = False  # a newer version of the function exists: keep no idle environment
        self.closed = False  # shut down: an environment that finishes starting now is killed at once

    def _start(self) -> Environment:
        environment = Environment(self.spec, self.code_dir, self.env, self.root, handler=self.handler).start()
        with self.lock:
            if not self.closed:
                self.all.append(environment)
                self.started_workers += 1
                return environment
        environment.kill()  # a prewarm or a replacement that raced the shutdown: no worker, no folder outlives it
        environment.cleanup()
        raise WorkerFailed("Lambda.ServiceException", "the emulator is shutting down")

    def acquire(self) -> Environment:
        self.slots.acquire()
        with self.lock:
            self.retiring = False  # invoked again (a run that started before the newer version still uses it)
            while self.idle:
                environment = self.idle.pop()
                if environment.alive():
                    return environment
        try:
            return self._start()
        except BaseException:
            self.slots.release()
            raise

    def release(self, environment: Environment) -> None:
        """Back to the idle list if it is healthy; else dropped, and a replacement started so the pool stays warm."""
        healthy = environment.healthy()
        with self.lock:
            keep = healthy and not self.retiring
            if keep:
                self.idle.append(environment)
            elif environment in self.all:
                self.all.remove(environment)
        if not keep:
            environment.stop(grace_s=1.0 if healthy else 0.0)
            environment.cleanup()
            if not healthy and not self.retiring:
                self._replace()
        self.slots.release()

    def retire(self) -> None:
        """A newer version of the function exists: stop the idle environments; busy ones stop when they finish."""
        with self.lock:
            self.retiring = True
            idle, self.idle = self.idle, []
            self.all = [e for e in self.all if e not in idle]
        for environment in idle:
            environment.stop(grace_s=1.0)
            environment.cleanup()

    def _replace(self) -> None:
        try:
            environment = self._start()
        except WorkerFailed:
            return  # shutting down
        except OSError as exc:
            logger.warning("could not start a replacement worker for %s: %s", self.spec.name, exc)
            return
        with self.lock:
            self.idle.append(environment)

    def shutdown(self) -> None:
        """Kill every environment at once: the service is going away, as Lambda's sandboxes do (no grace)."""
        with self.lock:
            self.closed = True
            environments, self.all, self.idle = list(self.all), [], []
        for environment in environments:
            environment.kill()


class WorkerPool:
    """Every function's warm environments, for a host that does not keep environments itself."""

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
        sweep_stale_tempdirs(TEMP_PREFIX)  # what a killed emulator left behind
        self.root = owned_tempdir(TEMP_PREFIX)
        self.pools: dict[FunctionSpec, FunctionPool] = {}
        self.lock = threading.Lock()
        self.closed = False

    def _environment(self, spec: FunctionSpec, capacity: int, handler: str = "") -> dict[str, str]:
        threads = self.torch_threads or max(1, (os.cpu_count() or 1) // capacity)
        return lambda_environment(spec, self.endpoint_url, threads, str(runtime_dir(spec.runtime)), handler)

    def _pool(self, spec: FunctionSpec, code: bytes) -> FunctionPool:
        with self.lock:
            if self.closed:
                raise WorkerFailed("Lambda.ServiceException", "the emulator is shutting down")
            pool = self.pools.get(spec)
            if pool is None:
                for old in [p for s, p in self.pools.items() if s.name == spec.name]:  # a newer version: retire the old one's idle workers
                    threading.Thread(target=old.retire, daemon=True).start()  # (a run still using it keeps its busy ones)
                capacity = self.capacities.get(spec.name, self.capacity)
                code_dir, handler = code_location(spec, code, self.root)
                pool = FunctionPool(spec, code_dir, self.root, self._environment(spec, capacity, handler), capacity, handler)
                self.pools[spec] = pool
            return pool

    def prewarm(self, spec: FunctionSpec, code: bytes, count: int | None = None) -> None:
        """Start up to ``count`` idle environments of ``spec`` now (they import the handler in the background)."""
        pool = self._pool(spec, code)
        wanted = pool.capacity if count is None else min(count, pool.capacity)
        with pool.lock:
            missing = wanted - len(pool.all)
        for _ in range(max(0, missing)):
            environment = pool._start()  # WorkerFailed once the pool shuts down
            with pool.lock:
                pool.idle.append(environment)

    def invoke(self, spec: FunctionSpec, code: bytes, event: Any) -> InvocationResult:
        """Run one invocation of ``spec`` (its zip ``code``) on a warm environment."""
        try:
            pool = self._pool(spec, code)
        except WorkerFailed as failure:
            return InvocationResult(str(uuid.uuid4()), failure.payload, True, failure.logs, 0.0, 0)
        environment = pool.acquire()
        try:
            return environment.invoke(event, enforce_memory=self.enforce_memory)
        finally:
            pool.release(environment)

    def worker_pids(self) -> list[int]:
        with self.lock:
            return [e.pid for pool in self.pools.values() for e in pool.all if e.alive()]

    def shutdown(self) -> None:
        with self.lock:
            self.closed = True
            pools, self.pools = list(self.pools.values()), {}
        for pool in pools:
            pool.shutdown()
        shutil.rmtree(self.root, ignore_errors=True)
