"""The fidelity table: behaviours a fan-out pipeline depends on, what AWS documents, and where a target differs.

Each row is asserted by at least one test under ``tests/fidelity`` (marked
``@pytest.mark.fidelity("<row id>")``) that holds the target to AWS's documented
behaviour with plain boto3. A target listed in ``differs`` is expected to fail
that test (``xfail(strict=True)``: the day it matches, the test says so and the
row is updated). ``python tests/fidelity/fidelity_table.py --write`` renders the rows into
the README; ``tests/fidelity/test_table.py`` checks that the README is current.
The rows live in three lists by area: ``rows_lambda_runtime.py``,
``rows_lambda_limits.py`` and ``rows_sfn.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Row:
    id: str
    area: str  # "Lambda", "Step Functions", ...
    behaviour: str
    aws: str  # what AWS documents (short)
    source: str  # the documentation page (URL)
    differs: dict[str, str] = field(default_factory=dict)  # target -> why it differs (deliberate, or the emulator's limit)


LAMBDA_DG = "https://docs.aws.amazon.com/lambda/latest/dg"
SFN_DG = "https://docs.aws.amazon.com/step-functions/latest/dg"
LAMBDA_API = "https://docs.aws.amazon.com/lambda/latest/api"
SFN_API = "https://docs.aws.amazon.com/step-functions/latest/apireference"



def all_rows() -> list[Row]:
    """Every row, in table order: Lambda runtime and environment, Lambda limits and errors, Step Functions."""
    from rows_lambda_limits import ROWS as LIMITS
    from rows_lambda_runtime import ROWS as RUNTIME
    from rows_sfn import ROWS as SFN

    return [*RUNTIME, *LIMITS, *SFN]


def row(row_id: str) -> Row:
    """The row with this id (KeyError names the unknown id)."""
    for candidate in all_rows():
        if candidate.id == row_id:
            return candidate
    raise KeyError(f"no fidelity row {row_id!r} in tests/fidelity/fidelity_rows.py")
