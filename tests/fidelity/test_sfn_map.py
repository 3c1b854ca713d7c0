"""Distributed Map failure semantics, as a state-machine author sees them (plain boto3).

A child workflow fails its item either through a Lambda function that raises (the
pipeline's case) or, where only the count of failures matters, through a Fail state.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Callable

import pytest

EXCEEDED = "States.ExceedToleratedFailureThreshold"
ITEMS = [{"fail": False}, {"fail": True}, {"fail": False}]  # one failure in three: 33.3 %
FAILING = "def handler(event, context):\n    if event.get('fail'):\n        raise ValueError('item failed')\n    return event\n"


def item_processor(function_name: str | None = None) -> dict[str, Any]:
    """A DISTRIBUTED child workflow that fails the items with ``"fail": true``."""
    if function_name:
        states = {"Work": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                           "Parameters": {"FunctionName": function_name, "Payload.$": "$"}, "OutputPath": "$.Payload", "End": True}}
        start = "Work"
    else:
        states = {"Check": {"Type": "Choice", "Choices": [{"Variable": "$.fail", "BooleanEquals": True, "Next": "Broken"}], "Default": "Done"},
                  "Broken": {"Type": "Fail", "Error": "ItemFailed", "Cause": "the item says fail"},
                  "Done": {"Type": "Pass", "End": True}}
        start = "Check"
    return {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}, "StartAt": start, "States": states}


def map_machine(fields: dict[str, Any], function_name: str | None = None, catch: bool = False) -> dict[str, Any]:
    mapped: dict[str, Any] = {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2, **fields, "ItemProcessor": item_processor(function_name)}
    states: dict[str, Any] = {"Fan": mapped}
    if catch:
        mapped["Catch"] = [{"ErrorEquals": [EXCEEDED], "ResultPath": "$.caught", "Next": "Caught"}]
        mapped["Next"] = "Caught"
        states["Caught"] = {"Type": "Pass", "End": True}
    else:
        mapped["End"] = True
    return {"StartAt": "Fan", "States": states}


@pytest.fixture()
def run_machine(aws) -> Callable[..., dict[str, Any]]:
    """``run_machine(definition, input)``: create the state machine, run one execution to its end; DescribeExecution."""
    sfn, iam = aws("stepfunctions"), aws("iam")
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "states.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    role = iam.create_role(RoleName=f"fidelity-sfn-{uuid.uuid4().hex[:8]}", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    machines: list[str] = []

    def run(definition: dict[str, Any], payload: Any) -> dict[str, Any]:
        arn = sfn.create_state_machine(name=f"fidelity-{uuid.uuid4().hex[:10]}", definition=json.dumps(definition), roleArn=role)["stateMachineArn"]
        machines.append(arn)
        execution = sfn.start_execution(stateMachineArn=arn, input=json.dumps(payload))["executionArn"]
        deadline = time.monotonic() + 180
        while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
            assert time.monotonic() < deadline, f"execution {execution} still RUNNING after 180 s"
            time.sleep(0.25)
        return described

    yield run
    for arn in machines:
        sfn.delete_state_machine(stateMachineArn=arn)


@pytest.mark.fidelity("map-tolerance-default")
def test_one_failed_item_fails_a_map_without_tolerance(run_machine, make_function):
    name = make_function({"app.py": FAILING})
    result = run_machine(map_machine({}, function_name=name), {"items": ITEMS})
    assert result["status"] == "FAILED"
    assert result["error"] == EXCEEDED


@pytest.mark.fidelity("map-tolerance-default")
def test_the_threshold_error_is_caught_by_the_map_s_catch(run_machine):
    result = run_machine(map_machine({}, catch=True), {"items": ITEMS})
    assert result["status"] == "SUCCEEDED"
    assert json.loads(result["output"])["caught"]["Error"] == EXCEEDED


TOLERANCES = [  # (fields, status with one failed item in three)
    ({"ToleratedFailurePercentage": 50.0}, "SUCCEEDED"),
    ({"ToleratedFailurePercentage": 30.0}, "FAILED"),
    ({"ToleratedFailureCount": 1}, "SUCCEEDED"),
    ({"ToleratedFailureCount": 0}, "FAILED"),
    ({"ToleratedFailurePercentage": 50.0, "ToleratedFailureCount": 0}, "FAILED"),  # exceeding either fails it
]


@pytest.mark.fidelity("map-tolerance-fields")
def test_tolerated_failure_percentage_and_count_are_enforced(run_machine):
    outcomes = {json.dumps(fields): run_machine(map_machine(fields), {"items": ITEMS}) for fields, _ in TOLERANCES}
    assert {key: result["status"] for key, result in outcomes.items()} == {json.dumps(fields): status for fields, status in TOLERANCES}
    assert {result.get("error") for result in outcomes.values() if result["status"] == "FAILED"} == {EXCEEDED}


@pytest.mark.fidelity("map-tolerance-fields")
def test_the_path_variants_read_the_tolerance_from_the_input(run_machine):
    fields = {"ToleratedFailurePercentagePath": "$.tolerance.pct", "ToleratedFailureCountPath": "$.tolerance.count"}
    within = run_machine(map_machine(fields), {"items": ITEMS, "tolerance": {"pct": 50, "count": 5}})
    beyond = run_machine(map_machine(fields), {"items": ITEMS, "tolerance": {"pct": 10, "count": 5}})
    assert (within["status"], beyond["status"], beyond.get("error")) == ("SUCCEEDED", "FAILED", EXCEEDED)


@pytest.mark.fidelity("map-tolerance-integers")
@pytest.mark.parametrize(("percentage", "status"), [(0, "FAILED"), (100, "SUCCEEDED")])
def test_an_integer_percentage_is_accepted(run_machine, percentage, status):
    result = run_machine(map_machine({"ToleratedFailurePercentage": percentage}), {"items": ITEMS})
    assert result["status"] == status


@pytest.mark.fidelity("map-run-counts")
def test_a_map_run_is_listed_with_its_item_counts(aws, run_machine):
    result = run_machine(map_machine({"ToleratedFailurePercentage": 100.0}), {"items": ITEMS})
    assert result["status"] == "SUCCEEDED"
    sfn = aws("stepfunctions")
    runs = sfn.list_map_runs(executionArn=result["executionArn"])["mapRuns"]
    assert len(runs) == 1 and runs[0]["executionArn"] == result["executionArn"]
    described = sfn.describe_map_run(mapRunArn=runs[0]["mapRunArn"])
    assert described["status"] == "SUCCEEDED"
    counts = described["itemCounts"]
    assert (counts["succeeded"], counts["failed"], counts["total"]) == (2, 1, 3)
    assert described["executionCounts"]["running"] == 0  # the Map Run is over: no child still running


@pytest.mark.fidelity("map-run-children")
def test_list_executions_by_map_run_lists_its_child_executions(aws, run_machine):
    result = run_machine(map_machine({"ToleratedFailurePercentage": 100.0}), {"items": ITEMS})
    sfn = aws("stepfunctions")
    map_run = sfn.list_map_runs(executionArn=result["executionArn"])["mapRuns"][0]["mapRunArn"]
    children = sfn.list_executions(mapRunArn=map_run)["executions"]
    assert sorted(child["status"] for child in children) == ["FAILED", "SUCCEEDED", "SUCCEEDED"]
    assert all(child["mapRunArn"] == map_run for child in children)
    failed = sfn.list_executions(mapRunArn=map_run, statusFilter="FAILED")["executions"]
    assert len(failed) == 1 and failed[0]["status"] == "FAILED"
