"""``cosmicai emulator up/down``: the embedded emulator served on 127.0.0.1 for other tools.

State file: ``$COSMICAI_HOME/emulator.json`` (default ``~/.cache/cosmicai``)
holding the server's pid, port and endpoint, so ``down`` and other commands
find it; it counts only while that pid lives. Liveness is ``GET
/moto-api/config`` (cheap, and independent of what the emulator holds: moto's
data dump fails once a Lambda function exists). The AWS CLI, boto3 or a
notebook reach it with ``AWS_ENDPOINT_URL=http://127.0.0.1:<port>`` and any
dummy credentials. Its output goes to ``$COSMICAI_HOME/emulator.log``.
"""

from __future__ import annotations

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

from emulator.state import home, pid_alive, port_free, read_state, write_state

START_TIMEOUT_S = 60.0


class EmulatorError(RuntimeError):
    """The emulator cannot be started, found or reached; the message says why and what to do."""


def state_file() -> Path:
    return home() / "emulator.json"


def registered() -> dict[str, Any] | None:
    """The state of an emulator started by ``emulator up`` whose process is alive (healthy or not), else None."""
    return read_state(state_file())


def running() -> dict[str, Any] | None:
    """The state of a live, answering emulator started by ``emulator up``, else None."""
    state = registered()
    return state if state and healthy(state["endpoint"]) else None


def healthy(endpoint: str, timeout_s: float = 2.0) -> bool:
    """Whether moto answers at ``endpoint`` (its config API: independent of the functions it holds)."""
    try:
        response = requests.get(f"{endpoint}/moto-api/config", timeout=timeout_s)
        return response.ok and isinstance(response.json(), dict)
    except (requests.RequestException, ValueError):
        return False


def _check_can_start(port: int) -> None:
    state = registered()
    if state:
        raise EmulatorError(f"an emulator is already up at {state['endpoint']} (pid {state['pid']}); stop it with 'cosmicai emulator down'")
    if not port_free(port):
        raise EmulatorError(f"port {port} on 127.0.0.1 is in use (LocalStack uses 4566 too): pass --port, or stop what listens there")


def serve(port: int, capacity: int, announce: Any = print) -> None:
    """Run the emulator in the foreground until SIGINT or SIGTERM; it always stops, and leaves no state behind."""
    from emulator.embedded import EmbeddedEmulator  # moto: only what serves pays for it

    _check_can_start(port)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    emulator = EmbeddedEmulator(port=port, capacity=capacity)
    try:
        emulator.start()
        write_state(state_file(), {"pid": os.getpid(), "port": emulator.port, "endpoint": emulator.endpoint_url})
        announce(f"emulator up at {emulator.endpoint_url} (pid {os.getpid()}); stop with Ctrl-C or 'cosmicai emulator down'")
        stop.wait()
    finally:
        emulator.stop()
        state = read_state(state_file())
        if state is None or state.get("pid") == os.getpid():
            state_file().unlink(missing_ok=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def detach(port: int, capacity: int, timeout_s: float = START_TIMEOUT_S) -> dict[str, Any]:
    """Start ``serve`` in a background process; return its state once it answers. A failed start leaves nothing running."""
    _check_can_start(port)
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
            raise EmulatorError(f"the emulator exited with status {process.returncode} while starting; see {log}")
        time.sleep(0.1)
    _kill_group(process.pid)
    raise EmulatorError(f"the emulator did not answer within {timeout_s:.0f} s, and was stopped; see {log}")


def _kill_group(pid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except (ProcessLookupError, PermissionError):
            return
        try:
            psutil.Process(pid).wait(timeout=5)
            return
        except psutil.Error:
            continue


def shutdown(timeout_s: float = 30.0) -> bool:
    """Stop the emulator started by ``up`` (and its workers); False if none was running."""
    state = registered()
    if state is None:
        state_file().unlink(missing_ok=True)
        return False
    proc = psutil.Process(state["pid"])
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except psutil.TimeoutExpired:
        _kill_group(state["pid"])
    state_file().unlink(missing_ok=True)
    return not pid_alive(state["pid"])


if __name__ == "__main__":  # ``python -m emulator.server PORT CAPACITY``: what ``detach`` starts
    try:
        serve(int(sys.argv[1]), int(sys.argv[2]), announce=lambda message: print(message, flush=True))
    except EmulatorError as exc:
        print(f"emulator: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
