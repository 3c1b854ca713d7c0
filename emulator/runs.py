"""One pipeline run end to end: prepare data and model, deploy, execute, fetch.

This is what ``cosmicai run`` does; tests call it directly. Artifacts written
into the run folder (``out``): ``run.json`` (the request), ``summary.json``,
``combined_data.json``, ``ranks/<rank>.json``, ``logs/<function>.log``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator


from emulator import deploy as deploy_mod
from emulator import execute
from emulator.embedded import EmbeddedEmulator
from emulator.targets import TargetSettings
from inference.data import generate, list_partitions, load_partition, parse_size, split
from inference.errors import PayloadError
from inference.model import CONFIGS, checkpoint_bytes, load_checkpoint, load_model
from inference.payload import parse_payload

logger = logging.getLogger(__name__)
DEFAULT_SAMPLES = 2048  # with the full model (~40 samples/s on 2 cores) the default run takes about a minute


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
    model: str = "full"
    run_id: str | None = None
    tolerated_failure_percentage: float = 0.0
    device: str = "cpu"
    payload: dict[str, Any] | None = None  # a raw execution input (reference keys accepted)
    timeout_s: float | None = None


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


def new_run_id() -> str:
    return time.strftime("run-%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def model_checkpoint(spec: str) -> tuple[str, bytes]:
    """(name, checkpoint bytes) for a built-in config name or a user's checkpoint file."""
    if spec in CONFIGS:
        model = load_model(spec)
        name = spec
    else:
        path = Path(spec)
        if not path.is_file():
            raise PayloadError(f"model: {spec!r} is neither a built-in model ({', '.join(CONFIGS)}) nor a checkpoint file")
        model = load_checkpoint(path)
        name = "".join(c if c.isalnum() or c in "-_" else "-" for c in path.stem) or "model"
    return name, checkpoint_bytes(model)


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
        "run_id": run_id,
        "tolerated_failure_percentage": request.tolerated_failure_percentage,
    }
    if request.world_size is not None:
        payload["world_size"] = request.world_size
    return payload


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
    s3 = target.client("s3")
    with tempfile.TemporaryDirectory(prefix="cosmicai-data-") as workdir:
        if request.payload is None:
            progress.stage("preparing data")
            paths, label = prepare_partitions(request, Path(workdir))
            if request.world_size and request.world_size > len(paths):
                raise PayloadError(f"world_size: {request.world_size} is larger than the number of partitions ({len(paths)})")
            if deployment is None:
                progress.stage("deploying")
                deployment = deploy_mod.deploy(target, stack)
            progress.stage(f"uploading {len(paths)} partitions and the {request.model} model")
            model_name, checkpoint = model_checkpoint(request.model)
            model_key = deploy_mod.upload_model(s3, stack.bucket, model_name, checkpoint)
            data_prefix = f"data/{label}-{content_hash(paths)}"
            deploy_mod.upload_files(s3, stack.bucket, data_prefix, paths)
        else:
            data_prefix, model_key = "", ""
            if deployment is None:
                progress.stage("deploying")
                deployment = deploy_mod.deploy(target, stack)
    payload = build_payload(request, stack.bucket, data_prefix, model_key, run_id)
    parsed = parse_payload(payload)
    result_prefix = parsed.results_prefix(run_id)
    world_size = parsed.world_size or len(paths) if request.payload is None else parsed.world_size or 0
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "run.json").write_text(json.dumps({"run_id": run_id, "target": target.name, "payload": payload, "request": _jsonable(request)}, indent=1))
    sfn = target.client("stepfunctions")
    progress.stage("running")
    arn = execute.start(sfn, deployment.state_machine_arn, payload, name=run_id)
    result = execute.wait(
        sfn,
        s3,
        arn,
        bucket=parsed.bucket,
        result_prefix=result_prefix,
        on_progress=lambda done: progress.ranks(done, world_size),
        timeout_s=request.timeout_s,
    )
    progress.stage("fetching results")
    summary = execute.fetch_results(s3, parsed.bucket, result_prefix, out_dir)
    execute.fetch_logs(target.client("logs"), [stack.function_name(k) for k in deploy_mod.HANDLERS], out_dir)
    status = summary["status"] if summary else "FAILED"
    outcome = RunOutcome(run_id=run_id, status=status, summary=summary, out_dir=out_dir, execution=result)
    outcome.exit_code = 0 if (summary and status == "SUCCEEDED" and not summary["ranks_failed"]) else 1
    if summary is None:
        logger.error("run %s ended %s without a summary: %s %s", run_id, result.status, result.error, result.cause)
    return outcome


def _jsonable(request: RunRequest) -> dict[str, Any]:
    data = asdict(request)
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()}
