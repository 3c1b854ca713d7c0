"""Unit tests of stepfn.definition: render placeholders, validate the pipeline's contract."""

from __future__ import annotations

import copy
import json
from typing import Any, Iterator

import pytest

from stepfn.definition import PLACEHOLDERS, TRANSIENT_ERRORS, DefinitionError, render, template, validate

ARNS = {
    "InitializeFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:cosmicai-initialize",
    "InferFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:cosmicai-infer",
    "RecordFailureFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:cosmicai-record-failure",
    "SummarizeFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:cosmicai-summarize",
}


def _rendered(max_concurrency: int = 4) -> dict[str, Any]:
    return json.loads(render(ARNS, max_concurrency))


def _states(node: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state, nested ones (Map ItemProcessor / Iterator, Parallel branches) included."""
    for name, state in node.get("States", {}).items():
        yield name, state
        for key in ("ItemProcessor", "Iterator"):
            if key in state:
                yield from _states(state[key])
        for branch in state.get("Branches", []):
            yield from _states(branch)


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


# --------------------------------------------------------------------------- render


def test_render_substitutes_every_placeholder():
    text = render(ARNS, 7)
    assert "${" not in text
    definition = json.loads(text)
    states = definition["States"]
    inner = states["InferRanks"]["ItemProcessor"]["States"]
    assert states["Initialize"]["Parameters"]["FunctionName"] == ARNS["InitializeFunctionArn"]
    assert inner["Infer"]["Parameters"]["FunctionName"] == ARNS["InferFunctionArn"]
    assert inner["RecordFailure"]["Parameters"]["FunctionName"] == ARNS["RecordFailureFunctionArn"]
    assert states["Summarize"]["Parameters"]["FunctionName"] == ARNS["SummarizeFunctionArn"]
    concurrency = states["InferRanks"]["MaxConcurrency"]
    assert concurrency == 7 and type(concurrency) is int


def test_template_uses_every_placeholder():
    found = {s for s in _strings(template()) if s.startswith("${")}
    assert found == {f"${{{name}}}" for name in PLACEHOLDERS}


def test_rendered_definition_validates():
    validate(_rendered())  # must not raise


def test_render_rejects_a_missing_arn():
    arns = dict(ARNS)
    del arns["SummarizeFunctionArn"]
    with pytest.raises(DefinitionError, match="SummarizeFunctionArn"):
        render(arns, 2)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "4", None, True])
def test_render_rejects_bad_max_concurrency(bad):
    with pytest.raises(DefinitionError, match="max_concurrency"):
        render(ARNS, bad)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- validate rejections


def _mutated(change) -> dict[str, Any]:
    definition = copy.deepcopy(_rendered())
    change(definition)
    return definition


def _map(d: dict[str, Any]) -> dict[str, Any]:
    return d["States"]["InferRanks"]


def _set_mode(d, mode):
    _map(d)["ItemProcessor"]["ProcessorConfig"]["Mode"] = mode


def _legacy_iterator(d):
    _map(d)["Iterator"] = _map(d).pop("ItemProcessor")


def _legacy_iterator_alongside(d):
    _map(d)["Iterator"] = copy.deepcopy(_map(d)["ItemProcessor"])


def _retry_partition_error(d):
    infer = _map(d)["ItemProcessor"]["States"]["Infer"]
    infer["Retry"][0]["ErrorEquals"].append("PartitionError")


def _retry_all(d):
    infer = _map(d)["ItemProcessor"]["States"]["Infer"]
    infer["Retry"].append({"ErrorEquals": ["States.ALL"], "MaxAttempts": 2})


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: _set_mode(d, "INLINE"), "DISTRIBUTED"),
        (lambda d: _map(d)["ItemProcessor"].pop("ProcessorConfig"), "DISTRIBUTED"),
        (lambda d: _map(d).pop("ItemReader"), "ItemReader"),
        (lambda d: _map(d)["ItemReader"].update(Resource="arn:aws:states:::s3:listObjectsV2"), "ItemReader"),
        (lambda d: _map(d).pop("MaxConcurrency"), "MaxConcurrency"),
        (lambda d: _map(d).update(MaxConcurrency=0), "MaxConcurrency"),
        (lambda d: _map(d).update(MaxConcurrency="4"), "MaxConcurrency"),
        pytest.param(lambda d: _map(d).update(MaxConcurrency=True), "MaxConcurrency"),
        (_retry_partition_error, "PartitionError"),
        (_retry_all, "States.ALL"),
        (lambda d: _map(d).update(ToleratedFailurePercentage=0), "ToleratedFailurePercentage"),
        (lambda d: _map(d).update(ToleratedFailurePercentage=100), "ToleratedFailurePercentage"),
        (_legacy_iterator, "Iterator"),
        (_legacy_iterator_alongside, "Iterator"),
        (lambda d: d["States"].pop("Summarize"), "Summarize"),
        (lambda d: d.update(StartAt="InferRanks"), "StartAt"),
        (lambda d: _map(d).update(Type="Parallel"), "Map"),
        (lambda d: d["States"]["Initialize"]["Parameters"].update(FunctionName="${InitializeFunctionArn}"), "InitializeFunctionArn"),
    ],
    ids=[
        "inline-map",
        "no-processor-config",
        "no-item-reader",
        "list-objects-reader",
        "no-max-concurrency",
        "max-concurrency-0",
        "max-concurrency-string",
        "max-concurrency-bool",
        "retry-partition-error",
        "retry-states-all",
        "int-tolerated-0",
        "int-tolerated-100",
        "legacy-iterator",
        "iterator-alongside-processor",
        "no-summarize",
        "start-at",
        "not-a-map",
        "unrendered-placeholder",
    ],
)
def test_validate_rejects(change, words):
    definition = _mutated(change)
    with pytest.raises(DefinitionError) as info:
        validate(definition)
    assert words in str(info.value)


def test_validate_accepts_float_tolerance_and_transient_retries():
    def change(d):
        _map(d)["ToleratedFailurePercentage"] = 0.0
        _map(d)["ItemProcessor"]["States"]["Infer"]["Retry"] = [{"ErrorEquals": sorted(TRANSIENT_ERRORS), "MaxAttempts": 1}]

    validate(_mutated(change))


# --------------------------------------------------------------------------- the shipped file


def test_shipped_infer_catches_into_record_failure():
    processor = template()["States"]["InferRanks"]["ItemProcessor"]
    infer = processor["States"]["Infer"]
    catches = infer.get("Catch", [])
    assert any(c.get("Next") == "RecordFailure" and "States.ALL" in c.get("ErrorEquals", []) for c in catches)
    assert "RecordFailure" in processor["States"]
    # the caught error is kept next to the item, not replacing it (RecordFailure needs the rank)
    assert all(c.get("ResultPath") not in (None, "$") for c in catches)


def test_shipped_retries_only_transient_errors():
    retriers = [(name, r) for name, state in _states(template()) for r in state.get("Retry", [])]
    assert retriers, "the pipeline should retry Lambda service errors"
    for name, retrier in retriers:
        errors = set(retrier["ErrorEquals"])
        assert "States.ALL" not in errors, name
        assert "PartitionError" not in errors, name
        assert errors <= TRANSIENT_ERRORS, f"{name} retries {errors - TRANSIENT_ERRORS}"


def test_shipped_map_is_distributed_with_float_tolerance():
    mapped = template()["States"]["InferRanks"]
    assert mapped["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert isinstance(mapped["ToleratedFailurePercentage"], float)
    assert mapped["ItemReader"]["Resource"] == "arn:aws:states:::s3:getObject"
