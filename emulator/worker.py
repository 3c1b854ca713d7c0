"""One Lambda execution environment: a process that imports a handler once and serves invokes.

Started by ``emulator.environment.Environment`` as ``python -s [-S] -m bootstrap CODE_DIR HANDLER LOG_DIR
TMP_LIMIT_BYTES``, from a runtime folder where ``bootstrap.py`` links to this file (``emulator.runtimes``),
with the task root as its working directory. It holds its ``/tmp`` (``TMPDIR``) to TMP_LIMIT_BYTES
(Lambda's ephemeral storage): a watcher thread raises ENOSPC (``OSError`` errno 28) in the handler once the
folder holds more (a watched quota: the handler's next bytecode after the write that crossed the limit; a
subprocess's writes count, and its Python parent gets the error).
Protocol: one JSON object per line on the original stdin/stdout, which the
worker moves to private descriptors first so that handler output can never
corrupt it. File descriptors 1 and 2 point at ``LOG_DIR/invoke.log`` during an
invocation (the runner ships that file to CloudWatch Logs) and at
``LOG_DIR/worker.log`` otherwise.

Messages in: ``{"op": "invoke", "event": ..., "request_id": ..., "deadline": epoch_s}``,
``{"op": "stop"}``. Out: ``{"op": "ready", "at": epoch_s}`` once the handler is
imported (or ``{"op": "init_error", "error": {...}}``), then per invoke
``{"op": "result", "ok": bool, "payload": ...}``.
"""

from __future__ import annotations

import ctypes
import errno
import faulthandler
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable


class LambdaContext:
    """The attributes of the Lambda context object that handlers commonly use."""

    def __init__(self, request_id: str, deadline: float) -> None:
        self.aws_request_id = request_id
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", f"/aws/lambda/{self.function_name}")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        region = os.environ.get("AWS_REGION", "us-east-1")
        self.invoked_function_arn = f"arn:aws:lambda:{region}:123456789012:function:{self.function_name}"
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


MAX_RESPONSE_BYTES = 6 * 2**20 + 100  # Lambda's synchronous response limit as AWS enforces it (6 MiB + 100 bytes)
_OWN_FILE = os.path.abspath(__file__)


class HandlerFault(Exception):
    """A failure the runtime itself names (AWS's RIC ``FaultException``): its errorType, message and stackTrace."""

    def __init__(self, error_type: str, message: str, stack: list[str] | None = None) -> None:
        super().__init__(message)
        self.error_type, self.stack = error_type, stack or []


def error_payload(exc: BaseException, request_id: str = "") -> dict[str, Any]:
    """The Python runtime's error shape, keys in AWS's order: errorMessage, errorType, requestId ("" at init),
    stackTrace = the function's own frames (the worker's leading frames dropped, as AWS's bootstrap drops its own)."""
    if isinstance(exc, HandlerFault):
        return {"errorMessage": str(exc), "errorType": exc.error_type, "requestId": request_id, "stackTrace": exc.stack}
    frames = traceback.extract_tb(exc.__traceback__)
    while frames and os.path.abspath(frames[0].filename) == _OWN_FILE:
        frames = traceback.StackSummary.from_list(frames[1:])
    return {"errorMessage": str(exc), "errorType": type(exc).__name__, "requestId": request_id, "stackTrace": traceback.format_list(frames)}


def response_payload(result: Any, request_id: str = "") -> tuple[bool, Any]:
    """(ok, payload) for a handler's return value: Lambda's ``Function.ResponseSizeTooLarge`` beyond 6 MiB + 100 bytes;
    a value JSON cannot encode is the runtime's ``Runtime.MarshalError``."""
    try:
        text = json.dumps(result)
    except (TypeError, ValueError) as exc:
        return False, error_payload(HandlerFault("Runtime.MarshalError", f"Unable to marshal response: {exc}"), request_id)
    if len(text.encode("utf-8")) > MAX_RESPONSE_BYTES:
        message = f"Response payload size exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."
        return False, {"errorMessage": message, "errorType": "Function.ResponseSizeTooLarge"}
    return True, json.loads(text)


def _point_output_at(path: str) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _exit_with_parent(parent: int) -> None:
    """Lambda environments never outlive the service: when the host is gone, kill this worker's process group
    (the worker leads it: whatever the handler started goes too)."""
    while True:
        if os.getppid() != parent:
            if os.getpgrp() == os.getpid():
                os.killpg(0, signal.SIGKILL)
            os._exit(0)
        time.sleep(0.5)


def _import_handler(code_dir: str, handler: str) -> Callable[..., Any]:
    """The handler function, or a HandlerFault named as AWS's Python runtime names it
    (MalformedHandlerName, BuiltInModuleConflict, ImportModuleError, UserCodeSyntaxError, HandlerNotFound);
    any other exception raised by the module at import propagates (its class is the errorType)."""
    try:
        module_name, function_name = handler.rsplit(".", 1)
    except ValueError as exc:
        raise HandlerFault("Runtime.MalformedHandlerName", f"Bad handler '{handler}': {exc}") from None
    sys.path.insert(0, code_dir)
    try:
        if module_name.split(".")[0] in sys.builtin_module_names:
            raise HandlerFault("Runtime.BuiltInModuleConflict", f"Cannot use built-in module {module_name} as a handler module")
        module = importlib.import_module(module_name.replace("/", "."))
    except SystemExit as exc:  # sys.exit() at import ends the runtime process: Lambda's Runtime.ExitError, not an init error
        os._exit(exc.code if isinstance(exc.code, int) else 1)
    except ImportError as exc:
        raise HandlerFault("Runtime.ImportModuleError", f"Unable to import module '{module_name}': {exc}") from None
    except SyntaxError as exc:
        trace = [f'  File "{exc.filename}" Line {exc.lineno}\n    {exc.text}']
        raise HandlerFault("Runtime.UserCodeSyntaxError", f"Syntax error in module '{module_name}': {exc}", trace) from None
    try:
        return getattr(module, function_name)
    except AttributeError:
        raise HandlerFault("Runtime.HandlerNotFound", f"Handler '{function_name}' missing on module '{module_name}'") from None


class _NoSpace(OSError):
    """A write beyond the environment's /tmp quota: what a full disk raises (``OSError: [Errno 28] No space left on device``)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(errno.ENOSPC, os.strerror(errno.ENOSPC))


_NoSpace.__name__ = _NoSpace.__qualname__ = "OSError"  # the error payload's errorType, as on Lambda
_QUOTA = threading.Lock()
_ARMED = threading.Event()  # the function's code runs (import or handler): the quota's error goes to it


def _usage(folder: str) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def _hold_quota(folder: str, limit: int, thread_id: int) -> None:
    """Raise ENOSPC in the function's thread whenever ``folder`` grew past ``limit`` bytes while its code runs."""
    raised_at, interval = 0, 0.01
    while True:
        _ARMED.wait()  # no walking while the worker is idle: the quota is checked while the function's code runs
        time.sleep(interval)
        started = time.perf_counter()
        used = _usage(folder)
        interval = max(0.01, 20 * (time.perf_counter() - started))  # a /tmp of many files: at most 5 % of a CPU
        if used <= limit:
            raised_at = 0
            continue
        with _QUOTA:
            if _ARMED.is_set() and used > raised_at:
                raised_at = used
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(_NoSpace))


def _arm(on: bool) -> None:
    with _QUOTA:
        if on:
            _ARMED.set()
        else:
            _ARMED.clear()
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(threading.main_thread().ident), None)  # drop one not yet raised


def main(argv: list[str]) -> None:
    code_dir, handler, log_dir = argv[:3]
    tmp_limit = int(argv[3]) if len(argv) > 3 else 0
    proto_in = os.fdopen(os.dup(0), "r", encoding="utf-8")
    proto_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    worker_log = os.path.join(log_dir, "worker.log")
    invoke_log = os.path.join(log_dir, "invoke.log")
    _point_output_at(worker_log)
    faulthandler.enable(file=sys.stderr, all_threads=True)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="[%(levelname)s]\t%(asctime)s\t%(name)s\t%(message)s", force=True)
    logging.getLogger("botocore").setLevel(logging.WARNING)  # "Found credentials in environment variables." on every cold start
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    tmp = os.environ.get("TMPDIR", "")
    if tmp_limit and tmp:
        threading.Thread(target=_hold_quota, args=(tmp, tmp_limit, threading.main_thread().ident), daemon=True).start()

    def send(message: dict[str, Any]) -> None:
        proto_out.write(json.dumps(message, default=str) + "\n")
        proto_out.flush()

    try:
        _arm(True)
        function = _import_handler(code_dir, handler)
        _arm(False)
    except BaseException as exc:  # an import error is the function's init error, reported to the caller
        _arm(False)
        traceback.print_exc()
        send({"op": "init_error", "error": error_payload(exc)})
        return
    send({"op": "ready", "at": time.time()})  # when it became ready: the host judges the init limit on that, however late it reads

    for line in proto_in:
        message = json.loads(line)
        if message.get("op") == "stop":
            return
        open(invoke_log, "w").close()
        _point_output_at(invoke_log)
        context = LambdaContext(message["request_id"], message["deadline"])
        try:
            _arm(True)
            try:
                result = function(message["event"], context)
            finally:
                _arm(False)
            ok, payload = response_payload(result, message["request_id"])
            reply = {"op": "result", "ok": ok, "payload": payload}
        except Exception as exc:  # the handler's failure is the invocation's result, as in Lambda
            traceback.print_exc()
            reply = {"op": "result", "ok": False, "payload": error_payload(exc, message["request_id"])}
        _point_output_at(worker_log)
        send(reply)


if __name__ == "__main__":
    main(sys.argv[1:])
