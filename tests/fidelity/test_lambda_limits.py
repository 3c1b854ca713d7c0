"""Lambda's limits as a caller sees them (plain boto3): payload sizes, configuration ranges, concurrency."""

from __future__ import annotations

import io
import json
import threading
import uuid
import zipfile

import pytest
from botocore.exceptions import ClientError

from test_lambda_errors import catching_task, invoke, run_execution

ECHO = "def handler(event, context):\n    return {'n': len(event.get('blob', ''))}\n"
SLEEPER = "import time\ndef handler(event, context):\n    started = time.time()\n    time.sleep(event.get('sleep', 0))\n    return [started, time.time()]\n"


def error_of(call, *args, **kwargs) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    return caught.value


@pytest.mark.fidelity("sync-request-limit")
def test_a_synchronous_request_over_6_mib_is_refused_with_413(aws, make_function):
    name = make_function({"app.py": ECHO}, MemorySize=512)
    body = json.dumps({"blob": "x" * (6 * 2**20)}).encode()
    error = error_of(aws("lambda").invoke, FunctionName=name, Payload=body)
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert error.response["Error"]["Code"] == "RequestEntityTooLargeException"
    assert "6291456 bytes" in error.response["Error"]["Message"]
    response, payload = invoke(aws, name, json.dumps({"blob": "x" * 6_000_000}).encode())  # just under: accepted
    assert "FunctionError" not in response and payload == {"n": 6_000_000}


@pytest.mark.fidelity("sync-response-limit")
def test_a_response_over_6_mib_is_function_responsesizetoolarge(aws, make_function):
    name = make_function({"app.py": "def handler(event, context):\n    return 'x' * event['n']\n"}, MemorySize=512)
    response, payload = invoke(aws, name, json.dumps({"n": 6 * 2**20 + 100}).encode())
    assert response["StatusCode"] == 200 and response.get("FunctionError") == "Unhandled"
    assert payload == {"errorMessage": "Response payload size exceeded maximum allowed payload size (6291556 bytes).",
                       "errorType": "Function.ResponseSizeTooLarge"}
    response, payload = invoke(aws, name, json.dumps({"n": 6_200_000}).encode())  # under the limit: returned whole
    assert "FunctionError" not in response and payload == "x" * 6_200_000


@pytest.mark.fidelity("async-request-limit")
def test_an_event_invocation_over_1_mib_is_refused_with_413(aws, make_function):
    name = make_function({"app.py": ECHO})
    lam = aws("lambda")
    error = error_of(lam.invoke, FunctionName=name, InvocationType="Event", Payload=json.dumps({"blob": "x" * 2**20}).encode())
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 413
    assert error.response["Error"]["Code"] == "RequestEntityTooLargeException"
    accepted = lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps({"blob": "x" * 300_000}).encode())
    assert accepted["StatusCode"] == 202  # over the old 256 KiB limit, under 1 MiB


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", ECHO)
    return buffer.getvalue()


RANGES = {
    "timeout-901": ({"Timeout": 901}, "Value '901' at 'timeout' failed to satisfy constraint: Member must have value less than or equal to 900"),
    "timeout-0": ({"Timeout": 0}, "Value '0' at 'timeout' failed to satisfy constraint: Member must have value greater than or equal to 1"),
    "memory-10241": ({"MemorySize": 10241},
                     "Value '10241' at 'memorySize' failed to satisfy constraint: Member must have value less than or equal to 10240"),
    "memory-127": ({"MemorySize": 127}, "Value '127' at 'memorySize' failed to satisfy constraint: Member must have value greater than or equal to 128"),
    "ephemeral-10241": ({"EphemeralStorage": {"Size": 10241}},
                        "Value '10241' at 'ephemeralStorage.size' failed to satisfy constraint: Member must have value less than or equal to 10240"),
    "ephemeral-511": ({"EphemeralStorage": {"Size": 511}},
                      "Value '511' at 'ephemeralStorage.size' failed to satisfy constraint: Member must have value greater than or equal to 512"),
}


@pytest.mark.fidelity("create-function-ranges")
@pytest.mark.parametrize("case", sorted(RANGES))
def test_configuration_out_of_range_is_a_validation_exception(aws, role_arn, make_function, case):
    settings, problem = RANGES[case]
    lam = aws("lambda", parameter_validation=False)  # boto3 checks some minimums itself: the service must too
    error = error_of(lam.create_function, FunctionName=f"fidelity-{uuid.uuid4().hex[:10]}", Runtime="python3.12", Role=role_arn,
                     Handler="app.handler", Code={"ZipFile": zip_bytes()}, **settings)
    assert error.response["Error"]["Code"] == "ValidationException"
    assert error.response["Error"]["Message"] == f"1 validation error detected: {problem}"
    name = make_function({"app.py": ECHO})
    error = error_of(lam.update_function_configuration, FunctionName=name, **settings)
    assert error.response["Error"]["Code"] == "ValidationException"
    assert error.response["Error"]["Message"] == f"1 validation error detected: {problem}"


@pytest.mark.fidelity("reserved-concurrency-zero")
def test_reserved_concurrency_zero_throttles_every_invocation(aws, make_function):
    name = make_function({"app.py": ECHO})
    aws("lambda").put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    error = error_of(aws("lambda").invoke, FunctionName=name, Payload=b"{}")
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert error.response["Error"]["Code"] == "TooManyRequestsException"
    assert error.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"


def throttled_while_busy(aws, name: str) -> dict:
    """Invoke ``name`` in the background (sleeping 5 s) and again and again meanwhile, until one of them is throttled
    (whichever reached the function second); that invocation's error response."""
    throttled: list[dict] = []

    def hold() -> None:
        try:
            aws("lambda").invoke(FunctionName=name, Payload=json.dumps({"sleep": 5}).encode())
        except ClientError as exc:  # the other call got there first and held the slot
            throttled.append(exc.response)

    busy = threading.Thread(target=hold)
    busy.start()
    try:
        while busy.is_alive() and not throttled:
            try:
                aws("lambda").invoke(FunctionName=name, Payload=b"{}")
            except ClientError as exc:
                throttled.append(exc.response)
    finally:
        busy.join()
    assert throttled, "no invocation was throttled while another held the function's only slot"
    return throttled[0]


@pytest.mark.fidelity("reserved-concurrency")
def test_invocations_beyond_reserved_concurrency_are_throttled(aws, make_function):
    name = make_function({"app.py": SLEEPER}, Timeout=30)
    aws("lambda").put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=1)
    response = throttled_while_busy(aws, name)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 429 and response["Error"]["Code"] == "TooManyRequestsException"
    assert response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"


@pytest.mark.fidelity("account-concurrency")
def test_invocations_beyond_the_account_limit_are_throttled(aws, make_function, target, request):
    if target.name != "embedded":
        pytest.skip("the account limit is LocalStack's start-up setting (LAMBDA_LIMITS_CONCURRENT_EXECUTIONS, 1,000): not lowered per test")
    from emulator import lambda_rules

    name = make_function({"app.py": SLEEPER}, Timeout=30)
    previous = lambda_rules.configure(1)  # the embedded target's limit (COSMICAI_LAMBDA_CONCURRENCY_LIMIT)
    try:
        response = throttled_while_busy(aws, name)
    finally:
        lambda_rules.configure(previous)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 429 and response["Error"]["Code"] == "TooManyRequestsException"
    assert response["Reason"] == "ConcurrentInvocationLimitExceeded"


@pytest.mark.fidelity("reserve-leaves-100")
def test_a_reservation_must_leave_100_unreserved(aws, make_function):
    name = make_function({"app.py": ECHO})
    error = error_of(aws("lambda").put_function_concurrency, FunctionName=name, ReservedConcurrentExecutions=901)
    assert error.response["Error"]["Code"] == "InvalidParameterValueException"
    assert "below its minimum value of [100]" in error.response["Error"]["Message"]


@pytest.mark.fidelity("sfn-retry-throttled")
def test_step_functions_retries_a_throttled_lambda_task(aws, make_function, role_arn):
    name = make_function({"app.py": ECHO})
    lam = aws("lambda")
    lam.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=0)
    arn = lam.get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    retry = [{"ErrorEquals": ["Lambda.TooManyRequestsException"], "IntervalSeconds": 1, "MaxAttempts": 2, "BackoffRate": 1.0}]
    described, events = run_execution(aws, role_arn, catching_task(arn, ["Lambda.TooManyRequestsException"], retry))
    assert described["status"] == "SUCCEEDED", described
    assert json.loads(described["output"])["Error"] == "Lambda.TooManyRequestsException"
    assert sum(1 for e in events if e["type"] == "TaskScheduled") == 3  # the first attempt and two retries


@pytest.mark.fidelity("concurrent-beyond-pool")
def test_concurrent_invocations_run_at_once(aws, make_function):
    name = make_function({"app.py": SLEEPER}, Timeout=60)
    results: list = []

    def call() -> None:
        results.append(invoke(aws, name, json.dumps({"sleep": 4}).encode())[1])

    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3
    assert max(start for start, _ in results) < min(end for _, end in results), "an invocation waited for another to finish"


@pytest.mark.embedded_only("the warning comes from the embedded worker pool")
def test_invocations_beyond_the_pool_are_logged(aws, make_function, target, caplog):
    name = make_function({"app.py": SLEEPER}, Timeout=60)
    threads = [threading.Thread(target=lambda: invoke(aws, name, json.dumps({"sleep": 2}).encode())) for _ in range(3)]
    with caplog.at_level("WARNING", logger="emulator.lambda_rules"):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert any(f"function {name}: 3 invocations at once" in r.getMessage() and "the others wait" in r.getMessage() for r in caplog.records)


@pytest.mark.embedded_only("the refusal is the embedded target's (LocalStack's Lambda API is its own)")
def test_the_embedded_target_refuses_layers_it_would_not_run(aws, role_arn, make_function):
    """Not a fidelity row: a known gap said up front. On AWS the layer's python/ folder would be importable."""
    lam = aws("lambda")
    layer = lam.publish_layer_version(LayerName="fidelity-layer", Content={"ZipFile": zip_bytes()})["LayerVersionArn"]
    error = error_of(lam.create_function, FunctionName=f"fidelity-{uuid.uuid4().hex[:10]}", Runtime="python3.12", Role=role_arn,
                     Handler="app.handler", Code={"ZipFile": zip_bytes()}, Layers=[layer])
    assert error.response["Error"]["Code"] == "InvalidParameterValueException" and "does not run Lambda layers" in error.response["Error"]["Message"]
    name = make_function({"app.py": ECHO})
    error = error_of(lam.update_function_configuration, FunctionName=name, Layers=[layer])
    assert error.response["Error"]["Code"] == "InvalidParameterValueException"
