"""Lambda's API rules that moto does not enforce, added to its Lambda backend: limits, validation, throttling.

:func:`install` wraps four methods of ``moto.awslambda.models.LambdaBackend``
(each pinned by a contract test in tests/unit/test_moto_seam.py):

- ``invoke``: the request body limits (6 MiB synchronous, 1 MiB for
  ``InvocationType`` Event: 413 ``RequestEntityTooLargeException``, the code and
  message AWS answers with; its API reference names ``RequestTooLargeException``);
  concurrency (a function's reserved concurrency, then the account's limit for the
  others: 429 ``TooManyRequestsException`` with ``Reason``
  ``ReservedFunctionConcurrentInvocationLimitExceeded`` or
  ``ConcurrentInvocationLimitExceeded``; Event invocations are never throttled at
  the API, since AWS queues them); ``FunctionError`` ``Unhandled`` (what AWS's
  Python runtimes answer for every failure; moto says ``Handled``); and the response
  limit judged on the payload's bytes (the worker turns a response over 6 MiB + 100
  bytes into ``Function.ResponseSizeTooLarge``; moto's own check, on
  ``sys.getsizeof`` > 6,000,000, would also reject a response just under the limit).
- ``create_function`` / ``update_function_configuration``: Timeout 1-900, MemorySize
  128-10,240, EphemeralStorage 512-10,240, as ``ValidationException`` in AWS's form
  (``1 validation error detected: Value '901' at 'timeout' failed to satisfy
  constraint: Member must have value less than or equal to 900``).
- ``put_function_concurrency``: a reservation must leave the account 100 unreserved.
- Layers are refused (``InvalidParameterValueException`` naming the gap) by
  ``create_function`` / ``update_function_configuration``: the worker would run the
  function without them.

The account limit is ``COSMICAI_LAMBDA_CONCURRENCY_LIMIT`` (default 1,000, AWS's
default quota), or :func:`configure`. When more invocations of a function run at once
than the embedded worker pool has environments for it, the rest wait for one: a
warning says so, once per function and level (on AWS they would all run at once).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
from collections import Counter
from typing import Any

from moto.core.exceptions import JsonRESTError

logger = logging.getLogger(__name__)

SYNC_REQUEST_LIMIT = 6 * 2**20  # 6,291,456 bytes: "Request must be smaller than 6291456 bytes for the InvokeFunction operation"
ASYNC_REQUEST_LIMIT = 2**20  # 1 MiB for Event invocations (AWS raised it from 256 KiB in October 2025)
DEFAULT_ACCOUNT_LIMIT = 1000  # AWS's default concurrent executions quota per Region
MIN_UNRESERVED = 100  # reservations must leave the account this much unreserved concurrency
RANGES = {  # request field -> (name in AWS's message, minimum, maximum)
    "Timeout": ("timeout", 1, 900),
    "MemorySize": ("memorySize", 128, 10240),
    "EphemeralStorage.Size": ("ephemeralStorage.size", 512, 10240),
}
_MARK = "_cosmicai_rules"


class ValidationException(JsonRESTError):
    """A request field outside AWS's documented range."""

    def __init__(self, problems: list[str]) -> None:
        count = f"{len(problems)} validation error{'s' if len(problems) > 1 else ''} detected"
        super().__init__("ValidationException", f"{count}: {'; '.join(problems)}")


class RequestEntityTooLarge(JsonRESTError):
    """An Invoke request body over the invocation type's limit (413)."""

    code = 413

    def __init__(self, message: str) -> None:
        super().__init__("RequestEntityTooLargeException", message)


class TooManyRequests(JsonRESTError):
    """A throttled invocation (429), with the limit that throttled it in ``Reason``."""

    code = 429

    def __init__(self, reason: str) -> None:
        super().__init__("TooManyRequestsException", "Rate Exceeded.")
        self.description = json.dumps({"__type": self.error_type, "message": self.message, "Reason": reason, "Type": "User"})


class _Payload(bytes):
    """A response body whose size moto judges by its bytes (``sys.getsizeof`` counts the object's header too)."""

    def __sizeof__(self) -> int:
        return 0  # the worker has judged the response (Function.ResponseSizeTooLarge); moto's check never fires


class Rules:
    """The running invocations and the account limit of one emulator."""

    def __init__(self, pool: Any = None, account_limit: int | None = None) -> None:
        self.pool = pool
        self.account_limit = account_limit if account_limit is not None else _limit_from_env()
        self.running: Counter[tuple[str, str, str]] = Counter()  # (account, region, function name) -> invocations
        self.warned: dict[str, int] = {}
        self.lock = threading.Lock()

    def admit(self, backend: Any, fn: Any) -> tuple[str, str, str]:
        """Count one invocation of ``fn`` in, or raise TooManyRequests (reserved first, then the account's pool)."""
        key = (backend.account_id, backend.region_name, fn.function_name)
        reserved = _reserved(fn)
        with self.lock:
            if reserved is not None:
                if self.running[key] >= reserved:
                    raise TooManyRequests("ReservedFunctionConcurrentInvocationLimitExceeded")
            else:
                functions = {f.function_name: f for f in backend.list_functions()}
                held = sum(_reserved(f) or 0 for f in functions.values())
                unreserved_running = sum(n for (a, r, name), n in self.running.items()
                                         if (a, r) == key[:2] and _reserved(functions.get(name)) is None)
                if unreserved_running >= self.account_limit - held:
                    raise TooManyRequests("ConcurrentInvocationLimitExceeded")
            self.running[key] += 1
            running = self.running[key]
        self._warn_if_waiting(fn.function_name, running)
        return key

    def release(self, key: tuple[str, str, str]) -> None:
        with self.lock:
            self.running[key] -= 1
            if self.running[key] <= 0:
                del self.running[key]

    def _warn_if_waiting(self, name: str, running: int) -> None:
        if self.pool is None:
            return
        capacity = self.pool.capacities.get(name, self.pool.capacity)
        if running > capacity and running > self.warned.get(name, capacity):
            self.warned[name] = running
            logger.warning(
                "function %s: %d invocations at once, but the embedded worker pool runs at most %d environments of it "
                "(--max-concurrency / capacity); the others wait for one, where AWS would run them all at once",
                name, running, capacity,
            )



def _limit_from_env() -> int:
    text = os.environ.get("COSMICAI_LAMBDA_CONCURRENCY_LIMIT", "")
    if not text:
        return DEFAULT_ACCOUNT_LIMIT
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"COSMICAI_LAMBDA_CONCURRENCY_LIMIT must be a whole number >= 1, got {text!r}")
    return int(text)


def _reserved(fn: Any) -> int | None:
    value = getattr(fn, "reserved_concurrency", None)
    return None if value is None else int(value)


def _check_ranges(fields: dict[str, Any]) -> None:
    problems = []
    for key, (name, low, high) in RANGES.items():
        value: Any = fields
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is None or isinstance(value, bool) or not isinstance(value, int):
            continue
        if value > high:
            problems.append(f"Value '{value}' at '{name}' failed to satisfy constraint: Member must have value less than or equal to {high}")
        elif value < low:
            problems.append(f"Value '{value}' at '{name}' failed to satisfy constraint: Member must have value greater than or equal to {low}")
    if problems:
        raise ValidationException(problems)


def _refuse_layers(fields: dict[str, Any]) -> None:
    """The embedded worker runs a function's zip, its runtime's SDK and nothing else: a function that names layers
    would run without their contents and fail at import. Refused up front, naming the gap."""
    if fields.get("Layers"):
        raise JsonRESTError(
            "InvalidParameterValueException",
            "Layers: the cosmicai embedded emulator does not run Lambda layers; put the layer's packages into the "
            "function's zip (or an image) to run it offline",
        )


def _body_size(body: Any) -> int:
    if isinstance(body, (bytes, bytearray)):
        return len(body)
    return len(str(body or "").encode("utf-8"))


def _invoke(original: Any) -> Any:
    @functools.wraps(original)
    def invoke(self: Any, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any) -> Any:
        kind = headers.get("X-Amz-Invocation-Type") or headers.get("x-amz-invocation-type") or "RequestResponse"
        size, limit = _body_size(body), ASYNC_REQUEST_LIMIT if kind == "Event" else SYNC_REQUEST_LIMIT
        if size > limit:
            if kind == "Event":
                raise RequestEntityTooLarge(f"{size} byte payload is too large for the Event invocation type (limit {limit} bytes)")
            raise RequestEntityTooLarge(f"Request must be smaller than {limit} bytes for the InvokeFunction operation")
        rules = _rules
        fn = self.get_function(function_name, qualifier)
        key = rules.admit(self, self.get_function(fn.function_name)) if kind != "Event" else None  # reservations live on $LATEST
        try:
            payload = original(self, function_name, qualifier, body, headers, response_headers)
        finally:
            if key is not None:
                rules.release(key)
        if response_headers.get("x-amz-function-error"):
            response_headers["x-amz-function-error"] = "Unhandled"
        return _Payload(payload.encode("utf-8") if isinstance(payload, str) else payload) if payload is not None else None

    return invoke


def _create(original: Any) -> Any:
    @functools.wraps(original)
    def create_function(self: Any, spec: dict[str, Any]) -> Any:
        _check_ranges(spec)
        _refuse_layers(spec)
        return original(self, spec)

    return create_function


def _update(original: Any) -> Any:
    @functools.wraps(original)
    def update_function_configuration(self: Any, function_name: str, qualifier: str, body: dict[str, Any]) -> Any:
        _check_ranges(body)
        _refuse_layers(body)
        return original(self, function_name, qualifier, body)

    return update_function_configuration


def _put_concurrency(original: Any) -> Any:
    @functools.wraps(original)
    def put_function_concurrency(self: Any, function_name: str, reserved_concurrency: Any) -> Any:
        fn = self.get_function(function_name)
        others = sum(_reserved(f) or 0 for f in self.list_functions() if f.function_name != fn.function_name)
        if _rules.account_limit - others - int(reserved_concurrency) < MIN_UNRESERVED:
            raise JsonRESTError(
                "InvalidParameterValueException",
                "Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution "
                f"below its minimum value of [{MIN_UNRESERVED}].",
            )
        return original(self, function_name, reserved_concurrency)

    return put_function_concurrency


_rules = Rules()

WRAPPERS = {"invoke": _invoke, "create_function": _create, "update_function_configuration": _update,
            "put_function_concurrency": _put_concurrency}


def install(pool: Any = None, account_limit: int | None = None) -> Rules:
    """Add the rules to moto's Lambda backend (idempotent); the rules now count for ``pool``. Returns them."""
    global _rules
    from moto.awslambda.models import LambdaBackend

    _rules = Rules(pool, account_limit)
    for name, wrap in WRAPPERS.items():
        current = getattr(LambdaBackend, name)
        if not getattr(current, _MARK, False):
            wrapped = wrap(current)
            setattr(wrapped, _MARK, True)
            setattr(wrapped, "_cosmicai_original", current)
            setattr(LambdaBackend, name, wrapped)
    return _rules


def configure(account_limit: int) -> int:
    """Set the account's concurrency limit of the running rules; return the previous one (tests put it back)."""
    if isinstance(account_limit, bool) or not isinstance(account_limit, int) or account_limit < 1:
        raise ValueError(f"account_limit must be a whole number >= 1, got {account_limit!r}")
    previous, _rules.account_limit = _rules.account_limit, account_limit
    return previous
