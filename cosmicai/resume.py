"""Resume a run from its folder: finish an interrupted run, or re-run the failed and missing ranks of a finished one.

The run folder is the durable record (``cosmicai.runfolder``): its succeeded
ranks are kept (put back into the bucket when an in-process emulator starts
empty), the data is staged again from the original request, and one resume
execution runs only what is left; its summary counts the wall time of every
execution of the run, and its logs are added to the folder's.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from cosmicai import deploy as deploy_mod
from cosmicai import execute, runfolder
from cosmicai.runs import Progress, RunOutcome, RunRequest, launch, stage_inputs
from cosmicai.targets import TargetSettings
from inference.payload import parse_payload

logger = logging.getLogger(__name__)


def resume_run(
    target: TargetSettings,
    stack: deploy_mod.Stack,
    run_dir: Path,
    progress: Progress | None = None,
    *,
    deployment: deploy_mod.Deployment | None = None,
    engine: Any = None,
) -> RunOutcome | None:
    """Finish the run in run_dir: re-run only its failed or missing ranks, keep the rest, rewrite the summary.

    Works for a finished run with failed ranks and for an interrupted one (its
    execution is stopped if it still runs, and what it completed is fetched).
    The run folder is the durable record: its succeeded ranks (records and
    predictions) are put back into the bucket when the bucket no longer has them
    (an in-process emulator starts empty), then the data is staged again from
    the original request (fix a bad partition in place, then resume). None when
    every rank already succeeded (nothing to re-run).
    """
    progress = progress or Progress()
    saved = runfolder.read(run_dir)
    if saved is None:
        raise runfolder.RunFolderError(f"resume: {run_dir} is not a run folder (no {runfolder.RUN_FILE})")
    run_id = saved["run_id"]
    parsed = parse_payload(saved["payload"])
    result_prefix = parsed.results_prefix(run_id)
    _stop_leftover(target, saved)
    summary_path = run_dir / "summary.json"
    previous_summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    world_size = int(saved.get("world_size") or previous_summary.get("world_size") or parsed.world_size or 0) or None
    succeeded = _succeeded(run_dir)
    fields = saved["request"]
    request = RunRequest(**{**fields, **{key: Path(fields[key]) if fields.get(key) else None for key in ("data", "model_folder")}})
    deployment, payload, planned = stage_inputs(target, stack, request, run_id, progress, deployment, engine)
    world_size = world_size or planned
    todo = [rank for rank in range(1, world_size + 1) if rank not in succeeded]
    if not todo:
        return None
    if engine is not None:
        engine.ready()
    reseeded = reseed_ranks(target.client("s3"), parsed.bucket, result_prefix, run_dir)
    logger.info("resume %s: %d ranks kept (%d put back), %d to re-run", run_id, len(succeeded), reseeded, len(todo))
    attempt = 1 + len(saved.get("resumes", []))
    name = f"{run_id}-resume-{attempt}"
    payload = {**payload, "run_id": run_id, "resume": True, "world_size": world_size, "result_prefix": result_prefix,
               "prior_wall_time_s": runfolder.prior_wall_time(saved)}
    runfolder.update(run_dir, world_size=world_size, resumes=[*saved.get("resumes", []), {"execution": name, "ranks": todo}])
    return launch(
        target, stack, deployment, payload, run_id=run_id, execution_name=name, out_dir=run_dir,
        progress=progress, ranks=todo, timeout_s=request.timeout_s, append_logs=True, logs_since=_first_start(saved),
    )


def _first_start(saved: dict[str, Any]) -> float | None:
    """When the run's first execution started (epoch seconds): a resume brings home the lines it missed since."""
    from datetime import datetime

    starts = [e.get("started_at") for e in saved.get("executions", []) if e.get("started_at")]
    return min(datetime.fromisoformat(s).timestamp() for s in starts) - 1 if starts else None


def _succeeded(run_dir: Path) -> set[int]:
    """Ranks whose record in the folder says succeeded."""
    done = set()
    for path in (run_dir / "ranks").glob("*.json"):
        try:
            if json.loads(path.read_text()).get("status") == "succeeded" and path.stem.isdigit():
                done.add(int(path.stem))
        except (OSError, ValueError):
            continue
    return done


def _stop_leftover(target: TargetSettings, saved: dict[str, Any]) -> None:
    """An interrupted run's execution may still run on a shared emulator: stop it before taking over."""
    for execution in saved.get("executions", []):
        if execution.get("status") in ("RUNNING", None) and execution.get("arn"):
            try:
                execute.stop(target.client("stepfunctions"), execution["arn"], "superseded by a resume")
            except Exception as exc:  # an in-process emulator is gone with the command that started it
                logger.info("resume: execution %s is gone (%s)", execution["arn"], exc)


def reseed_ranks(s3: Any, bucket: str, result_prefix: str, run_dir: Path) -> int:
    """Put the run folder's succeeded records and predictions back where the bucket lacks them."""
    present = set(execute.list_keys(s3, bucket, f"{result_prefix}/ranks/"))
    count = 0
    for path in sorted((run_dir / "ranks").glob("*.json")):
        record = json.loads(path.read_text())
        key = f"{result_prefix}/ranks/{path.name}"
        if record.get("status") != "succeeded" or key in present:
            continue
        s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
        predictions = run_dir / "predictions" / f"{path.stem}.pt"
        if predictions.is_file():
            s3.put_object(Bucket=bucket, Key=f"{result_prefix}/predictions/{predictions.name}", Body=predictions.read_bytes())
        count += 1
    return count
