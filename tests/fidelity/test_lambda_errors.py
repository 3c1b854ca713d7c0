"""Lambda's error shapes, as a caller of Invoke and a Step Functions Task see them (plain boto3)."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid

import pytest

FAILING_CODE = """
def helper(event):
    raise KeyError('action')

def handler(event, context):
    return helper(event)
"""


def invoke(aws, name: str, payload: bytes = b"{}", **kwargs):
    response = aws("lambda").invoke(FunctionName=name, Payload=payload, **kwargs)
    return response, json.loads(response["Payload"].read())


def logged_request_id(response) -> str:
    """The invocation's id, as its START line in the log tail names it."""
    tail = base64.b64decode(response["LogResult"]).decode()
    return re.search(r"START RequestId: (\S+)", tail).group(1)


@pytest.mark.fidelity("invoke-handler-error")
def test_a_handler_exception_is_a_function_error_not_a_failed_call(aws, make_function):
    name = make_function({"app.py": "def handler(event, context):\n    raise KeyError('action')\n"})
    response, payload = invoke(aws, name)
    assert response["StatusCode"] == 200
    assert response.get("FunctionError") == "Unhandled"
    assert payload["errorType"] == "KeyError" and payload["errorMessage"] == "'action'"


@pytest.mark.fidelity("error-payload-shape")
def test_the_error_payload_has_aws_keys_the_request_id_and_only_the_functions_frames(aws, make_function):
    name = make_function({"app.py": FAILING_CODE})
    response, payload = invoke(aws, name, LogType="Tail")
    assert list(payload) == ["errorMessage", "errorType", "requestId", "stackTrace"]
    assert payload["requestId"] == logged_request_id(response)
    frames = payload["stackTrace"]
    assert len(frames) == 2, frames  # handler -> helper: the runtime's own frames are not there
    assert all(re.match(r'  File ".*/app\.py", line \d+, in (handler|helper)\n', frame) for frame in frames), frames


INIT_ERRORS = {
    "handler-not-found": ({"app.py": "def handler(event, context):\n    return 1\n"}, "app.nope",
                          "Runtime.HandlerNotFound", "Handler 'nope' missing on module 'app'"),
    "syntax-error": ({"app.py": "def handler(event, context)\n    return 1\n"}, "app.handler",
                     "Runtime.UserCodeSyntaxError", "Syntax error in module 'app': "),
    "import-error": ({"app.py": "import cosmicai_no_such_package\n"}, "app.handler",
                     "Runtime.ImportModuleError", "Unable to import module 'app': No module named 'cosmicai_no_such_package'"),
    "malformed-name": ({"app.py": "def handler(event, context):\n    return 1\n"}, "app",
                       "Runtime.MalformedHandlerName", "Bad handler 'app': not enough values to unpack (expected 2, got 1)"),
}


@pytest.mark.fidelity("init-errors")
@pytest.mark.parametrize("case", sorted(INIT_ERRORS))
def test_a_handler_that_cannot_be_loaded_is_named_as_the_python_runtime_names_it(aws, make_function, case):
    files, handler, error_type, message = INIT_ERRORS[case]
    response, payload = invoke(aws, make_function(files, handler=handler))
    assert response["StatusCode"] == 200 and response.get("FunctionError") == "Unhandled"
    assert payload["errorType"] == error_type
    assert payload["errorMessage"].startswith(message), payload["errorMessage"]


def assert_platform_error(response, payload, error_type: str, reason: str) -> None:
    assert response["StatusCode"] == 200 and response.get("FunctionError") == "Unhandled"
    assert payload["errorType"] == error_type
    assert re.fullmatch(rf"RequestId: [0-9a-f-]{{36}} Error: {re.escape(reason)}", payload["errorMessage"]), payload["errorMessage"]


@pytest.mark.fidelity("timeout-error")
def test_a_timeout_is_sandbox_timedout_in_aws_words(aws, make_function):
    name = make_function({"app.py": "import time\ndef handler(event, context):\n    time.sleep(30)\n"}, Timeout=1)
    response, payload = invoke(aws, name)
    assert_platform_error(response, payload, "Sandbox.Timedout", "Task timed out after 1.00 seconds")


EXITS = {
    "exit-0": ("import sys\n    sys.exit(0)", "Runtime exited without providing a reason"),
    "exit-3": ("import os\n    os._exit(3)", "Runtime exited with error: exit status 3"),
    "sigkill": ("import os, signal\n    os.kill(os.getpid(), signal.SIGKILL)", "Runtime exited with error: signal: killed"),
}


@pytest.mark.fidelity("exit-error")
@pytest.mark.parametrize("case", sorted(EXITS))
def test_a_runtime_that_exits_is_runtime_exiterror_in_aws_words(aws, make_function, case):
    body, reason = EXITS[case]
    response, payload = invoke(aws, make_function({"app.py": f"def handler(event, context):\n    {body}\n"}))
    assert_platform_error(response, payload, "Runtime.ExitError", reason)


@pytest.mark.fidelity("out-of-memory-error")
def test_running_out_of_memory_is_runtime_outofmemory(aws, make_function):
    hog = "def handler(event, context):\n    hoard = []\n    while True:\n        hoard.append(bytearray(32 * 2**20))\n"
    response, payload = invoke(aws, make_function({"app.py": hog}, MemorySize=128, Timeout=30))
    assert_platform_error(response, payload, "Runtime.OutOfMemory", "Runtime exited with error: signal: killed")


def run_execution(aws, role_arn: str, definition: dict) -> tuple[dict, list[dict]]:
    """Create a state machine, run it to the end; its description and history."""
    sfn = aws("stepfunctions")
    machine = sfn.create_state_machine(name=f"fidelity-{uuid.uuid4().hex[:8]}", definition=json.dumps(definition), roleArn=role_arn)
    try:
        arn = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], input="{}")["executionArn"]
        for _ in range(600):
            described = sfn.describe_execution(executionArn=arn)
            if described["status"] != "RUNNING":
                break
            time.sleep(0.2)
        return described, sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    finally:
        sfn.delete_state_machine(stateMachineArn=machine["stateMachineArn"])


def catching_task(function_arn: str, errors: list[str], retry: list[dict] | None = None) -> dict:
    """One Lambda Task whose Catch on ``errors`` goes to a Pass state; its output is the caught error."""
    task = {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {"FunctionName": function_arn, "Payload.$": "$"},
            "Catch": [{"ErrorEquals": errors, "ResultPath": "$.caught", "Next": "Caught"}], "End": True}
    if retry:
        task["Retry"] = retry
    return {"StartAt": "Call", "States": {"Call": task, "Caught": {"Type": "Pass", "OutputPath": "$.caught", "End": True}}}


@pytest.mark.fidelity("sfn-lambda-timeout")
def test_a_step_functions_task_sees_a_lambda_timeout_by_its_error_type(aws, make_function, role_arn):
    name = make_function({"app.py": "import time\ndef handler(event, context):\n    time.sleep(30)\n"}, Timeout=1)
    arn = aws("lambda").get_function(FunctionName=name)["Configuration"]["FunctionArn"]
    described, _ = run_execution(aws, role_arn, catching_task(arn, ["Sandbox.Timedout", "Lambda.Unknown"]))
    assert described["status"] == "SUCCEEDED", described
    caught = json.loads(described["output"])
    assert caught["Error"] == "Sandbox.Timedout"
    assert json.loads(caught["Cause"])["errorMessage"].endswith("Error: Task timed out after 1.00 seconds")
