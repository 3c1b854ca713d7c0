"""Render and validate ``pipeline.asl.json``, the one state machine every target deploys.

The file is data with ``${Name}`` placeholders: the four function ARNs and the
Map's ``MaxConcurrency``. Rendering substitutes them and checks the result is
the pipeline we expect (states, DISTRIBUTED map, ItemReader, retries), so a
hand edit that breaks the contract fails at deploy time, not mid-run.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

PLACEHOLDERS = (
    "InitializeFunctionArn",
    "InferFunctionArn",
    "RecordFailureFunctionArn",
    "SummarizeFunctionArn",
    "MaxConcurrency",
)
# Errors Step Functions may retry: Lambda service faults (AWS's recommended retrier, bp-lambda-serviceexception),
# throttling and a crashed worker.
TRANSIENT_ERRORS = frozenset(
    {
        "Lambda.ClientExecutionTimeoutException",
        "Lambda.ServiceException",
        "Lambda.AWSLambdaException",
        "Lambda.SdkClientException",
        "Lambda.TooManyRequestsException",
        "Runtime.ExitError",
    }
)
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z]+)\}")


class DefinitionError(ValueError):
    """The state machine definition is malformed or was rendered with bad values."""


def template() -> dict[str, Any]:
    """The unrendered definition, as shipped in the package."""
    text = resources.files("stepfn").joinpath("pipeline.asl.json").read_text()
    return json.loads(text)


def render(arns: dict[str, str], max_concurrency: int) -> str:
    """Substitute function ARNs and MaxConcurrency; return the JSON text to deploy."""
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
        raise DefinitionError(f"max_concurrency must be an integer >= 1, got {max_concurrency!r}")
    values: dict[str, Any] = {**arns, "MaxConcurrency": max_concurrency}
    missing = [name for name in PLACEHOLDERS if name not in values]
    if missing:
        raise DefinitionError(f"missing values for placeholders: {', '.join(missing)}")

    def substitute(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: substitute(value) for key, value in node.items()}
        if isinstance(node, list):
            return [substitute(value) for value in node]
        if isinstance(node, str):
            whole = _PLACEHOLDER.fullmatch(node)
            if whole:
                return values[whole.group(1)]
            return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), node)
        return node

    definition = substitute(template())
    validate(definition)
    return json.dumps(definition, indent=2)


def _find_placeholders(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [p for value in node.values() for p in _find_placeholders(value)]
    if isinstance(node, list):
        return [p for value in node for p in _find_placeholders(value)]
    if isinstance(node, str):
        return _PLACEHOLDER.findall(node)
    return []


def validate(definition: dict[str, Any]) -> None:
    """Check a rendered definition keeps the pipeline's contract; raise DefinitionError."""
    left = _find_placeholders(definition)
    if left:
        raise DefinitionError(f"unrendered placeholders: {', '.join(sorted(set(left)))}")
    states = definition.get("States", {})
    for name in ("Initialize", "InferRanks", "Summarize"):
        if name not in states:
            raise DefinitionError(f"state {name!r} is missing")
    if definition.get("StartAt") != "Initialize":
        raise DefinitionError("StartAt must be 'Initialize'")
    mapped = states["InferRanks"]
    if mapped.get("Type") != "Map":
        raise DefinitionError("InferRanks must be a Map state")
    processor = mapped.get("ItemProcessor")
    if not processor or "Iterator" in mapped:
        raise DefinitionError("InferRanks must use ItemProcessor, not the legacy Iterator")
    if processor.get("ProcessorConfig", {}).get("Mode") != "DISTRIBUTED":
        raise DefinitionError("InferRanks must be a DISTRIBUTED Map")
    reader = mapped.get("ItemReader", {})
    if reader.get("Resource") != "arn:aws:states:::s3:getObject":
        raise DefinitionError("InferRanks must read its items with the s3:getObject ItemReader")
    concurrency = mapped.get("MaxConcurrency")
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise DefinitionError("InferRanks must set an explicit MaxConcurrency >= 1")
    tolerated = mapped.get("ToleratedFailurePercentage")
    if tolerated is not None and not isinstance(tolerated, float):
        raise DefinitionError("ToleratedFailurePercentage must be written as a float (e.g. 100.0): AWS takes an integer too, LocalStack 4.14 does not")
    infer = processor["States"].get("Infer", {})
    for retrier in infer.get("Retry", []):
        extra = set(retrier.get("ErrorEquals", [])) - TRANSIENT_ERRORS
        if extra:
            raise DefinitionError(f"Infer retries non-transient errors: {', '.join(sorted(extra))}")
