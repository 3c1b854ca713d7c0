"""moto's Lambda seam: its functions run on our warm worker pool instead of Docker.

moto runs Lambda code only through Docker; its one seam is
``moto.awslambda.models.LambdaFunction._invoke_lambda(self, event) -> (payload,
errored, logs)``. :func:`install` replaces it with a function that runs the
invocation on an ``emulator.pool.WorkerPool`` and writes its CloudWatch log
stream (``/aws/lambda/<function>``) through moto's own logs backend. A
contract test (tests/unit/test_moto_seam.py) fails if a moto upgrade moves it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any, Callable

from emulator.environment import LOG_TAIL_BYTES, FunctionSpec, log_stream_name, log_text
from emulator.pool import WorkerPool

logger = logging.getLogger(__name__)

SEAM = "_invoke_lambda"
Invoke = Callable[[Any, Any], tuple[str, bool, str]]


def function_spec(fn: Any) -> FunctionSpec:
    """The FunctionSpec of a moto ``LambdaFunction`` (its code and configuration)."""
    code = getattr(fn, "code_bytes", b"") or b""
    image = (fn.code or {}).get("ImageUri", "") if getattr(fn, "package_type", "Zip") == "Image" else ""
    return FunctionSpec(
        name=fn.function_name,
        handler=fn.handler or "",
        code_sha=hashlib.sha256(image.encode() if image else code).hexdigest(),
        timeout_s=float(fn.timeout or 3),
        memory_mb=int(fn.memory_size or 128),
        environment=tuple(sorted((str(k), str(v)) for k, v in (fn.environment_vars or {}).items())),
        region=fn.region,
        runtime=fn.run_time or "python3.12",  # an image function: the project image's base (inference/Dockerfile)
        version=str(fn.version),
        image_uri=image,
        image_command=tuple(fn.image_config.cmd or ()) if image else (),
        ephemeral_mb=int(fn.ephemeral_storage or 512),
    )


def planned_spec(request: dict[str, Any], region: str, version: str = "1") -> FunctionSpec:
    """The FunctionSpec moto gives a function created with CreateFunction's parameters ``request`` and published as
    ``version`` (moto's defaults where the request is silent): what a deploy's environments can start as before the
    function exists. tests/unit/test_moto_seam.py holds it to ``function_spec`` of the function moto creates."""
    code = request.get("Code") or {}
    image = code.get("ImageUri", "") if request.get("PackageType", "Zip") == "Image" else ""
    return FunctionSpec(
        name=request["FunctionName"],
        handler=request.get("Handler") or "",
        code_sha=hashlib.sha256(image.encode() if image else code.get("ZipFile") or b"").hexdigest(),
        timeout_s=float(request.get("Timeout") or 3),
        memory_mb=int(request.get("MemorySize") or 128),
        environment=tuple(sorted((str(k), str(v)) for k, v in ((request.get("Environment") or {}).get("Variables") or {}).items())),
        region=region,
        runtime=request.get("Runtime") or "python3.12",
        version=version,
        image_uri=image,
        image_command=tuple((request.get("ImageConfig") or {}).get("Command") or ()) if image else (),
        ephemeral_mb=int((request.get("EphemeralStorage") or {}).get("Size") or 512),
    )


def save_logs(fn: Any, spec: FunctionSpec, result: Any) -> str:
    """Write the invocation's lines into its execution environment's log stream (one per environment, as on
    Lambda: created with the environment's first lines); the lines written."""
    text = log_text(spec, result)
    backend, group = fn.logs_backend, fn.logs_group_name
    stream = result.log_stream or log_stream_name(spec.version)
    backend.ensure_log_stream(group, stream)
    now = int(time.time() * 1000)
    backend.put_log_events(group, stream, [{"timestamp": now, "message": line} for line in text.splitlines()])
    return text


def pool_invoke(pool: WorkerPool) -> Invoke:
    """The seam's replacement: one invocation on ``pool``, its log stream written, moto's return value shaped."""

    def invoke(fn: Any, event: Any) -> tuple[str, bool, str]:
        spec = function_spec(fn)
        fn.logs_backend.ensure_log_group(fn.logs_group_name)
        result = pool.invoke(spec, getattr(fn, "code_bytes", b"") or b"", event)
        try:
            save_logs(fn, spec, result)
        except Exception as exc:  # logs are best effort; the invocation's result is not
            logger.warning("could not write logs for %s: %s", fn.function_name, exc)
        result.init_logs = None  # LogResult: the invocation's own lines (START .. REPORT)
        return json.dumps(result.payload), result.errored, log_text(spec, result)[-LOG_TAIL_BYTES:]

    return invoke


def seam_owner() -> Any:
    from moto.awslambda.models import LambdaFunction

    return LambdaFunction


def install(invoke: Invoke) -> Any:
    """Route moto's Lambda invocations to ``invoke(fn, event)``; return what was there, for ``uninstall``."""
    owner = seam_owner()
    previous = getattr(owner, SEAM, None)
    if not callable(previous):
        raise RuntimeError(f"moto moved its Lambda seam: {owner.__name__}.{SEAM} is gone; pin moto~=5.2.5")

    def _invoke_lambda(self: Any, event: Any = None) -> tuple[str, bool, str]:
        return invoke(self, event if event is not None else {})

    setattr(owner, SEAM, _invoke_lambda)
    return previous


def uninstall(previous: Any) -> None:
    """Put back what ``install`` replaced."""
    setattr(seam_owner(), SEAM, previous)
