"""Scale: many ranks of tiny partitions through the embedded pipeline (default 1,200).

Prints the execution's wall time, the per-rank orchestration overhead, the
emulator process's peak RSS (this process hosts moto; workers are separate)
and the command's breakdown (start, prepare, deploy, upload, execution, fetch,
shutdown). Per-rank overhead = (execution wall time x MaxConcurrency - sum of
the ranks' handler durations) / ranks: the time a rank costs beyond its own work.
Target (issue 16): <= 15 ms per rank at 1,200 ranks, RSS under 1 GB.

``--noop``: the orchestration floor, comparable with a framework's trivial
tasks: a Distributed Map of no-op Lambda invocations, wall time per task.

Usage: python benchmarks/scale.py [--ranks 1200] [--samples-per-rank 4] [--max-concurrency 2] [--noop]
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import tempfile
import time
import zipfile
from pathlib import Path

from cosmicai.deploy import Stack
from cosmicai.runs import Progress, RunRequest, execute_run, open_target
from cosmicai.targets import resolve


def ranks_through_the_pipeline(args: argparse.Namespace) -> None:
    from inference.data import generate, split

    stack = Stack(name="cosmicai-scale", bucket="cosmicai-scale", infer_memory_mb=2048, max_concurrency=args.max_concurrency)
    last = [0.0]

    def ranks(done: int, total: int) -> None:
        if time.time() - last[0] > 10:
            last[0] = time.time()
            print(f"  {done}/{total} ranks done", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        parts = Path(tmp) / "parts"
        split(generate(args.ranks * args.samples_per_rank, seed=7), parts, partitions=args.ranks)
        started = time.perf_counter()
        with open_target(resolve("embedded"), capacity=args.max_concurrency) as (target, engine):
            opened = time.perf_counter()
            outcome = execute_run(target, stack, RunRequest(data=parts, model="tiny", batch_size=64), Path(tmp) / "out",
                                  Progress(stage=print, ranks=ranks), engine=engine)
            records = json.loads((outcome.out_dir / "combined_data.json").read_text())
            stages = json.loads((outcome.out_dir / "run.json").read_text()).get("stages_s", {})
            finished = time.perf_counter()
        total = time.perf_counter() - started
    summary = outcome.summary
    wall = summary["wall_time_s"]
    busy = sum(r.get("lambda_duration_s") or 0.0 for r in records)
    overhead_ms = (wall * args.max_concurrency - busy) / args.ranks * 1000
    breakdown = {"start": opened - started, **stages, "shutdown": total - (finished - started)}
    print(f"status {summary['status']}: {summary['ranks_succeeded']}/{summary['world_size']} ranks summarized, {len(records)} records, {summary['samples_total']} samples")
    print(f"execution wall time     : {wall:.1f} s (whole command {total:.1f} s)")
    print("breakdown               : " + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in breakdown.items()))
    print(f"per-rank overhead       : {overhead_ms:.1f} ms (target <= 15 ms; wall/rank {wall / args.ranks * 1000:.1f} ms, handler mean {busy / max(len(records), 1) * 1000:.1f} ms)")
    print(f"emulator peak RSS       : {_peak_mib():.0f} MiB (target < 1024; this process: moto + orchestration)")


def noop_tasks(args: argparse.Namespace) -> None:
    import boto3

    from emulator.embedded import EmbeddedEmulator

    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("noop.py", "def handler(event, context):\n    return event\n")
    with EmbeddedEmulator(capacity=args.max_concurrency) as emulator:
        settings = {"endpoint_url": emulator.endpoint_url, "region_name": "us-east-1", "aws_access_key_id": "test", "aws_secret_access_key": "test"}
        lam, sfn, iam = (boto3.client(name, **settings) for name in ("lambda", "stepfunctions", "iam"))
        role = iam.create_role(RoleName="noop", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        function = lam.create_function(FunctionName="noop", Runtime="python3.12", Role=role, Handler="noop.handler", Code={"ZipFile": code.getvalue()})
        lam.invoke(FunctionName="noop", Payload=b"0")  # the environment's cold start, outside the timing
        item = {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}, "StartAt": "Noop",
                "States": {"Noop": {"Type": "Task", "Resource": function["FunctionArn"], "End": True}}}
        definition = {"StartAt": "Map", "States": {"Map": {"Type": "Map", "ItemProcessor": item, "MaxConcurrency": args.max_concurrency, "End": True}}}
        machine = sfn.create_state_machine(name="noop", definition=json.dumps(definition), roleArn=role)["stateMachineArn"]
        started = time.perf_counter()
        arn = sfn.start_execution(stateMachineArn=machine, input=json.dumps(list(range(args.ranks))))["executionArn"]
        while (status := sfn.describe_execution(executionArn=arn)["status"]) == "RUNNING":
            time.sleep(0.05)
        wall = time.perf_counter() - started
    print(f"status {status}: {args.ranks} no-op tasks, MaxConcurrency {args.max_concurrency}")
    print(f"wall per task           : {wall / args.ranks * 1000:.1f} ms (execution {wall:.1f} s)")
    print(f"emulator peak RSS       : {_peak_mib():.0f} MiB")


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=1200)
    parser.add_argument("--samples-per-rank", type=int, default=4)
    parser.add_argument("--max-concurrency", type=int, default=2)
    parser.add_argument("--noop", action="store_true", help="no-op tasks: the orchestration floor")
    args = parser.parse_args()
    (noop_tasks if args.noop else ranks_through_the_pipeline)(args)


if __name__ == "__main__":
    main()
