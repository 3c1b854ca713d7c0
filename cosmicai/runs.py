"""One pipeline run end to end: prepare data and model, deploy, execute, fetch.

This is what ``cosmicai run`` does; tests call it directly. Artifacts written
into the run folder (``out``): ``run.json`` (the request), ``summary.json``,
``combined_data.json``, ``ranks/<rank>.json``, ``logs/<function>.log``.
"""

from __future__ import annotations

import contextlib
import hashlib
from importlib import resources
import json
import logging
import secrets
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator


from cosmicai import deploy as deploy_mod
from cosmicai import execute
from emulator.embedded import EmbeddedEmulator
from cosmicai.targets import TargetSettings
from inference.data import generate, list_partitions, load_partition, parse_size, split
from inference.errors import PayloadError
from inference.checkpoint import checkpoint_bytes, load_checkpoint, load_model
from inference.model import DEFAULT_MODEL, builtin_names, canonical_name, is_builtin
from inference.modelfolder import MODULE

BUILTIN_FOLDER = Path(str(resources.files("inference.builtin") / "redshift"))  # the built-in model, as a model folder
from inference.payload import parse_payload

logger = logging.getLogger(__name__)
DEFAULT_SAMPLES = 16_384  # generated when no data is given: 4 partitions of ~80 MiB, about a minute on 2 cores


@dataclass(frozen=True)
class RunRequest:
    """What to run. ``data`` is a partition file, a folder of 1.pt..N.pt, or None (generate)."""

    data: Path | None = None
    samples: int = DEFAULT_SAMPLES
    seed: int = 0
    partition_size: str | None = None
    world_size: int | None = None
    batch_size: int = 512
    max_concurrency: int | None = None
    model: str = DEFAULT_MODEL
    model_folder: Path | None = None  # a user's model folder (overrides model)
    run_id: str | None = None
    tolerated_failure_percentage: float = 0.0
    device: str = "cpu"
    payload: dict[str, Any] | None = None  # a raw execution input (reference keys accepted)
    timeout_s: float | None = None
    metrics: str = "wall-clock"  # the records' definitions: wall-clock or reference


@dataclass
class RunOutcome:
    run_id: str
    status: str
    summary: dict[str, Any] | None
    out_dir: Path
    execution: execute.ExecutionResult | None = None
    exit_code: int = 0


@dataclass
class Progress:
    """Callbacks a front end (the CLI's rich bar, or nothing) gets."""

    stage: Callable[[str], None] = lambda message: None
    ranks: Callable[[int, int], None] = lambda done, total: None
    started: Callable[[str], None] = lambda execution_arn: None


def new_run_id() -> str:
    return time.strftime("run-%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def model_folder(spec: str, folder: Path | None, workdir: Path) -> tuple[str, Path]:
    """(name, folder) to deploy: a user's model folder, or the built-in redshift folder
    with the checkpoint of a config name (tiny, full) or of a checkpoint file."""
    if folder is not None:
        if not (folder / MODULE).is_file():
            raise PayloadError(f"--model-folder {folder}: no {MODULE} in it (see the README's model folder interface)")
        return _safe_name(folder.resolve().name), folder
    if is_builtin(spec):
        model, name = load_model(spec), canonical_name(spec)
    else:
        path = Path(spec)
        if not path.is_file():
            raise PayloadError(f"model: {spec!r} is neither a built-in model ({builtin_names()}) nor a checkpoint file")
        model, name = load_checkpoint(path), _safe_name(path.stem)
    built = workdir / f"model-{name}"
    built.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(BUILTIN_FOLDER / MODULE, built / MODULE)
    (built / "model.pt").write_bytes(checkpoint_bytes(model))
    return name, built


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text).strip(".-") or "model"


def content_hash(paths: list[Path]) -> str:
    """Eight hex digits naming the partitions' bytes: new data never mixes with old under one prefix."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:8]


def prepare_partitions(request: RunRequest, workdir: Path) -> tuple[list[Path], str]:
    """The partition files to upload and a dataset name for data/<name>/."""
    if request.data is not None and request.data.is_dir():
        return list_partitions(request.data), request.data.name or "data"
    if request.data is not None:
        tensors = load_partition(request.data)
        label = request.data.stem
    else:
        if request.samples < 1:
            raise PayloadError(f"samples must be >= 1, got {request.samples}")
        tensors = generate(request.samples, seed=request.seed)
        label = f"synthetic-{request.samples}-seed{request.seed}"
    out = workdir / "partitions"
    if request.partition_size:
        paths = split(tensors, out, partition_size=parse_size(request.partition_size))
        label = f"{request.partition_size}-{label}"
    else:
        paths = split(tensors, out, partitions=request.world_size or 4)
    return paths, label


@contextlib.contextmanager
def open_target(target: TargetSettings, capacity: int) -> Iterator[tuple[TargetSettings, EmbeddedEmulator | None]]:
    """The target with a reachable endpoint; starts an in-process emulator when it needs one."""
    if not target.in_process:
        yield target, None
        return
    emulator = EmbeddedEmulator(capacity=capacity).start()
    try:
        yield replace(target, endpoint_url=emulator.endpoint_url, in_process=False), emulator
    finally:
        emulator.stop()


def build_payload(request: RunRequest, bucket: str, data_prefix: str, model_key: str, run_id: str) -> dict[str, Any]:
    if request.payload is not None:
        return dict(request.payload)
    payload: dict[str, Any] = {
        "bucket": bucket,
        "data_prefix": data_prefix,
        "batch_size": request.batch_size,
        "model_key": model_key,
        "device": request.device,
        "metrics": request.metrics,
        "run_id": run_id,
        "tolerated_failure_percentage": request.tolerated_failure_percentage,
    }
    if request.world_size is not None:
        payload["world_size"] = request.world_size
    return payload


def stage_inputs(
    target: TargetSettings,
    stack: deploy_mod.Stack,
    request: RunRequest,
    run_id: str,
    progress: Progress,
    deployment: deploy_mod.Deployment | None,
) -> tuple[deploy_mod.Deployment, dict[str, Any], int]:
    """Deploy if needed, upload the data and the model; return (deployment, payload, world size)."""
    if request.payload is not None:
        if deployment is None:
            progress.stage("deploying")
            deployment = deploy_mod.deploy(target, stack)
        payload = build_payload(request, stack.bucket, "", "", run_id)
        return deployment, payload, parse_payload(payload).world_size or 0
    s3 = target.client("s3")
    with tempfile.TemporaryDirectory(prefix="cosmicai-data-") as workdir:
        progress.stage("preparing data")
        paths, label = prepare_partitions(request, Path(workdir))
        if request.world_size and request.world_size > len(paths):
            raise PayloadError(f"world_size: {request.world_size} is larger than the number of partitions ({len(paths)})")
        if deployment is None:
            progress.stage("deploying")
            deployment = deploy_mod.deploy(target, stack)
        progress.stage(f"uploading {len(paths)} partitions and the model")
        model_name, folder = model_folder(request.model, request.model_folder, Path(workdir))
        model_key = deploy_mod.upload_model_folder(s3, stack.bucket, model_name, folder, stack.tags)
        data_prefix = f"data/{label}-{content_hash(paths)}"
        deploy_mod.upload_files(s3, stack.bucket, data_prefix, paths, tags=stack.tags)
    payload = build_payload(request, stack.bucket, data_prefix, model_key, run_id)
    return deployment, payload, request.world_size or len(paths)


def launch(
    target: TargetSettings,
    stack: deploy_mod.Stack,
    deployment: deploy_mod.Deployment,
    payload: dict[str, Any],
    *,
    run_id: str,
    execution_name: str,
    out_dir: Path,
    progress: Progress,
    expected_ranks: int,
    timeout_s: float | None = None,
) -> RunOutcome:
    """Start one execution, follow it, and fetch its results into out_dir."""
    parsed = parse_payload(payload)
    result_prefix = parsed.results_prefix(run_id)
    s3, sfn = target.client("s3"), target.client("stepfunctions")
    progress.stage("running")
    arn = execute.start(sfn, deployment.state_machine_arn, payload, name=execution_name)
    progress.started(arn)
    since = time.time() - 1
    result = execute.wait(
        sfn,
        s3,
        arn,
        bucket=parsed.bucket,
        result_prefix=result_prefix,
        on_progress=lambda done: progress.ranks(done, expected_ranks),
        timeout_s=timeout_s,
        since=since,
    )
    progress.stage("fetching results")
    summary = execute.fetch_results(s3, parsed.bucket, result_prefix, out_dir)
    execute.fetch_logs(target.client("logs"), [stack.function_name(k) for k in deploy_mod.HANDLERS], out_dir, since=since)
    if summary is None and result.error == "PayloadError":
        raise PayloadError(_cause_message(result.cause))
    status = summary["status"] if summary else "FAILED"
    outcome = RunOutcome(run_id=run_id, status=status, summary=summary, out_dir=out_dir, execution=result)
    outcome.exit_code = 0 if (summary and status == "SUCCEEDED" and not summary["ranks_failed"]) else 1
    if summary is None:
        logger.error("run %s ended %s without a summary: %s %s", run_id, result.status, result.error, result.cause)
    return outcome


def _cause_message(cause: str | None) -> str:
    try:
        return str(json.loads(cause or "")["errorMessage"])
    except (ValueError, KeyError, TypeError):
        return str(cause)


def execute_run(
    target: TargetSettings,
    stack: deploy_mod.Stack,
    request: RunRequest,
    out_dir: Path | None,
    progress: Progress | None = None,
    *,
    deployment: deploy_mod.Deployment | None = None,
) -> RunOutcome:
    """Upload data and model, (re)deploy, run one execution, fetch its results."""
    progress = progress or Progress()
    run_id = request.run_id or (request.payload or {}).get("run_id") or new_run_id()
    out_dir = out_dir or Path("cosmicai-out") / run_id
    deployment, payload, world_size = stage_inputs(target, stack, request, run_id, progress, deployment)
    out_dir.mkdir(parents=True, exist_ok=True)
    run_file = {"run_id": run_id, "target": target.name, "stack": stack.name, "bucket": stack.bucket, "payload": payload, "request": _jsonable(request)}
    (out_dir / "run.json").write_text(json.dumps(run_file, indent=1))
    return launch(
        target, stack, deployment, payload, run_id=run_id, execution_name=run_id, out_dir=out_dir,
        progress=progress, expected_ranks=world_size, timeout_s=request.timeout_s,
    )


def resume_run(
    target: TargetSettings,
    stack: deploy_mod.Stack,
    run_dir: Path,
    progress: Progress | None = None,
    *,
    deployment: deploy_mod.Deployment | None = None,
) -> RunOutcome:
    """Re-run only the failed or missing ranks of the run in run_dir; keep the rest; rewrite the summary.

    The run folder is the durable record: its succeeded ranks (records and
    predictions) are put back into the bucket first when the bucket no longer
    has them (an in-process emulator starts empty), then the data is staged
    again from the original request (fix a bad partition in place, then resume).
    """
    progress = progress or Progress()
    try:
        saved = json.loads((run_dir / "run.json").read_text())
        previous = json.loads((run_dir / "summary.json").read_text())
    except OSError as exc:
        raise PayloadError(f"resume: {run_dir} is not a finished run's folder ({exc.strerror}: {exc.filename})") from None
    run_id = saved["run_id"]
    fields = saved["request"]
    request = RunRequest(**{**fields, **{key: Path(fields[key]) if fields.get(key) else None for key in ("data", "model_folder")}})
    deployment, payload, _ = stage_inputs(target, stack, request, run_id, progress, deployment)
    parsed = parse_payload(saved["payload"])
    result_prefix = parsed.results_prefix(run_id)
    todo = [f["rank"] for f in previous["ranks_failed"]]
    reseeded = reseed_ranks(target.client("s3"), parsed.bucket, result_prefix, run_dir)
    logger.info("resume %s: %d ranks kept (%d put back), %d to re-run", run_id, previous["ranks_succeeded"], reseeded, len(todo))
    payload = {**payload, "run_id": run_id, "resume": True, "world_size": previous["world_size"], "result_prefix": result_prefix}
    attempt = 1 + sum(1 for key in saved.get("resumes", []))
    saved.setdefault("resumes", []).append({"execution": f"{run_id}-resume-{attempt}", "ranks": todo})
    (run_dir / "run.json").write_text(json.dumps(saved, indent=1))
    return launch(
        target, stack, deployment, payload, run_id=run_id, execution_name=f"{run_id}-resume-{attempt}", out_dir=run_dir,
        progress=progress, expected_ranks=len(todo), timeout_s=request.timeout_s,
    )


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


def _jsonable(request: RunRequest) -> dict[str, Any]:
    data = asdict(request)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()}
