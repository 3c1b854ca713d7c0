"""Fidelity rows: Step Functions limits, names and Distributed Map semantics (see ``fidelity_rows.py``)."""

from __future__ import annotations

from fidelity_rows import LAMBDA_API, LAMBDA_DG, SFN_API, SFN_DG, Row  # noqa: F401

ROWS: list[Row] = [
    Row(
        "map-tolerance-default",
        "Step Functions",
        "Distributed Map, no tolerance set, no Catch: one child execution fails",
        "The Map fails with `States.ExceedToleratedFailureThreshold` (default tolerance 0 %), and the execution with it; "
        "a Catch on that error on the Map catches it",
        f"{SFN_DG}/maprun-fail-threshold.html",
        differs={"localstack": "LocalStack 4.14 applies no tolerance (its parser says the fields have no effect): the Map succeeds with `null` for each failed item"},
    ),
    Row(
        "map-tolerance-fields",
        "Step Functions",
        "`ToleratedFailurePercentage` / `ToleratedFailureCount` (and their `*Path` forms)",
        "The Map Run fails once failed + timed-out items exceed either value (percent of all items); within both, it succeeds",
        f"{SFN_DG}/maprun-fail-threshold.html",
        differs={"localstack": "LocalStack 4.14 applies no tolerance (its parser says the fields have no effect): the Map succeeds with `null` for each failed item"},
    ),
    Row(
        "map-tolerance-integers",
        "Step Functions",
        "An integer `ToleratedFailurePercentage` (`0`, `100`)",
        "Accepted (a number between 0 and 100)",
        f"{SFN_DG}/maprun-fail-threshold.html",
        differs={"localstack": "LocalStack 4.14's ASL grammar takes only a decimal there: CreateStateMachine answers `InvalidDefinition`"},
    ),
    Row(
        "map-run-counts",
        "Step Functions",
        "ListMapRuns / DescribeMapRun after a Map Run",
        "The Map Run is listed under its execution; `itemCounts` give succeeded, failed and total items; once it ends no child is running",
        f"{SFN_API}/API_DescribeMapRun.html",
        differs={"localstack": "LocalStack 4.14 leaves each failed child counted as running in `executionCounts` after the Map Run ends"},
    ),
    Row(
        "map-run-children",
        "Step Functions",
        "ListExecutions with `mapRunArn`",
        "Lists the child workflow executions the Map Run started (with `statusFilter`)",
        f"{SFN_API}/API_ListExecutions.html",
        differs={"localstack": "LocalStack 4.14 answers 500 (`InternalError`): it requires a `stateMachineArn`"},
    ),
    Row(
        "sfn-input-limit",
        "Step Functions",
        "StartExecution input over 262,144 bytes",
        "Refused: `input` is at most 262,144 bytes (quota and API model); the API model's length-constraint error, "
        "`ValidationException` (400) (the exact AWS text for this member is unrecorded)",
        f"{SFN_DG}/service-quotas.html",
        differs={"localstack": "LocalStack 4.14 accepts any input size"},
    ),
    Row(
        "sfn-data-limit",
        "Step Functions",
        "A task result over 256 KiB under a Catch on `States.ALL`",
        "`States.DataLimitExceeded`, a terminal error `States.ALL` cannot catch: the execution fails "
        "(a recorded AWS run from 2024 shows `States.ALL` catching it; we follow the documentation)",
        f"{SFN_DG}/concepts-error-handling.html",
        differs={"localstack": "LocalStack 4.14's `States.ALL` catches it (as the recorded AWS run did): the execution succeeds"},
    ),
    Row(
        "sfn-execution-name",
        "Step Functions",
        "StartExecution name: 1-80 characters; no whitespace, brackets, wildcards, special characters (`/`, `:`, `$`, ...) or control characters",
        "A forbidden character: `InvalidName` (400); over 80 characters: `ValidationException` (400), the API model's length constraint",
        f"{SFN_API}/API_StartExecution.html",
        differs={"localstack": "LocalStack 4.14 checks no execution name (any length, any character)"},
    ),
    Row(
        "sfn-execution-name-reuse",
        "Step Functions",
        "StartExecution with a running execution's name",
        "Same input: idempotent (the same execution); other input: `ExecutionAlreadyExists` (400)",
        f"{SFN_API}/API_StartExecution.html",
    ),
    Row(
        "sfn-stop-at-once",
        "Step Functions",
        "StopExecution right after StartExecution",
        "The execution stops: StopExecution answers its stop date, and the execution ends `ABORTED`",
        f"{SFN_API}/API_StopExecution.html",
    ),
]
