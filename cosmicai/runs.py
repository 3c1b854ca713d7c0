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
from cosmicai import execute, runfolder, warmup
from cosmicai.targets import TargetSettings
from inference.errors import PayloadError
from inference.naming import DEFAULT_MODEL, builtin_names, canonical_name, is_builtin, parse_size, sorted_partitions
from inference.records import utc_now

from inference.payload import parse_payload

BUILTIN_FOLDER = Path(str(resources.files("inference.builtin") / "redshift"))  # the built-in model, as a model folder
MODULE = "model.py"  # a model folder's module (inference.modelfolder.MODULE)

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


def timed(progress: Progress) -> tuple[Progress, Callable[[], dict[str, float]]]:
    """``progress`` that also clocks its stages; and a function giving each stage's seconds so far (the breakdown)."""
    marks: list[tuple[str, float]] = [("starting", time.perf_counter())]

    def stage(message: str) -> None:
        marks.append((message.split(" ")[0], time.perf_counter()))
        progress.stage(message)

    def durations() -> dict[str, float]:
        ends = [t for _, t in marks[1:]] + [time.perf_counter()]
        spans: dict[str, float] = {}
        for (name, start), end in zip(marks, ends):
            spans[name] = round(spans.get(name, 0.0) + end - start, 3)
        return spans

    return replace(progress, stage=stage), durations


def new_run_id() -> str:
    return time.strftime("run-%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def model_folder(spec: str, folder: Path | None, workdir: Path) -> tuple[str, Path]:
    """(name, folder) to deploy: a user's model folder, or the built-in redshift folder with a built-in model's
    name and seed (``builtin.json``: the worker builds the seeded weights; no torch here) or a checkpoint file's
    weights (``model.pt``, converted here from any format ``inference.checkpoint`` reads)."""
    if folder is not None:
        if not (folder / MODULE).is_file():
            raise PayloadError(f"--model-folder {folder}: no {MODULE} in it (see the README's model folder interface)")
        return _safe_name(folder.resolve().name), folder
    if is_builtin(spec):
        name = canonical_name(spec)
        built = workdir / f"model-{name}"
        built.mkdir(parents=True, exist_ok=True)
        (built / "builtin.json").write_text(json.dumps({"model": name, "seed": 0}))
    else:
        from inference.checkpoint import checkpoint_bytes, load_checkpoint

        path = Path(spec)
        if not path.is_file():
            raise PayloadError(f"model: {spec!r} is neither a built-in model ({builtin_names()}) nor a checkpoint file")
        name = _safe_name(path.stem)
        built = workdir / f"model-{name}"
        built.mkdir(parents=True, exist_ok=True)
        (built / "model.pt").write_bytes(checkpoint_bytes(load_checkpoint(path)))
    shutil.copyfile(BUILTIN_FOLDER / MODULE, built / MODULE)
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
    """The partition files to upload and a dataset name for data/<name>/ (a folder of partitions needs no torch here)."""
    if request.data is not None and request.data.is_dir():
        found = sorted_partitions(p for p in request.data.iterdir() if p.is_file())
        if not found:
            raise PayloadError(f"partition folder {request.data}: no <int>.pt partition files")
        return found, request.data.name or "data"
    from inference.data import generate, load_partition, split

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
def open_target(target: TargetSettings, capacity: int, wait: bool = True, stack: deploy_mod.Stack | None = None) -> Iterator[tuple[TargetSettings, Any]]:
    """The target with a reachable endpoint; starts an in-process emulator when it needs one.

    The emulator is yielded as the engine. With ``wait`` False it is yielded
    before its Step Functions finish loading: pass it to ``execute_run`` /
    ``resume_run`` (``engine=``), which wait for it before starting the
    execution. Given the ``stack`` the run deploys, the emulator starts that
    stack's workers first, before moto is even imported (their imports, Infer's
    torch, overlap the whole start and deploy; the deploy's versions take them over).
    """
    if not target.in_process:
        yield target, None
        return
    from emulator.embedded import EmbeddedEmulator  # moto: only an in-process run pays for it

    emulator = EmbeddedEmulator(capacity=capacity)
    try:
        if stack is not None:
            warmup.prestart_stack(emulator, target, stack)
        emulator.start(wait=wait)
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
    engine: Any = None,
) -> tuple[deploy_mod.Deployment, dict[str, Any], int]:
    """Deploy if needed (an in-process engine starts Infer's workers right after), upload the data and the model;
    return (deployment, payload, world size)."""
    if request.payload is not None:
        payload = build_payload(request, stack.bucket, "", "", run_id)
        _check_buckets(target, parse_payload(payload))
        if deployment is None:
            progress.stage("deploying")
            deployment = deploy_mod.deploy(target, stack, on_function=warmup.prewarmer(engine), on_planned=warmup.prestarter(engine))
        else:
            warmup.prewarm_deployment(engine, deployment)
        return deployment, payload, parse_payload(payload).world_size or 0
    s3 = target.client("s3")
    with tempfile.TemporaryDirectory(prefix="cosmicai-data-") as workdir:
        progress.stage("preparing data")
        paths, label = prepare_partitions(request, Path(workdir))
        if request.world_size and request.world_size > len(paths):
            raise PayloadError(f"world_size: {request.world_size} is larger than the number of partitions ({len(paths)})")
        if deployment is None:
            progress.stage("deploying")
            deployment = deploy_mod.deploy(target, stack, on_function=warmup.prewarmer(engine), on_planned=warmup.prestarter(engine))
        else:
            warmup.prewarm_deployment(engine, deployment)
        progress.stage(f"uploading {len(paths)} partitions and the model")
        model_name, folder = model_folder(request.model, request.model_folder, Path(workdir))
        model_key = deploy_mod.upload_model_folder(s3, stack.bucket, model_name, folder, stack.tags)
        data_prefix = f"data/{label}-{content_hash(paths)}"
        deploy_mod.upload_files(s3, stack.bucket, data_prefix, paths, tags=stack.tags)
    payload = build_payload(request, stack.bucket, data_prefix, model_key, run_id)
    return deployment, payload, request.world_size or len(paths)


def _check_buckets(target: TargetSettings, parsed: Any) -> None:
    """The payload's buckets exist on the target (before anything is deployed or started)."""
    from botocore.exceptions import ClientError

    s3 = target.client("s3")
    for bucket in dict.fromkeys([parsed.bucket, parsed.source_bucket]):
        try:
            s3.head_bucket(Bucket=bucket)
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            raise PayloadError(f"bucket {bucket!r} {'does not exist' if code in ('404', 'NoSuchBucket') else f'cannot be read ({code})'} on the {target.name} target") from None


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
    ranks: list[int] | None,
    world_size: int = 0,
    timeout_s: float | None = None,
    append_logs: bool = False,
    logs_since: float | None = None,
) -> RunOutcome:
    """Start one execution, record it in the run folder, follow it, and fetch its results into out_dir.

    Ctrl-C (or SIGTERM) stops the execution it started (StopExecution), fetches
    what completed, and marks the folder ``interrupted``, so ``--resume`` can finish it.
    """
    parsed = parse_payload(payload)
    result_prefix = parsed.results_prefix(run_id)
    s3, sfn = target.client("s3"), target.client("stepfunctions")
    progress.stage("running")
    since = time.time() - 1
    arn = execute.start(sfn, deployment.state_machine_arn, payload, name=execution_name)
    runfolder.update(out_dir, status="running")
    runfolder.record_execution(out_dir, execution_name, arn, status="RUNNING", started_at=utc_now())
    progress.started(arn)
    # A Map Run's item total grows as it starts items (LocalStack's and moto's counts), so the bar's total is
    # the ranks this execution was given (``world_size``: the partitions staged), never "860/862" while 1,200 run.
    expected = len(ranks) if ranks is not None else (world_size or parsed.world_size or 0)
    try:
        result = execute.wait(
            sfn, s3, arn, bucket=parsed.bucket, result_prefix=result_prefix, ranks=ranks,
            on_progress=lambda done, total: progress.ranks(done, max(total or 0, expected)), timeout_s=timeout_s, since=since,
        )
    except KeyboardInterrupt:
        _interrupted(target, stack, arn, execution_name, parsed.bucket, result_prefix, run_id, out_dir, since, append_logs, time.time() - since - 1)
        raise
    runfolder.record_execution(out_dir, execution_name, arn, status=result.status, wall_time_s=result.wall_time_s)
    if result.error == "PayloadError":  # Initialize refused the payload: nothing of this run exists
        raise PayloadError(_cause_message(result.cause))
    progress.stage("fetching results")
    summary = execute.fetch_results(s3, parsed.bucket, result_prefix, out_dir)
    execute.fetch_logs(target.client("logs"), [stack.function_name(k) for k in deploy_mod.HANDLERS], out_dir,
                       since=min(since, logs_since or since), run_id=run_id, append=append_logs)
    if summary is not None and summary.get("run_id") != run_id:
        raise PayloadError(f"the summary at s3://{parsed.bucket}/{result_prefix}/summary.json belongs to run {summary.get('run_id')!r}, not to {run_id!r}")
    runfolder.update(out_dir, status="finished")
    status = summary["status"] if summary else "FAILED"
    outcome = RunOutcome(run_id=run_id, status=status, summary=summary, out_dir=out_dir, execution=result)
    outcome.exit_code = 0 if (summary and status == "SUCCEEDED" and not summary["ranks_failed"]) else 1
    if summary is None:
        logger.error("run %s ended %s without a summary: %s %s", run_id, result.status, result.error, result.cause)
    return outcome


def _interrupted(target: TargetSettings, stack: deploy_mod.Stack, arn: str, name: str, bucket: str, result_prefix: str,
                 run_id: str, out_dir: Path, since: float, append_logs: bool, wall_time_s: float) -> None:
    """Stop the execution, bring home what completed, mark the folder interrupted (best effort: never hides the interrupt)."""
    try:
        execute.stop(target.client("stepfunctions"), arn, "interrupted by the user (Ctrl-C or SIGTERM)")
        runfolder.record_execution(out_dir, name, arn, status="ABORTED", wall_time_s=wall_time_s)
        execute.fetch_results(target.client("s3"), bucket, result_prefix, out_dir)
        execute.fetch_logs(target.client("logs"), [stack.function_name(k) for k in deploy_mod.HANDLERS], out_dir, since=since, run_id=run_id, append=append_logs)
    except Exception as exc:  # the emulator may be going down with us
        logger.warning("run %s: could not stop or fetch after the interrupt: %s", run_id, exc)
    finally:
        runfolder.update(out_dir, status="interrupted")


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
    engine: Any = None,
) -> RunOutcome:
    """Check the run folder, upload data and model, (re)deploy, run one execution, fetch its results.

    The folder is made only once everything is staged: a failed start leaves none behind.
    """
    progress, stages = timed(progress or Progress())
    run_id = runfolder.check_run_id(request.run_id or (request.payload or {}).get("run_id") or new_run_id())
    out_dir = out_dir or Path("cosmicai-out") / run_id
    runfolder.check_new(out_dir, run_id)
    deployment, payload, world_size = stage_inputs(target, stack, request, run_id, progress, deployment, engine)
    if engine is not None:
        engine.ready()
    run_file = {"run_id": run_id, "target": target.name, "stack": stack.name, "bucket": stack.bucket, "status": "starting",
                "world_size": world_size or None, "payload": payload, "request": _jsonable(request), "executions": []}
    runfolder.write(out_dir, run_file)
    try:
        outcome = launch(
            target, stack, deployment, payload, run_id=run_id, execution_name=run_id, out_dir=out_dir,
            progress=progress, ranks=None, world_size=world_size, timeout_s=request.timeout_s,
        )
    except BaseException:
        if (runfolder.read(out_dir) or {}).get("status") == "starting":  # no execution began: leave no folder behind
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    runfolder.update(out_dir, stages_s=stages())  # where the command's time went: preparing, deploying, uploading, running, fetching
    return outcome


def _jsonable(request: RunRequest) -> dict[str, Any]:
    data = asdict(request)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()}
