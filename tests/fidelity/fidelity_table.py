"""Render the fidelity rows (``fidelity_rows.py``) as the README's table; ``--write`` updates README.md in place.

Usage: python tests/fidelity/fidelity_table.py [--write]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fidelity_rows import Row, all_rows

README = Path(__file__).resolve().parents[2] / "README.md"
START, END = "<!-- fidelity-table:start -->", "<!-- fidelity-table:end -->"
TARGETS = ("embedded", "localstack")


def cell(row: Row, target: str) -> str:
    reason = row.differs.get(target)
    return "✓" if reason is None else f"✗ {reason}"


def render() -> str:
    lines = [
        "| Area | Behaviour | AWS (documented) | embedded | LocalStack 4.14 (host mode) |",
        "|---|---|---|---|---|",
    ]
    for row in all_rows():
        aws = f"{row.aws} ([source]({row.source}))"
        lines.append(f"| {row.area} | {row.behaviour} | {aws} | {cell(row, 'embedded')} | {cell(row, 'localstack')} |")
    return "\n".join(lines)


def current_block(text: str) -> str:
    if START not in text or END not in text:
        raise SystemExit(f"README.md has no {START} ... {END} block")
    return text.split(START, 1)[1].split(END, 1)[0].strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update README.md")
    args = parser.parse_args()
    text = README.read_text()
    table = render()
    if not args.write:
        print(table)
        return 0 if current_block(text) == table else 1
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    README.write_text(f"{before}{START}\n{table}\n{END}{after}")
    print(f"wrote {len(all_rows())} rows into {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
