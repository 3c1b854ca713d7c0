"""Our Lambda runtime executor for LocalStack 4.14.0: each execution environment is one of our worker processes.

LocalStack picks a runtime executor by name (``LAMBDA_RUNTIME_EXECUTOR``) from
the plux entry-point group ``localstack.lambda.runtime_executor``;
``pyproject.toml`` registers :class:`ProcessRuntimeExecutorPlugin` there as
``cosmicai-process``. This module runs inside LocalStack's own interpreter
(Python >= 3.13, its venv): it imports LocalStack, psutil,
``emulator.environment`` (with ``emulator.proctree``) and ``emulator.runtimes`` only. Each LocalStack execution environment hosts one
``emulator.environment.Environment``: a worker process running the project's
Python (``COSMICAI_WORKER_PYTHON``), the same component and worker protocol the
embedded target's pool uses: a zip function in its runtime (the standard library
and the SDK, from a runtime folder that interpreter builds), an image function
(PackageType Image: LocalStack's community edition runs none without this
executor) from the local image store in the project's environment, with the
image's CMD (or ImageConfig.Command) as its handler. The environment enforces
the function's Timeout and MemorySize and shapes Lambda's errors; this module
maps LocalStack's calls onto it and returns Lambda's START/END/REPORT lines as
the invocation's logs, which LocalStack writes to CloudWatch Logs and to
``LogResult``. The workers are in LocalStack's process group and exit when it dies.

LocalStack's seam (``localstack/services/lambda_/invocation/runtime_executor.py``):
``start(env_vars)`` blocks until ready; ``invoke(payload) -> InvocationResult``
returns the result (LocalStack enforces no Timeout for a custom executor);
``stop()``; ``prepare_version`` must unzip the code. Function failures are
returned as error results, never raised (a raise becomes a 500 ServiceException).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from typing import Any

from localstack import config
from localstack.aws.api.lambda_ import PackageType
from localstack.services.lambda_.invocation.lambda_models import FunctionVersion, InvocationResult
from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin
from localstack.services.lambda_.invocation.runtime_executor import RuntimeExecutor

from emulator.environment import Environment, FunctionSpec, WorkerFailed, log_text
from emulator.environment import InvocationResult as Result
from emulator.runtimes import lambda_environment, load_local_image, runtime_dir_of

LOG = logging.getLogger(__name__)

NAME = "cosmicai-process"
WORKER_PYTHON = os.environ.get("COSMICAI_WORKER_PYTHON", "python3")
_CONTAINER_VARS = ("LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "AWS_EXECUTION_ENV")  # LocalStack's container paths and names: ours win
_RUNTIME_DIRS: dict[str, str] = {}  # runtime -> its runtime folder, built by the worker's interpreter


def _loopback() -> str:
    host = config.GATEWAY_LISTEN[0].host
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def function_spec(version: FunctionVersion) -> FunctionSpec:
    """The FunctionSpec of a LocalStack function version."""
    cfg = version.config
    code = cfg.code
    image = cfg.image.image_uri if cfg.package_type == PackageType.Image and cfg.image else ""
    return FunctionSpec(
        name=version.id.function_name,
        handler=cfg.handler or "",
        code_sha=getattr(code, "code_sha256", "") or image or version.id.qualifier,
        timeout_s=float(cfg.timeout or 3),
        memory_mb=int(cfg.memory_size or 128),
        environment=tuple(sorted((cfg.environment or {}).items())),
        region=version.id.region,
        runtime=cfg.runtime or "python3.12",  # an image function: the project image's base (inference/Dockerfile)
        version=version.id.qualifier,
        image_uri=image or "",
        image_command=tuple((cfg.image_config.command if cfg.image_config else None) or ()),
        ephemeral_mb=int(cfg.ephemeral_storage.size if cfg.ephemeral_storage else 512),
    )


def runtime_folder(runtime: str) -> str:
    if runtime not in _RUNTIME_DIRS:
        _RUNTIME_DIRS[runtime] = str(runtime_dir_of(runtime, WORKER_PYTHON))
    return _RUNTIME_DIRS[runtime]


class ProcessRuntimeExecutor(RuntimeExecutor):
    """One LocalStack execution environment = one ``emulator.environment.Environment`` (a worker process)."""

    def __init__(self, id: str, function_version: FunctionVersion) -> None:
        super().__init__(id, function_version)
        self.spec = function_spec(function_version)
        self.root = tempfile.mkdtemp(prefix=f"lambda-{id[:8]}-")
        self.env: dict[str, str] = {}
        self.handler = self.spec.handler
        self.code_dir = ""
        self.environment: Environment | None = None
        self.init_failure: Result | None = None  # an init error, returned by the next invoke (as Lambda does)
        self.lock = threading.Lock()
        self.stopped = False

    def _code_dir(self) -> str:
        """The task root: the unzipped code, or the image's files (and its CMD becomes the handler)."""
        if self.spec.image_uri:
            task, command = load_local_image(self.spec.image_uri)
            self.handler = (self.spec.image_command or tuple(command) or ("",))[0]
            return task
        return str(self.function_version.config.code.get_unzipped_code_location())

    def _boot(self, request_id: str = "") -> None:
        """Start a worker and wait until the handler is imported; an init error is kept for the next invoke."""
        self.init_failure = None
        self.environment = Environment(self.spec, self.code_dir, self.env, self.root, python=WORKER_PYTHON, handler=self.handler).start()
        try:
            self.environment.wait_ready()  # within the init limit; past it, the first invoke retries the init (Lambda's rule)
        except WorkerFailed as failure:
            if self.stopped:
                raise RuntimeError("execution environment stopped during start-up") from None
            self.environment.kill()
            self.init_failure = Result(request_id, dict(failure.payload), True, failure.logs, 0.0, 0)

    # -- RuntimeExecutor ----------------------------------------------------------------

    def start(self, env_vars: dict[str, str]) -> None:
        """The environment's variables: ours (``emulator.runtimes.lambda_environment``: no host variable), then
        LocalStack's (credentials, log stream, its own), less its container paths; the function's own last."""
        self.code_dir = self._code_dir()  # an image no deploy built here: ImageNotFound, the environment fails to start
        threads = int(os.environ.get("COSMICAI_TORCH_THREADS", "1"))
        endpoint = f"http://{self.get_endpoint_from_executor()}:{config.GATEWAY_LISTEN[0].port}"
        env = lambda_environment(self.spec, endpoint, threads, runtime_folder(self.spec.runtime), self.handler)
        env.update({k: str(v) for k, v in env_vars.items() if k not in _CONTAINER_VARS})  # LocalStack passes some ints
        env.update(dict(self.spec.environment))
        self.env = env
        with self.lock:
            self._boot()

    def stop(self) -> None:
        self.stopped = True
        if self.environment is not None:
            self.environment.stop(grace_s=2.0)
            self.environment.cleanup()

    def get_address(self) -> str:
        return "127.0.0.1"

    def get_endpoint_from_executor(self) -> str:
        return _loopback()

    def get_runtime_endpoint(self) -> str:  # only for the Go init's callbacks, which our worker does not make
        return f"http://{_loopback()}:{config.GATEWAY_LISTEN[0].port}/_localstack_lambda/{self.id}"

    def invoke(self, payload: dict[str, Any]) -> InvocationResult:
        request_id = payload["invoke-id"]
        raw = payload.get("payload") or "{}"
        try:
            event = json.loads(raw)
        except ValueError:
            event = raw
        with self.lock:
            usable = self.environment is not None and (self.environment.alive() or self.environment.init_retry)
            if self.init_failure is None and not usable:
                self._boot(request_id)  # the last worker timed out or crashed: a fresh environment, as on Lambda
            if self.init_failure is not None:
                result, self.init_failure = self.init_failure, None  # the next invoke tries the init again
                result.request_id = request_id
            else:
                result = self.environment.invoke(event, request_id)  # type: ignore[union-attr]
        return InvocationResult(
            request_id=request_id,
            payload=json.dumps(result.payload).encode(),
            is_error=result.errored,
            logs=log_text(self.spec, result) + "\n",
        )

    def get_logs(self) -> str:
        return self.environment.read_log("worker.log") if self.environment else ""

    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        cfg = function_version.config
        if cfg.package_type == PackageType.Image:
            return  # run from the local image store (emulator.runtimes), in the project's environment
        if not (cfg.runtime or "").startswith("python"):
            raise ValueError(f"{NAME} runs Python runtimes and images only (got {cfg.package_type} {cfg.runtime})")
        if cfg.code:
            cfg.code.prepare_for_execution()  # unzips to <tempdir>/lambda/<bucket>/<id>/code

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        pass  # LocalStack removes the unzipped code itself

    @classmethod
    def validate_environment(cls) -> bool:
        if not os.access(WORKER_PYTHON, os.X_OK):
            LOG.warning("%s: the worker interpreter %s is not executable", NAME, WORKER_PYTHON)
            return False
        return True


class ProcessRuntimeExecutorPlugin(RuntimeExecutorPlugin):
    """The plux plugin LocalStack looks up by ``name`` in ``localstack.lambda.runtime_executor``."""

    name = NAME

    def load(self, *args: Any, **kwargs: Any) -> type[ProcessRuntimeExecutor]:
        return ProcessRuntimeExecutor
