"""``cosmicai emulator up/down``: the embedded emulator served on 127.0.0.1 for other tools.

State file: ``$COSMICAI_HOME/emulator.json`` (default ``~/.cache/cosmicai``)
holding the server's pid, port and endpoint, so ``down`` and other commands
find it. The AWS CLI, boto3 or a notebook reach it with
``AWS_ENDPOINT_URL=http://127.0.0.1:<port>`` and any dummy credentials.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import requests

from emulator.embedded import EmbeddedEmulator
from emulator.state import home


def state_file() -> Path:
    return home() / "emulator.json"


def running() -> dict[str, Any] | None:
    """The state of a live emulator started by ``emulator up``, else None."""
    try:
        state = json.loads(state_file().read_text())
    except (OSError, ValueError):
        return None
    if not psutil.pid_exists(state.get("pid", -1)) or not healthy(state["endpoint"]):
        return None
    return state


def healthy(endpoint: str, timeout_s: float = 1.0) -> bool:
    try:
        return requests.get(f"{endpoint}/moto-api/data.json", timeout=timeout_s).ok
    except requests.RequestException:
        return False


def serve(port: int, capacity: int) -> None:
    """Run the emulator in the foreground until SIGINT or SIGTERM."""
    if running():
        raise RuntimeError(f"an emulator is already up at {running()['endpoint']}; stop it with 'cosmicai emulator down'")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    emulator = EmbeddedEmulator(port=port, capacity=capacity).start()
    try:
        state_file().parent.mkdir(parents=True, exist_ok=True)
        state_file().write_text(json.dumps({"pid": os.getpid(), "port": emulator.port, "endpoint": emulator.endpoint_url}))
        print(f"emulator up at {emulator.endpoint_url} (pid {os.getpid()}); stop with Ctrl-C or 'cosmicai emulator down'", flush=True)
        stop.wait()
    finally:
        emulator.stop()
        try:
            if json.loads(state_file().read_text()).get("pid") == os.getpid():
                state_file().unlink()
        except (OSError, ValueError):
            pass


def detach(port: int, capacity: int, timeout_s: float = 60.0) -> dict[str, Any]:
    """Start ``serve`` in a background process; return its state once it answers."""
    log = home() / "emulator.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "emulator.server", str(port), str(capacity)],
            stdout=handle,
            stderr=handle,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        state = running()
        if state and state["pid"] == process.pid:
            return state
        if process.poll() is not None:
            raise RuntimeError(f"the emulator exited with status {process.returncode}; see {log}")
        time.sleep(0.2)
    process.terminate()
    raise RuntimeError(f"the emulator did not start within {timeout_s:.0f} s; see {log}")


def shutdown(timeout_s: float = 30.0) -> bool:
    """Stop the emulator started by ``up``; False if none was running."""
    try:
        state = json.loads(state_file().read_text())
    except (OSError, ValueError):
        return False
    pid = state.get("pid")
    if not pid or not psutil.pid_exists(pid):
        state_file().unlink(missing_ok=True)
        return False
    proc = psutil.Process(pid)
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except psutil.TimeoutExpired:
        proc.kill()
    state_file().unlink(missing_ok=True)
    return True


if __name__ == "__main__":  # ``python -m emulator.server PORT CAPACITY``: what ``detach`` starts
    serve(int(sys.argv[1]), int(sys.argv[2]))
