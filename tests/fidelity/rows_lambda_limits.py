"""Fidelity rows: Lambda limits, validation, error shapes and concurrency (see ``fidelity_rows.py``).

Where AWS's documentation and recorded AWS responses disagree, the row says which
the test holds the targets to (the evidence: README, "Fidelity to AWS").
"""

from __future__ import annotations

from fidelity_rows import LAMBDA_API, LAMBDA_DG, SFN_API, SFN_DG, Row  # noqa: F401

ROWS: list[Row] = [
    Row(
        "invoke-handler-error",
        "Lambda",
        "A handler that raises: the Invoke call still succeeds",
        "StatusCode 200, `FunctionError` `Unhandled`, payload `errorType` = the exception's class, `errorMessage` = its text",
        f"{LAMBDA_DG}/python-exceptions.html",
    ),
    Row(
        "error-payload-shape",
        "Lambda",
        "A handler exception's payload",
        "`errorMessage`, `errorType`, `requestId` (the invocation's), `stackTrace` (the function's frames only), in that order",
        f"{LAMBDA_DG}/python-exceptions.html",
    ),
    Row(
        "init-errors",
        "Lambda",
        "A handler that cannot be loaded",
        "`Runtime.HandlerNotFound`, `Runtime.UserCodeSyntaxError`, `Runtime.ImportModuleError` (`Unable to import module 'app': ...`), "
        "`Runtime.MalformedHandlerName`; `FunctionError` `Unhandled`",
        f"{LAMBDA_DG}/python-exceptions.html",
    ),
    Row(
        "timeout-error",
        "Lambda",
        "A function that runs past its Timeout",
        "`Sandbox.Timedout`, `RequestId: <id> Error: Task timed out after 1.00 seconds`, `Unhandled`",
        f"{LAMBDA_DG}/troubleshooting-invocation.html",
    ),
    Row(
        "exit-error",
        "Lambda",
        "A runtime process that exits or is killed",
        "`Runtime.ExitError`, `RequestId: <id> Error: Runtime exited with error: exit status 3` / `signal: killed` / "
        "`Runtime exited without providing a reason`",
        f"{LAMBDA_DG}/troubleshooting-invocation.html",
    ),
    Row(
        "out-of-memory-error",
        "Lambda",
        "A function that exceeds its MemorySize",
        "killed, `Unhandled`; payload undocumented: recorded `Runtime.OutOfMemory` (now) / `Runtime.ExitError` (before), "
        "`RequestId: <id> Error: Runtime exited with error: signal: killed`",
        f"{LAMBDA_DG}/configuration-memory.html",
    ),
    Row(
        "sfn-lambda-timeout",
        "Step Functions",
        "A Lambda timeout seen by a Task",
        "documented `Lambda.Unknown`; recorded: the payload's `errorType` (`Sandbox.Timedout`). Catch both, or `States.TaskFailed`",
        f"{SFN_DG}/bp-lambda-serviceexception.html",
    ),
    Row(
        "sync-request-limit",
        "Lambda",
        "A synchronous Invoke request over 6 MB",
        "413 `RequestEntityTooLargeException` (`Request must be smaller than 6291456 bytes ...`; the API reference names `RequestTooLargeException`)",
        f"{LAMBDA_DG}/gettingstarted-limits.html",
        differs={"localstack": "accepts it: LocalStack's Invoke has no request size limit (its API layer, not our executor)"},
    ),
    Row(
        "sync-response-limit",
        "Lambda",
        "A response over 6 MB",
        "`Function.ResponseSizeTooLarge`, `Unhandled`: `Response payload size exceeded maximum allowed payload size (6291556 bytes).`",
        f"{LAMBDA_DG}/gettingstarted-limits.html",
    ),
    Row(
        "async-request-limit",
        "Lambda",
        "An Event (asynchronous) invocation over 1 MB",
        "413 `RequestEntityTooLargeException` (the limit was 256 KB before October 2025)",
        f"{LAMBDA_API}/API_Invoke.html",
        differs={"localstack": "accepts it: LocalStack's Invoke has no request size limit (its API layer, not our executor)"},
    ),
    Row(
        "create-function-ranges",
        "Lambda",
        "CreateFunction / UpdateFunctionConfiguration out of range",
        "Timeout 1-900, MemorySize 128-10,240, EphemeralStorage 512-10,240: `ValidationException` "
        "`1 validation error detected: Value '901' at 'timeout' failed to satisfy constraint: ...`",
        f"{LAMBDA_DG}/gettingstarted-limits.html",
        differs={"localstack": "accepts them: LocalStack does not check these ranges (its API layer, not our executor)"},
    ),
    Row(
        "reserved-concurrency-zero",
        "Lambda",
        "Reserved concurrency 0",
        "every invocation throttled: 429 `TooManyRequestsException`, `Reason` `ReservedFunctionConcurrentInvocationLimitExceeded`",
        f"{LAMBDA_DG}/configuration-concurrency.html",
    ),
    Row(
        "reserved-concurrency",
        "Lambda",
        "More concurrent invocations than reserved",
        "429 `TooManyRequestsException`, `Reason` `ReservedFunctionConcurrentInvocationLimitExceeded`",
        f"{LAMBDA_DG}/configuration-concurrency.html",
    ),
    Row(
        "account-concurrency",
        "Lambda",
        "More concurrent invocations than the account's limit (default 1,000)",
        "429 `TooManyRequestsException`, `Reason` `ConcurrentInvocationLimitExceeded`",
        f"{LAMBDA_API}/API_Invoke.html",
        differs={"localstack": "not tested: its limit is a start-up setting (`LAMBDA_LIMITS_CONCURRENT_EXECUTIONS`); its source answers `Reason` `ReservedFunctionConcurrentInvocationLimitExceeded` for this limit too"},
    ),
    Row(
        "reserve-leaves-100",
        "Lambda",
        "A reservation that leaves under 100 unreserved",
        "`InvalidParameterValueException` (`... below its minimum value of [100].`)",
        f"{LAMBDA_DG}/configuration-concurrency.html",
    ),
    Row(
        "sfn-retry-throttled",
        "Step Functions",
        "A throttled Lambda Task",
        "error `Lambda.TooManyRequestsException`: its Retry runs, then its Catch",
        f"{SFN_DG}/bp-lambda-serviceexception.html",
    ),
    Row(
        "concurrent-beyond-pool",
        "Lambda",
        "Concurrent invocations (no reservation, under the account limit)",
        "all run at once, each in its own execution environment",
        f"{LAMBDA_DG}/lambda-concurrency.html",
        differs={"embedded": "deliberate: at most `capacity` environments per function (`cosmicai run`: --max-concurrency); "
                             "the others wait for one, and a warning says so"},
    ),
]
