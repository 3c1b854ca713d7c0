"""One Lambda execution environment: a process that imports a handler once and serves invokes.

Started by ``emulator.pool.Environment`` as ``python -m emulator.worker CODE_DIR HANDLER LOG_DIR``.
Protocol: one JSON object per line on the original stdin/stdout, which the
worker moves to private descriptors first so that handler output can never
corrupt it. File descriptors 1 and 2 point at ``LOG_DIR/invoke.log`` during an
invocation (the runner ships that file to CloudWatch Logs) and at
``LOG_DIR/worker.log`` otherwise.

Messages in: ``{"op": "invoke", "event": ..., "request_id": ..., "deadline": epoch_s}``,
``{"op": "stop"}``. Out: ``{"op": "ready", "init_s": ...}`` once the handler is
imported (or ``{"op": "init_error", "error": {...}}``), then per invoke
``{"op": "result", "ok": bool, "payload": ...}``.
"""

from __future__ import annotations

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
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = request_id
        region = os.environ.get("AWS_REGION", "us-east-1")
        self.invoked_function_arn = f"arn:aws:lambda:{region}:123456789012:function:{self.function_name}"
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


def error_payload(exc: BaseException) -> dict[str, Any]:
    """The Lambda runtime's error shape: errorType is the exception's class name."""
    return {
        "errorType": type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


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
    module_name, _, function_name = handler.rpartition(".")
    if not module_name:
        raise ValueError(f"handler {handler!r} must be 'module.function'")
    sys.path.insert(0, code_dir)
    module = importlib.import_module(module_name)
    try:
        return getattr(module, function_name)
    except AttributeError:
        raise AttributeError(f"handler {handler!r}: module {module_name!r} has no {function_name!r}") from None


def main(argv: list[str]) -> None:
    code_dir, handler, log_dir = argv
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

    def send(message: dict[str, Any]) -> None:
        proto_out.write(json.dumps(message, default=str) + "\n")
        proto_out.flush()

    started = time.perf_counter()
    try:
        function = _import_handler(code_dir, handler)
    except BaseException as exc:  # an import error is the function's init error, reported to the caller
        traceback.print_exc()
        send({"op": "init_error", "error": error_payload(exc)})
        return
    send({"op": "ready", "init_s": time.perf_counter() - started})

    for line in proto_in:
        message = json.loads(line)
        if message.get("op") == "stop":
            return
        open(invoke_log, "w").close()
        _point_output_at(invoke_log)
        context = LambdaContext(message["request_id"], message["deadline"])
        try:
            result = function(message["event"], context)
            reply = {"op": "result", "ok": True, "payload": json.loads(json.dumps(result))}
        except Exception as exc:  # the handler's failure is the invocation's result, as in Lambda
            traceback.print_exc()
            reply = {"op": "result", "ok": False, "payload": error_payload(exc)}
        _point_output_at(worker_log)
        send(reply)


if __name__ == "__main__":
    main(sys.argv[1:])
