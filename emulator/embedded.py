"""The embedded target's engine: moto's server in this process (``emulator.httpserver``: keep-alive connections)
plus the warm worker pool (``emulator.motoseam``).

moto's Step Functions interpreter calls Lambda and S3 back over HTTP on
``localhost:$MOTO_PORT``, so the port is exported before the server starts;
that makes one embedded emulator per process. State execution is switched on
through moto's config API (``execute_state_machine``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
import time
from typing import Any

import requests

from emulator.httpserver import KeepAliveMotoServer
from emulator.motoseam import install, pool_invoke, uninstall
from emulator.moto_speed import defer_batch_import, lock_routers, speed_up_moto
from emulator.sfn_patches import patch_step_functions
from emulator.sfn_limits import install_sfn_limits
from emulator.sfn_map_runs import install_map_runs
from emulator.pool import WorkerPool

logger = logging.getLogger(__name__)
_QUIET_LOGGERS = ("werkzeug", "moto.stepfunctions", "moto.core")
_active: "EmbeddedEmulator | None" = None  # moto's MOTO_PORT is per process: one emulator at a time


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class EmbeddedEmulator:
    """moto (S3, Lambda API, Step Functions, IAM, CloudWatch Logs) + our Lambda runner."""

    def __init__(self, port: int = 0, *, capacity: int = 2, capacities: dict[str, int] | None = None, torch_threads: int | None = None) -> None:
        self.port = port or free_port()
        self.capacity = capacity
        self.capacities = capacities
        self.torch_threads = torch_threads
        self.server: Any = None
        self.pool: WorkerPool | None = None
        self._saved_port: str | None = None
        self._previous_seam: Any = None
        self._patching: threading.Thread | None = None
        self._planned: dict[str, Any] = {}  # function name: the spec its environments started as (``prestart``)
        self._stopped = False

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait: bool = True) -> "EmbeddedEmulator":
        """Serve; with ``wait`` False, return once S3, IAM and Lambda answer, while Step Functions' parser
        (about a second of imports) loads in the background: call :meth:`ready` before starting an execution."""
        global _active
        if _active is not None:
            raise RuntimeError("an embedded emulator is already running in this process (moto's MOTO_PORT is per process)")
        _active = self
        self._stopped = False
        for name in _QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        # moto logs every failed state as an ERROR with the state's whole repr; the execution
        # history and our rank records carry the failure already.
        logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
        self._saved_port = os.environ.get("MOTO_PORT")
        os.environ["MOTO_PORT"] = str(self.port)
        from emulator import lambda_rules  # moto's core: imported here, after any prestart's workers are on their way

        self._previous_seam = install(pool_invoke(self._worker_pool()))
        lambda_rules.install(self.pool)  # Lambda's limits, validation and throttling, which moto does not enforce
        lock_routers()  # before the first requests, which a deploy sends side by side
        self._patching = threading.Thread(target=_prepare_moto, name="moto-sfn-import", daemon=True)
        self._patching.start()
        self.server = KeepAliveMotoServer("127.0.0.1", self.port)
        self.server.start()
        self._wait_ready()
        response = requests.post(f"{self.endpoint_url}/moto-api/config", json={"stepfunctions": {"execute_state_machine": True}}, timeout=10)
        response.raise_for_status()
        if wait:
            self.ready()
        logger.info("embedded emulator on %s", self.endpoint_url)
        return self

    def _worker_pool(self) -> WorkerPool:
        """The pool, made at the first need: ``prestart`` may come before ``start``."""
        if self.pool is None:
            self.pool = WorkerPool(self.endpoint_url, capacity=self.capacity, capacities=self.capacities, torch_threads=self.torch_threads)
        return self.pool

    def ready(self) -> None:
        """Block until every service is ready (Step Functions' patches installed)."""
        if self._patching is not None:
            self._patching.join()

    def prewarm(self, function_arn: str, count: int | None = None) -> None:
        """Start ``count`` (default: its capacity) execution environments of a function version now, so they
        import the handler while the caller goes on (Lambda's provisioned concurrency, in effect)."""
        from moto.awslambda.models import lambda_backends

        from emulator.motoseam import function_spec

        if self.pool is None:
            return
        region, account = function_arn.split(":")[3], function_arn.split(":")[4]
        fn = lambda_backends[account][region].get_function(function_arn)  # the version the ARN names
        spec = function_spec(fn)
        planned = self._planned.pop(spec.name, None)
        if planned is not None and planned != spec:  # a bug: the planned environments are retired, new ones start
            differ = [f.name for f in dataclasses.fields(spec) if getattr(spec, f.name) != getattr(planned, f.name)]
            logger.warning("%s: the environments started before its deploy do not match version %s (%s): started again",
                           spec.name, spec.version, ", ".join(differ))
        self.pool.prewarm(spec, getattr(fn, "code_bytes", b"") or b"", count)

    def prestart(self, account: str, region: str, request: dict[str, Any], count: int | None = None) -> None:
        """Start ``count`` (default: its capacity) environments of a function a deploy is about to create
        (CreateFunction's parameters), as its first version will be, so they import the handler while the deploy
        creates it; ``prewarm`` then finds them. Nothing when the function exists (its next version is not known).

        Before :meth:`start` (the server not serving, moto holding nothing yet), the workers start at once,
        before moto's imports: their own imports overlap the whole start."""
        from emulator.motoseam import planned_spec

        if self._stopped:
            return
        if self.server is not None:
            from moto.awslambda.exceptions import UnknownFunctionException
            from moto.awslambda.models import lambda_backends

            try:
                lambda_backends[account][region].get_function(request["FunctionName"])
                return
            except UnknownFunctionException:  # not created yet
                pass
        spec = planned_spec(request, region)
        self._planned[spec.name] = spec
        self._worker_pool().prewarm(spec, (request.get("Code") or {}).get("ZipFile") or b"", count)

    def _wait_ready(self, timeout_s: float = 15.0) -> None:
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            try:
                requests.get(f"{self.endpoint_url}/moto-api/config", timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.05)
        raise RuntimeError(f"moto server did not answer on {self.endpoint_url} within {timeout_s:.0f} s")

    def set_capacity(self, function_name: str, capacity: int) -> None:
        """Bound a function's concurrent execution environments (the Map's MaxConcurrency)."""
        if self.pool is not None:
            self.pool.capacities[function_name] = capacity

    def worker_pids(self) -> list[int]:
        return self.pool.worker_pids() if self.pool else []

    def stop(self) -> None:
        """Stop the workers, and what :meth:`start` set up if it ran (safe after a prestart whose start failed)."""
        global _active
        self._stopped = True
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None
        if _active is not self:  # never started (or another emulator runs): moto's port and seam are not ours
            return
        if self._previous_seam is not None:
            uninstall(self._previous_seam)
            self._previous_seam = None
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self._saved_port is None:
            os.environ.pop("MOTO_PORT", None)
        else:
            os.environ["MOTO_PORT"] = self._saved_port
        _active = None

    def __enter__(self) -> "EmbeddedEmulator":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _prepare_moto() -> None:
    """moto's Step Functions parser: imported, made faithful (``sfn_patches``) and fast (``moto_speed``)."""
    defer_batch_import()  # before the parser's import, which would pull in moto.batch and EC2's models
    patch_step_functions()
    install_map_runs()  # Distributed Map tolerance, integer percentages, child executions
    install_sfn_limits()  # States.ALL does not catch States.DataLimitExceeded
    speed_up_moto()
