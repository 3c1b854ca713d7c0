"""The promises of "When a run fails", kept the way users break things: interrupts, several terminals on one
emulator, a busy port, a silent emulator, leaks. Commands run as subprocesses, as a user runs them.

Each test names the item of the README it checks. A shared ``cosmicai emulator up`` serves the tests that
need one; every test ends with nothing of its own left in the process table or the temp folder. (The same
promises on every target, through the ``target`` fixture, are in test_faults.py.)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
import psutil
import pytest

from emulator.embedded import free_port
from inference.data import generate, split

SLOW_MODEL = '''
import time, torch

def load(folder):
    return None

def predict(model, batch):
    time.sleep(0.6)
    return batch["magnitudes"].sum(dim=1)
'''

CHILD_MODEL = '''
import subprocess, sys, torch

def load(folder):
    # a model that starts a helper process and never stops it
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)  # cosmicai-orphan-probe"])
    return None

def predict(model, batch):
    print("x" * 400_000, flush=True)  # 400 kB per batch: the rank's output exceeds the 1 MiB log cap
    return batch["magnitudes"].sum(dim=1) * float("nan")
'''

BURST_MODEL = '''
import torch

def load(folder):
    return None

def predict(model, batch):
    burst = torch.ones(140 * 2**20 // 4 * 4)  # 560 MB for a moment, freed at once
    del burst
    return batch["magnitudes"].sum(dim=1)
'''


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_", "COSMICAI_"))}
    env["COSMICAI_HOME"] = str(home)
    return env


def _cli(*args: str, env: dict[str, str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cosmicai.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _popen(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cosmicai.cli", *args], env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _model(folder: Path, source: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.py").write_text(source)
    return folder


def _parts(folder: Path, samples: int, partitions: int, seed: int = 1) -> Path:
    split(generate(samples, seed=seed), folder, partitions=partitions)
    return folder


def _wait_for(predicate, timeout_s: float = 120.0, what: str = "condition") -> None:
    deadline = time.time() + timeout_s
    while not predicate():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _run_json(folder: Path) -> dict:
    try:
        return json.loads((folder / "run.json").read_text())
    except (OSError, ValueError):
        return {}


def _orphans(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if marker in " ".join(proc.info["cmdline"] or []) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _my_temp_folders(pid: int) -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"cosmicai-lambda-{pid}-*"))


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One `cosmicai emulator up --detach` for the module: (endpoint, env, boto3 kwargs)."""
    home = tmp_path_factory.mktemp("shared-home")
    env = _env(home)
    port = free_port()
    up = _cli("emulator", "up", "--detach", "--port", str(port), "--max-concurrency", "2", env=env, cwd=home)
    assert up.returncode == 0, up.stderr
    state = json.loads((home / "emulator.json").read_text())
    endpoint = f"http://127.0.0.1:{port}"
    kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    yield {"endpoint": endpoint, "env": env, "kw": kw, "home": home, "pid": state["pid"]}
    down = _cli("emulator", "down", env=env, cwd=home)
    assert down.returncode == 0 and "stopped" in down.stdout
    _wait_for(lambda: not _my_temp_folders(state["pid"]), 20, "the emulator's temp folder to go")
    log = (home / "emulator.log").read_text()
    assert "Traceback" not in log and len(log) < 200_000, log[-3000:]


# -- 1. a running emulator is found, after deploys too; a second `up` says so at once ----------------------


def test_a_running_emulator_is_found_after_its_first_deploy(shared, tmp_path):
    env, cwd = shared["env"], tmp_path
    deployed = _cli("deploy", "--target", "embedded", "--model", "tiny", env=env, cwd=cwd)
    assert deployed.returncode == 0, deployed.stderr
    _parts(cwd / "parts", 32, 2)
    run = _cli("run", "--model", "tiny", "--data", "parts", "--batch-size", "8", "--run-id", "found-it", "--json", env=env, cwd=cwd)
    assert run.returncode == 0, run.stderr
    s3 = boto3.client("s3", **shared["kw"])
    assert s3.head_object(Bucket="cosmicai-data", Key="results/found-it/summary.json")  # on the running emulator, not in-process
    logs = _cli("logs", "--function", "summarize", "--run", "found-it", env=env, cwd=cwd)
    assert logs.returncode == 0 and "SUMMARY run=found-it" in logs.stdout
    started = time.time()
    again = _cli("emulator", "up", "--detach", "--port", str(free_port()), env=env, cwd=cwd)
    assert again.returncode == 2 and "already up" in again.stderr and time.time() - started < 15


# -- 2. a busy port, and signals ------------------------------------------------------------------------


def test_emulator_up_on_a_busy_port_is_refused_at_once_and_leaves_nothing(tmp_path):
    env = _env(tmp_path / "home")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for detach in ([], ["--detach"]):
            started = time.time()
            done = _cli("emulator", "up", "--port", str(port), *detach, env=env, cwd=tmp_path, timeout=60)
            assert done.returncode == 2 and f"port {port}" in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
            assert time.time() - started < 20
    assert not (tmp_path / "home" / "emulator.json").exists()
    assert not _orphans(f"emulator.server {port}")


def test_a_foreground_emulator_stops_on_sigterm(tmp_path):
    env, port = _env(tmp_path / "home"), free_port()
    process = _popen("emulator", "up", "--port", str(port), env=env, cwd=tmp_path)
    _wait_for(lambda: (tmp_path / "home" / "emulator.json").exists(), 60, "the emulator to start")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 0
    assert not (tmp_path / "home" / "emulator.json").exists()
    assert not _my_temp_folders(process.pid)


# -- 3, 9. runs that share an emulator: prefixes, folders, functions and logs stay their own -------------


def test_two_runs_at_once_keep_their_own_functions_logs_and_folders(shared, tmp_path):
    env, cwd = shared["env"], tmp_path
    _parts(cwd / "a", 48, 3, seed=2)
    _parts(cwd / "b", 48, 3, seed=3)
    runs = {
        name: _popen("run", "--model", "tiny", "--data", name, "--batch-size", "8", "--memory", memory, "--run-id", f"race-{name}",
                     "--out", f"out-{name}", "--json", env=env, cwd=cwd)
        for name, memory in (("a", "1024"), ("b", "1536"))
    }
    results = {name: process.communicate(timeout=300) for name, process in runs.items()}
    for name, memory in (("a", 1024), ("b", 1536)):
        assert runs[name].returncode == 0, results[name][1]
        summary = json.loads(results[name][0])
        assert summary["run_id"] == f"race-{name}" and summary["ranks_succeeded"] == 3
        records = json.loads((cwd / f"out-{name}" / "combined_data.json").read_text())
        assert {r["lambda_memory_mb"] for r in records} == {memory}  # the other run's deploy did not change this run's functions
        for log in (cwd / f"out-{name}" / "logs").glob("*.log"):
            text = log.read_text()
            assert f"race-{'b' if name == 'a' else 'a'}" not in text, log
        assert f"cosmicai run=race-{name}" in (cwd / f"out-{name}" / "logs" / "cosmicai-infer.log").read_text()
    reused = _cli("run", "--model", "tiny", "--data", "a", "--run-id", "race-a", "--out", "out-again", env=env, cwd=cwd)
    assert reused.returncode == 2 and "race-a" in reused.stderr and "already exists" in reused.stderr, reused.stderr
    joined = _cli("run", "--model", "tiny", "--data", "a", "--out", "out-a", env=env, cwd=cwd)
    assert joined.returncode == 2 and "already holds run 'race-a'" in joined.stderr
    assert not (cwd / "out-again").exists()


# -- 4, 12. an interrupted run is recorded, its execution stopped, and --resume finishes it ----------------


def test_ctrl_c_stops_the_execution_and_resume_finishes_the_run(shared, tmp_path):
    env, cwd = shared["env"], tmp_path
    _model(cwd / "slow", SLOW_MODEL)
    _parts(cwd / "parts", 8 * 16, 8)
    run = _popen("run", "--model-folder", "slow", "--data", "parts", "--batch-size", "8", "--run-id", "stopped", "--json", env=env, cwd=cwd)
    folder = cwd / "cosmicai-out" / "stopped"
    s3 = boto3.client("s3", **shared["kw"])

    def some_rank_done() -> bool:
        if _run_json(folder).get("status") != "running":
            return False
        return s3.list_objects_v2(Bucket="cosmicai-data", Prefix="results/stopped/ranks/").get("KeyCount", 0) >= 1

    _wait_for(some_rank_done, 180, "the run to be under way")
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 130, err
    saved = _run_json(folder)
    assert saved["status"] == "interrupted"
    sfn = boto3.client("stepfunctions", **shared["kw"])
    arn = saved["executions"][0]["arn"]
    _wait_for(lambda: sfn.describe_execution(executionArn=arn)["status"] == "ABORTED", 60, "the execution to stop")  # in-flight invokes finish first
    kept = {p.stem for p in (folder / "ranks").glob("*.json")}
    assert kept, "what completed before the interrupt is in the folder"
    first_log = (folder / "logs" / "cosmicai-infer.log").read_text()
    assert all(f"cosmicai run=stopped rank={rank}\n" in first_log for rank in kept), first_log[-2000:]

    resumed = _cli("run", "--resume", "stopped", "--json", env=env, cwd=cwd)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["status"] == "SUCCEEDED" and summary["ranks_succeeded"] == 8 and summary["samples_total"] == 128
    saved = _run_json(folder)
    assert saved["status"] == "finished" and [e["status"] for e in saved["executions"]] == ["ABORTED", "SUCCEEDED"]
    assert summary["wall_time_s"] >= sum(e["wall_time_s"] for e in saved["executions"]) - 1.0  # every execution's wall time
    infer_log = (folder / "logs" / "cosmicai-infer.log").read_text()
    assert infer_log.startswith(first_log)  # the first execution's lines were kept, the resume's appended
    assert all(f"cosmicai run=stopped rank={rank}\n" in infer_log for rank in range(1, 9))

    nothing = _cli("run", "--resume", "stopped", env=env, cwd=cwd)
    assert nothing.returncode == 0 and "nothing to re-run" in nothing.stderr
    assert len(_run_json(folder)["executions"]) == 2


def test_sigterm_of_an_in_process_run_leaves_a_resumable_folder_and_no_leftovers(tmp_path):
    env, cwd = _env(tmp_path / "home"), tmp_path
    _model(cwd / "slow", SLOW_MODEL)
    _parts(cwd / "parts", 6 * 16, 6)
    run = _popen("run", "--model-folder", "slow", "--data", "parts", "--batch-size", "8", "--run-id", "termed", env=env, cwd=cwd)
    folder = cwd / "cosmicai-out" / "termed"
    _wait_for(lambda: _run_json(folder).get("status") == "running", 180, "the execution to start")
    time.sleep(2.0)
    children = psutil.Process(run.pid).children(recursive=True)
    run.send_signal(signal.SIGTERM)
    run.communicate(timeout=120)
    assert run.returncode == 130
    assert _run_json(folder)["status"] == "interrupted"
    time.sleep(1.0)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert not _my_temp_folders(run.pid)
    resumed = _cli("run", "--resume", "termed", "--json", env=env, cwd=cwd)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["ranks_succeeded"] == 6


# -- 5, 7. bad targets: a missing bucket, a racing first deploy, a silent or dead emulator ---------------


def test_a_payload_bucket_that_does_not_exist_is_one_line(shared, tmp_path):
    (tmp_path / "p.json").write_text(json.dumps({"bucket": "no-such-bucket-here", "data_prefix": "data/x", "model_key": "tiny"}))
    done = _cli("run", "--payload", "p.json", env=shared["env"], cwd=tmp_path)
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1 and "no-such-bucket-here" in done.stderr, done.stderr


def test_two_first_deploys_at_once_both_succeed(shared, tmp_path):
    env = shared["env"]
    deploys = [_popen("deploy", "--target", "embedded", "--stack", "racing", "--bucket", "racing-bucket", "--model", "tiny", env=env, cwd=tmp_path)
               for _ in range(2)]
    for process in deploys:
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err


def test_a_silent_or_dead_endpoint_is_one_line_within_seconds(tmp_path):
    env = _env(tmp_path / "home")
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        started = time.time()
        done = _cli("run", "--endpoint", f"http://127.0.0.1:{port}", "--model", "tiny", "--samples", "8", env=env, cwd=tmp_path, timeout=120)
        assert done.returncode == 2 and f"127.0.0.1:{port}" in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
        assert time.time() - started < 40
    dead = _cli("run", "--endpoint", f"http://127.0.0.1:{free_port()}", "--model", "tiny", "--samples", "8", env=env, cwd=tmp_path)
    assert dead.returncode == 2 and len(dead.stderr.splitlines()) == 1, dead.stderr
    assert not (tmp_path / "cosmicai-out").exists()


# -- 6, 8, 10. leaks, capped logs, NaN outputs, peak memory -----------------------------------------------


def test_model_processes_die_with_their_worker_and_outputs_are_capped_and_nan_is_flagged(tmp_path):
    env, cwd = _env(tmp_path / "home"), tmp_path
    _model(cwd / "noisy", CHILD_MODEL)
    _parts(cwd / "parts", 2 * 24, 2)
    done = _cli("run", "--model-folder", "noisy", "--data", "parts", "--batch-size", "8", "--run-id", "noisy", "--json", env=env, cwd=cwd)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["nonfinite_predictions"] == 48 and summary["ranks_with_nonfinite_predictions"] == [1, 2]
    log = cwd / "cosmicai-out" / "noisy" / "logs" / "cosmicai-infer.log"
    assert log.stat().st_size < 2.5 * 2**20 and "output truncated" in log.read_text()
    time.sleep(1.0)
    assert not _orphans("cosmicai-orphan-probe")


def test_a_killed_run_leaves_a_temp_folder_that_the_next_run_sweeps(tmp_path):
    env, cwd = _env(tmp_path / "home"), tmp_path
    _model(cwd / "slow", SLOW_MODEL)
    _parts(cwd / "parts", 4 * 16, 4)
    run = _popen("run", "--model-folder", "slow", "--data", "parts", "--batch-size", "8", "--run-id", "killed", env=env, cwd=cwd)
    _wait_for(lambda: _run_json(cwd / "cosmicai-out" / "killed").get("status") == "running", 180, "the execution to start")
    run.kill()
    run.wait(timeout=30)
    _wait_for(lambda: not _orphans("emulator.worker") or all(p.ppid() != run.pid for p in _orphans("emulator.worker")), 10, "workers to notice")
    assert _my_temp_folders(run.pid), "SIGKILL leaves the folder (nothing can clean up after it)"
    again = _cli("run", "--model", "tiny", "--samples", "16", "--world-size", "2", "--batch-size", "8", env=env, cwd=cwd)
    assert again.returncode == 0, again.stderr
    assert not _my_temp_folders(run.pid)


@pytest.mark.parametrize("memory, fails", [("400", True), ("2048", False)])
def test_the_memory_limit_catches_a_burst_between_polls(tmp_path, memory, fails):
    env, cwd = _env(tmp_path / "home"), tmp_path
    _model(cwd / "burst", BURST_MODEL)
    _parts(cwd / "parts", 2 * 8, 2)
    done = _cli("run", "--model-folder", "burst", "--data", "parts", "--batch-size", "8", "--memory", memory, "--json", env=env, cwd=cwd)
    summary = json.loads(done.stdout)
    if fails:
        assert done.returncode == 1 and [f["error"]["type"] for f in summary["ranks_failed"]] == ["Runtime.OutOfMemory"] * 2
        log = next((cwd / "cosmicai-out").glob("*/logs/cosmicai-infer.log")).read_text()
        used = [int(line.split("Max Memory Used: ")[1].split(" MB")[0]) for line in log.splitlines() if line.startswith("REPORT")]
        # the REPORT line carries the peak, failed invocations included: at least the limit (a poll that lands while
        # the burst is still growing kills it there, as Lambda does, and the peak is then the limit's MB, not above)
        assert used and min(used) >= 400
    else:
        assert done.returncode == 0, done.stderr


# -- soak: three terminals, an interrupt and a resume, on one emulator -------------------------------------


def test_soak_three_terminals_an_interrupt_and_a_resume(shared, tmp_path):
    env, cwd = shared["env"], tmp_path
    _model(cwd / "slow", SLOW_MODEL)
    for name in ("one", "two", "three"):
        _parts(cwd / name, 4 * 8, 4, seed=len(name))
    runs = {name: _popen("run", "--model-folder", "slow", "--data", name, "--batch-size", "8", "--run-id", f"soak-{name}", "--json", env=env, cwd=cwd)
            for name in ("one", "two", "three")}
    _wait_for(lambda: _run_json(cwd / "cosmicai-out" / "soak-two").get("status") == "running", 180, "soak-two to start")
    runs["two"].send_signal(signal.SIGINT)
    outputs = {name: process.communicate(timeout=600) for name, process in runs.items()}
    assert runs["two"].returncode == 130
    for name in ("one", "three"):
        assert runs[name].returncode == 0, outputs[name][1]
        summary = json.loads(outputs[name][0])
        assert summary["run_id"] == f"soak-{name}" and summary["samples_total"] == 32
    resumed = _cli("run", "--resume", "soak-two", "--json", env=env, cwd=cwd, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout)
    assert summary["run_id"] == "soak-two" and summary["ranks_succeeded"] == 4 and summary["samples_total"] == 32
    for name, process in runs.items():
        assert not _my_temp_folders(process.pid)
