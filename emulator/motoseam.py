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
from typing import Any, Callable

from emulator.environment import LOG_TAIL_BYTES, FunctionSpec, log_text
from emulator.pool import WorkerPool

logger = logging.getLogger(__name__)

SEAM = "_invoke_lambda"
Invoke = Callable[[Any, Any], tuple[str, bool, str]]


def function_spec(fn: Any) -> FunctionSpec:
    """The FunctionSpec of a moto ``LambdaFunction`` (its code and configuration)."""
    code = getattr(fn, "code_bytes", b"") or b""
    return FunctionSpec(
        name=fn.function_name,
        handler=fn.handler or "",
        code_sha=hashlib.sha256(code).hexdigest(),
        timeout_s=float(fn.timeout or 3),
        memory_mb=int(fn.memory_size or 128),
        environment=tuple(sorted((str(k), str(v)) for k, v in (fn.environment_vars or {}).items())),
        region=fn.region,
    )


def pool_invoke(pool: WorkerPool) -> Invoke:
    """The seam's replacement: one invocation on ``pool``, its log stream written, moto's return value shaped."""

    def invoke(fn: Any, event: Any) -> tuple[str, bool, str]:
        spec = function_spec(fn)
        fn.logs_backend.ensure_log_group(fn.logs_group_name)
        result = pool.invoke(spec, getattr(fn, "code_bytes", b"") or b"", event)
        text = log_text(spec, result)
        try:
            fn.save_logs(text)
        except Exception as exc:  # logs are best effort; the invocation's result is not
            logger.warning("could not write logs for %s: %s", fn.function_name, exc)
        return json.dumps(result.payload), result.errored, text[-LOG_TAIL_BYTES:]

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
