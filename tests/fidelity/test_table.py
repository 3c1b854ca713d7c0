"""The README's fidelity table is the rows' rendering, and every row is asserted by a test on each target."""

from __future__ import annotations

import re
from pathlib import Path

from fidelity_rows import all_rows
from fidelity_table import README, current_block, render

HERE = Path(__file__).parent


def test_the_readme_table_is_current():
    assert current_block(README.read_text()) == render(), "run: python tests/fidelity/fidelity_table.py --write"


def test_every_row_has_a_test_and_every_test_a_row():
    marked = set()
    for path in HERE.glob("test_*.py"):
        marked |= set(re.findall(r'@pytest\.mark\.fidelity\("([^"]+)"\)', path.read_text()))
    ids = [row.id for row in all_rows()]
    assert len(ids) == len(set(ids)), "duplicate row ids"
    assert not set(ids) - marked, f"rows without a test: {sorted(set(ids) - marked)}"
    assert not marked - set(ids), f"tests naming unknown rows: {sorted(marked - set(ids))}"
    assert all(row.source.startswith("https://docs.aws.amazon.com/") for row in all_rows()), "every row cites AWS's documentation"
