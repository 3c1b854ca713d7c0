"""A run's local folder: checked before any work, recorded from the moment its execution starts.

``run.json`` is the durable record of a run: its request and payload, its
status (``running`` as soon as the execution starts, then ``finished`` or
``interrupted``) and every execution it took (name, ARN, wall time), so an
interrupted or failed run can be resumed. A folder belongs to one run: a
command never writes into another run's folder, a file, a path under a file
or a folder it cannot write.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from inference.errors import PayloadError

RUN_FILE = "run.json"
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")  # also a valid Step Functions execution name


class RunFolderError(PayloadError):
    """The run folder (``--out``) or the run id cannot be used for this run; nothing was started."""


def check_run_id(run_id: str) -> str:
    if not RUN_ID.match(run_id or ""):
        raise RunFolderError(f"run id {run_id!r}: 1-80 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return run_id


def check_new(out_dir: Path, run_id: str) -> None:
    """Raise RunFolderError unless ``out_dir`` can become this new run's folder (checked, nothing created)."""
    check_run_id(run_id)
    if out_dir.exists() and not out_dir.is_dir():
        raise RunFolderError(f"--out {out_dir}: a file, not a folder")
    ancestor = out_dir
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise RunFolderError(f"--out {out_dir}: {ancestor} is a file, so no folder can be made under it")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise RunFolderError(f"--out {out_dir}: {ancestor} is not writable")
    if out_dir.is_dir():
        saved = read(out_dir)
        if saved is not None:
            owner = saved.get("run_id")
            hint = f"resume it with --resume {owner}" + (f" --out {out_dir}" if out_dir.name != owner else "")
            raise RunFolderError(f"--out {out_dir}: already holds run {owner!r}; {hint}, or choose another --out/--run-id")
        if any(out_dir.iterdir()):
            raise RunFolderError(f"--out {out_dir}: not empty and not a run folder; choose an empty or new folder")


def read(folder: Path) -> dict[str, Any] | None:
    """The folder's run.json, or None when there is none; RunFolderError when it cannot be read."""
    path = folder / RUN_FILE
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{path}: unreadable ({exc})") from None
    if not isinstance(saved, dict) or "run_id" not in saved:
        raise RunFolderError(f"{path}: not a cosmicai run file")
    return saved


def write(folder: Path, saved: dict[str, Any]) -> None:
    """Write run.json atomically (the record survives a kill at any moment)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{RUN_FILE}.tmp"
    tmp.write_text(json.dumps(saved, indent=1))
    os.replace(tmp, folder / RUN_FILE)


def update(folder: Path, **changes: Any) -> dict[str, Any]:
    saved = read(folder) or {}
    saved.update(changes)
    write(folder, saved)
    return saved


def record_execution(folder: Path, name: str, arn: str, **fields: Any) -> dict[str, Any]:
    """Add or update one execution of the run (by name)."""
    saved = read(folder) or {}
    executions = [e for e in saved.get("executions", []) if e.get("name") != name]
    previous = next((e for e in saved.get("executions", []) if e.get("name") == name), {})
    executions.append({**previous, "name": name, "arn": arn, **fields})
    saved["executions"] = executions
    write(folder, saved)
    return saved


def prior_wall_time(saved: dict[str, Any]) -> float:
    """Wall time of the run's executions that ended, in seconds (a resume adds its own)."""
    return sum(float(e.get("wall_time_s") or 0.0) for e in saved.get("executions", []) if e.get("status") not in (None, "RUNNING"))
