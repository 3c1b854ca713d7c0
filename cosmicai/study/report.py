"""`cosmicai report RUN_DIR`: one run's picture, drawn beside its summary.

RUN_DIR is a run folder as ``cosmicai run`` (or ``cosmicai bench``, under
``runs/``) writes it: ``summary.json``, ``combined_data.json`` and
``ranks/<rank>.json``. A rank listed as failed in the summary without a
record (``MissingResult``) is drawn as failed too.

Artifacts written into RUN_DIR (or ``--out``), see ``cosmicai.study.runplots``:
``timeline.png`` (each rank's handler from start to end: load, hatched on a
cold start; inference loop; writing results; so stragglers and cold starts
show), ``throughput.png`` (bits/s and samples/s per rank) and ``memory.png``
(peak RSS and RSS after the loop per rank, MiB, against the MemorySize).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cosmicai.argtypes import read_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a run folder (summary.json, combined_data.json, ranks/)")
    parser.add_argument("--out", type=Path, default=None, help="where the PNGs go (default: RUN_DIR)")


def _read_json(path: Path) -> Any:
    return read_json(path, "run file")


def load_run(run_dir: Path) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(summary or None, one record per rank) of a run folder; ValueError naming what is wrong."""
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir}: no such run folder")
    summary_path, combined_path, ranks_dir = run_dir / "summary.json", run_dir / "combined_data.json", run_dir / "ranks"
    rank_files = sorted(ranks_dir.glob("*.json")) if ranks_dir.is_dir() else []
    if not summary_path.is_file() and not rank_files and not combined_path.is_file():
        raise ValueError(f"{run_dir}: not a run folder (no summary.json, combined_data.json or ranks/*.json)")
    summary = _read_json(summary_path) if summary_path.is_file() else None
    if summary is not None and not isinstance(summary, dict):
        raise ValueError(f"{summary_path}: not a run summary (expected a JSON object)")
    records: dict[int, dict[str, Any]] = {}
    loaded = [_read_json(path) for path in rank_files] if rank_files else (_read_json(combined_path) if combined_path.is_file() else [])
    if not isinstance(loaded, list):
        raise ValueError(f"{combined_path}: expected a JSON list of rank records")  # noqa: TRY004 (a bad file: exit 2, as ValueError maps)
    for record in loaded:
        if isinstance(record, dict) and isinstance(record.get("rank"), int):
            records[record["rank"]] = record
    for failure in (summary or {}).get("ranks_failed") or []:
        rank = failure.get("rank")
        if isinstance(rank, int) and rank not in records:
            records[rank] = {"rank": rank, "status": "missing", "error": failure.get("error")}
    if not records:
        raise ValueError(f"{run_dir}: the run has no rank records to draw")
    return summary, [records[rank] for rank in sorted(records)]


def main(args: argparse.Namespace) -> int:
    from rich.console import Console

    from cosmicai.study import runplots

    summary, records = load_run(args.run_dir)
    target = args.out or args.run_dir
    target.mkdir(parents=True, exist_ok=True)
    written = runplots.run_report(summary, records, target)
    failed = sum(1 for r in records if r.get("status") != "succeeded")
    Console().print(f"{len(records)} ranks ({failed} failed): wrote {', '.join(str(p) for p in written)}")
    return 0
