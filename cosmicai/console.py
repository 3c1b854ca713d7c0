"""Console rendering for the CLI (rich): progress of a run and the summary table."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Any, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

out = Console(soft_wrap=not sys.stdout.isatty())  # piped or captured: never wrap a path in the middle
err = Console(stderr=True, soft_wrap=not sys.stderr.isatty())


@contextmanager
def run_progress(enabled: bool) -> Iterator[Any]:
    """A rich progress bar of ranks done out of world_size (on stderr; silent if disabled)."""
    from cosmicai.runs import Progress as RunProgress  # imports torch and moto: only commands that run pay for it

    if not enabled or not err.is_terminal:  # piped or captured: no bar (nothing to redraw; a bad input stays one line)
        yield RunProgress()
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    ) as bar:
        task = bar.add_task("starting", total=None)

        def stage(message: str) -> None:
            bar.update(task, description=message)

        def ranks(done: int, total: int) -> None:
            bar.update(task, description="ranks done", completed=done, total=total or None)

        yield RunProgress(stage=stage, ranks=ranks)


@contextmanager
def status_line() -> Iterator[Any]:
    """A spinner with the latest step of a long operation (on stderr); yields the function that sets the step."""
    with err.status("starting") as status:
        yield lambda message: status.update(message)


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def print_summary(summary: dict[str, Any], out_dir: str) -> None:
    """The run's headline figures, the per-rank table and where the files are."""
    status_style = "green" if summary["status"] == "SUCCEEDED" and not summary["ranks_failed"] else "red"
    head = Table(title=f"run {summary['run_id']} on {summary['target']}: [{status_style}]{summary['status']}[/]", show_header=False)
    head.add_column(style="bold")
    head.add_column()
    rows = [
        ("ranks succeeded", f"{summary['ranks_succeeded']} / {summary['world_size']}"),
        ("samples", _fmt(summary["samples_total"])),
        ("wall time (s, execution start to summarize)", _fmt(summary["wall_time_s"])),
        ("throughput (bits/s over wall time)", _fmt(summary["throughput_bps"], 0)),
        ("throughput, sum of ranks (bits/s)", _fmt(summary["throughput_bps_sum"], 0)),
        ("samples/s (over wall time)", _fmt(summary["sample_persec"])),
        ("execution time per batch, mean / p95 (s)", f"{_fmt(summary['execution_time_mean_s'], 3)} / {_fmt(summary['execution_time_p95_s'], 3)}"),
        ("peak memory, max over ranks (MiB)", _fmt(summary["peak_rss_mb_max"], 1)),
        ("cost on AWS (USD)", f"{summary['cost_usd']['total']:.6f}"),
    ]
    for key, value in rows:
        head.add_row(key, value)
    out.print(head)
    if summary["ranks_failed"]:
        failed = Table(title="failed ranks", header_style="bold red")
        failed.add_column("rank", justify="right")
        failed.add_column("error")
        failed.add_column("message")
        for item in summary["ranks_failed"]:
            failed.add_row(str(item["rank"]), item["error"]["type"], str(item["error"]["message"])[:300])
        out.print(failed)
    out.print(f"results: {out_dir}/summary.json, combined_data.json, ranks/, logs/")


def print_ranks(records: list[dict[str, Any]], limit: int = 32) -> None:
    table = Table(title="ranks", header_style="bold")
    for name in ("rank", "status", "samples", "batches", "samples/s", "s/batch", "peak MiB", "load s"):
        table.add_column(name, justify="right")
    for record in records[:limit]:
        table.add_row(
            str(record.get("rank")),
            "ok" if record.get("status") == "succeeded" else "[red]FAILED[/]",
            _fmt(record.get("num_samples")),
            _fmt(record.get("num_batches")),
            _fmt(record.get("sample_persec"), 1),
            _fmt(record.get("execution_time (seconds/batch)"), 3),
            _fmt(record.get("peak_rss_mb"), 0),
            _fmt(record.get("load_time_s"), 2),
        )
    if len(records) > limit:
        table.caption = f"{len(records) - limit} more ranks in combined_data.json"
    out.print(table)


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")
    sys.stdout.flush()


def print_record(record: dict[str, Any]) -> None:
    table = Table(show_header=False, title="local run")
    table.add_column(style="bold")
    table.add_column()
    for key, value in record.items():
        table.add_row(key, _fmt(value, 4) if not isinstance(value, (dict, list)) else json.dumps(value))
    out.print(table)
