"""Wall time of the whole pipeline (`cosmicai run`, embedded target) against `cosmicai local`
over the same data, in one session, and their ratio.

Both are timed as the user runs them: a fresh process each, start to exit.
The run's breakdown comes from its run folder (``run.json`` ``stages_s``): the
emulator's start, the deploy, the uploads, the execution, the fetch, the
shutdown; what is left is the interpreter and the CLI's imports. Its CPU
(``run.json`` ``cpu_s``: the CLI's process and the Lambda workers it ended)
over this machine's cores is the least wall time the run can take here.
Then the same run on a running ``cosmicai emulator up`` (deployed by one run
first): the run a user repeats all day. Targets (issue 16): run/local <= 1.5x;
with the emulator up, run <= local.
Usage: python benchmarks/pipeline_overhead.py [--samples 1024] [--partitions 4] [--model tiny|full]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, dict]:
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed, json.loads(done.stdout)


def run_on_a_running_emulator(cli: list[str], work: Path, args: argparse.Namespace) -> tuple[float, dict]:
    """``cosmicai emulator up --detach`` (a private home and a free port), one run to deploy, then the timed run."""
    from emulator.embedded import free_port

    env = {**os.environ, "COSMICAI_HOME": str(work / "home")}
    subprocess.run([*cli, "emulator", "up", "--detach", "--port", str(free_port())], cwd=work, env=env, check=True, capture_output=True)
    try:
        run = [*cli, "run", "--data", "parts", "--model", args.model, "--batch-size", str(args.batch_size), "--json"]
        timed([*run, "--out", "warm-1"], work, env)
        seconds, _ = timed([*run, "--out", "warm-2"], work, env)
    finally:
        subprocess.run([*cli, "emulator", "down"], cwd=work, env=env, capture_output=True)
    return seconds, json.loads((work / "warm-2" / "run.json").read_text()).get("stages_s", {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--batch-size", type=int, default=512)
    args = parser.parse_args()
    cli = [sys.executable, "-m", "cosmicai.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run([*cli, "data", "make", "--samples", str(args.samples), "--out", "all.pt"], cwd=work, check=True, capture_output=True)
        subprocess.run([*cli, "data", "split", "all.pt", "--partitions", str(args.partitions), "--out", "parts"], cwd=work, check=True, capture_output=True)
        local_s, record = timed([*cli, "local", "--data", "all.pt", "--model", args.model, "--batch-size", str(args.batch_size), "--json"], work)
        run_s, summary = timed(
            [*cli, "run", "--data", "parts", "--model", args.model, "--batch-size", str(args.batch_size), "--json", "--out", "out"], work
        )
        saved = json.loads((work / "out" / "run.json").read_text())
        stages, cpu = saved.get("stages_s", {}), saved.get("cpu_s", {})
        warm_s, warm_stages = run_on_a_running_emulator(cli, work, args)
    print(f"data: {args.samples} samples in {args.partitions} partitions, model {args.model}, batch {args.batch_size}")
    print(f"cosmicai local : {local_s:8.2f} s wall (inference loop {record['wall_time_s']:.2f} s, {record['sample_persec']:.1f} samples/s)")
    print(f"cosmicai run   : {run_s:8.2f} s wall (execution {summary['wall_time_s']:.2f} s, {summary['ranks_succeeded']}/{summary['world_size']} ranks)")
    print(f"ratio run/local: {run_s / local_s:8.2f}x (target <= 1.5x)")
    print("run breakdown  : " + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in stages.items())
          + f", interpreter and imports {run_s - sum(stages.values()):.2f} s")
    if cpu:
        total, cores = sum(cpu.values()), os.cpu_count() or 1
        print(f"run CPU        : {total:8.2f} s (the CLI {cpu['this_process']:.2f} s, its Lambda workers {cpu['subprocesses']:.2f} s): "
              f"on {cores} cores at least {total / cores:.2f} s wall, {total / cores / local_s:.2f}x local")
    print(f"run, emulator up: {warm_s:7.2f} s wall ({warm_s / local_s:.2f}x local; target <= 1x): "
          + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in warm_stages.items()))
    print(f"local breakdown: inference loop {record['wall_time_s']:.2f} s, interpreter, imports, data and model {local_s - record['wall_time_s']:.2f} s")


if __name__ == "__main__":
    main()
