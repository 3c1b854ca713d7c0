"""Step Functions limits and execution names, as a caller of StartExecution sees them (plain boto3)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

INPUT_MAX = 262_144
BIG_RESULT = "def handler(event, context):\n    return {'blob': 'x' * (300 * 1024)}\n"


@pytest.fixture()
def machine(aws) -> Any:
    """``machine(definition)``: a new STANDARD state machine's ARN (deleted afterwards)."""
    sfn, iam = aws("stepfunctions"), aws("iam")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    role = iam.create_role(RoleName=f"fidelity-sfn-{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    made: list[str] = []

    def make(definition: dict[str, Any]) -> str:
        made.append(sfn.create_state_machine(name=f"fidelity-{uuid.uuid4().hex[:10]}", definition=json.dumps(definition), roleArn=role)["stateMachineArn"])
        return made[-1]

    yield make
    for arn in made:
        sfn.delete_state_machine(stateMachineArn=arn)


def finished(sfn: Any, execution_arn: str) -> dict[str, Any]:
    deadline = time.monotonic() + 180
    while (described := sfn.describe_execution(executionArn=execution_arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, f"execution {execution_arn} still RUNNING after 180 s"
        time.sleep(0.25)
    return described


PASS = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "Result": "ok", "End": True}}}
WAIT = {"StartAt": "Hold", "States": {"Hold": {"Type": "Wait", "Seconds": 60, "End": True}}}


def error_of(call: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as caught:
        call()
    return {"Code": caught.value.response["Error"]["Code"], "Status": caught.value.response["ResponseMetadata"]["HTTPStatusCode"]}


@pytest.mark.fidelity("sfn-input-limit")
def test_start_execution_input_over_256_kib_is_refused(aws, machine):
    sfn, arn = aws("stepfunctions"), machine(PASS)
    too_big = json.dumps({"blob": "x" * INPUT_MAX})
    assert error_of(lambda: sfn.start_execution(stateMachineArn=arn, input=too_big)) == {"Code": "ValidationException", "Status": 400}
    within = json.dumps({"blob": "x" * (INPUT_MAX - 1024)})
    assert finished(sfn, sfn.start_execution(stateMachineArn=arn, input=within)["executionArn"])["status"] == "SUCCEEDED"


@pytest.mark.fidelity("sfn-data-limit")
def test_a_task_result_over_256_kib_fails_the_execution_past_a_states_all_catch(aws, machine, make_function):
    name = make_function({"app.py": BIG_RESULT})
    definition = {"StartAt": "Big", "States": {
        "Big": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": name, "Payload": {}},
                "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Caught"}], "End": True},
        "Caught": {"Type": "Pass", "End": True}}}
    sfn = aws("stepfunctions")
    result = finished(sfn, sfn.start_execution(stateMachineArn=machine(definition), input="{}")["executionArn"])
    assert result["status"] == "FAILED"
    assert result["error"] == "States.DataLimitExceeded"


@pytest.mark.fidelity("sfn-execution-name")
@pytest.mark.parametrize("bad", ["with space", "tab\there", "a/b", "a:b", "a{b}", "a*b", "a#b", "a$b", "a,b", "ctrl\x01", "del\x7f"],
                         ids=["space", "tab", "slash", "colon", "brace", "star", "hash", "dollar", "comma", "control", "del"])
def test_an_execution_name_with_a_forbidden_character_is_invalid(aws, machine, bad):
    sfn, arn = aws("stepfunctions"), machine(PASS)
    assert error_of(lambda: sfn.start_execution(stateMachineArn=arn, name=bad, input="{}")) == {"Code": "InvalidName", "Status": 400}


@pytest.mark.fidelity("sfn-execution-name")
def test_an_execution_name_over_80_characters_is_refused_and_80_is_accepted(aws, machine):
    sfn, arn = aws("stepfunctions"), machine(PASS)
    assert error_of(lambda: sfn.start_execution(stateMachineArn=arn, name="n" * 81, input="{}")) == {"Code": "ValidationException", "Status": 400}
    name = ("ok-" + uuid.uuid4().hex + "_." + "n" * 80)[:80]
    started = sfn.start_execution(stateMachineArn=arn, name=name, input="{}")
    assert finished(sfn, started["executionArn"])["name"] == name


@pytest.mark.fidelity("sfn-execution-name-reuse")
def test_a_reused_execution_name_is_idempotent_for_the_same_input_and_refused_for_another(aws, machine):
    sfn, arn = aws("stepfunctions"), machine(WAIT)
    name = f"reuse-{uuid.uuid4().hex[:8]}"
    first = sfn.start_execution(stateMachineArn=arn, name=name, input='{"a": 1}')["executionArn"]
    try:
        assert sfn.start_execution(stateMachineArn=arn, name=name, input='{"a": 1}')["executionArn"] == first
        assert error_of(lambda: sfn.start_execution(stateMachineArn=arn, name=name, input='{"a": 2}')) == {"Code": "ExecutionAlreadyExists", "Status": 400}
    finally:
        sfn.stop_execution(executionArn=first)


@pytest.mark.fidelity("sfn-stop-at-once")
def test_an_execution_stopped_as_soon_as_it_starts_is_aborted(aws, machine):
    """moto's worker thread sets its program running some milliseconds after StartExecution answers: a stop in
    that window answered 500, or was ignored. Twenty tries make the window likely to be hit."""
    sfn, arn = aws("stepfunctions"), machine(WAIT)
    started: list[str] = []
    for _ in range(20):
        execution = sfn.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
        assert "stopDate" in sfn.stop_execution(executionArn=execution)
        started.append(execution)
    assert {finished(sfn, execution)["status"] for execution in started} == {"ABORTED"}

