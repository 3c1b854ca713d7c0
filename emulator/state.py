"""Where this machine's engines keep their state (``$COSMICAI_HOME``) and what they install (``$COSMICAI_CACHE``).

A state file is a small JSON object naming a running engine (its pid, port,
endpoint); it counts only while that pid is alive. Written atomically, so a
reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import psutil


def home() -> Path:
    """This project's state folder on this machine (state files, logs): $COSMICAI_HOME, default ~/.cache/cosmicai."""
    return Path(os.environ.get("COSMICAI_HOME") or Path.home() / ".cache" / "cosmicai")


def cache_home() -> Path:
    """Where installed things are kept (LocalStack's venv): $COSMICAI_CACHE, default ~/.cache/cosmicai.

    Apart from :func:`home`, so a session with its own state folder reuses what is installed.
    """
    return Path(os.environ.get("COSMICAI_CACHE") or Path.home() / ".cache" / "cosmicai")


def read_state(path: Path) -> dict[str, Any] | None:
    """The state in ``path`` if its process is alive, else None (a stale file is removed)."""
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not pid_alive(state.get("pid")):
        path.unlink(missing_ok=True)
        return None
    return state


def write_state(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(state, handle)
    os.replace(tmp, path)


def pid_alive(pid: Any) -> bool:
    """Whether ``pid`` names a running process (a zombie does not count)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether nothing holds host:port (connections lingering in TIME_WAIT do not count)."""
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            return True
        except OSError:
            return False


def owned_tempdir(prefix: str) -> str:
    """A temp folder named ``<prefix><pid>-<random>``: :func:`sweep_stale_tempdirs` knows whose it is."""
    return tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-")


def sweep_stale_tempdirs(prefix: str) -> list[str]:
    """Remove the ``<prefix><pid>-*`` temp folders whose process is gone (killed before it could clean up)."""
    import re
    import shutil

    removed = []
    root = Path(tempfile.gettempdir())
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)-")
    for path in root.glob(f"{prefix}*"):
        match = pattern.match(path.name)
        if match and path.is_dir() and not pid_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    return removed
