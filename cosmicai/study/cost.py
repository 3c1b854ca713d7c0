"""`cosmicai cost`: project what a run costs on real AWS, printing every assumption and the spread of what was measured.

Time per rank comes from ``--seconds-per-rank``, else from the time per
sample measured here: ``--repeats`` timings (default 3) of ``--batches``
batches of ``--batch-size`` samples each (default 4 x 256 = 1,024 samples)
of the chosen model, after one unrecorded warm-up batch, with as many torch
threads as the Lambda function gets vCPUs at ``--memory`` (at most this
machine's cores). The median per-sample time gives the projection; the
fastest and slowest timings give its range. A rank's time is its partition's
samples x that time + a cold start (``inference.cost.LAMBDA_COLD_START_S``).
The prices and what is counted are in ``inference/cost.py``.

``--json`` prints numbers as numbers: ``assumptions.seconds_per_rank`` (with
``seconds_per_rank_min`` / ``_max`` when measured) and, in separate fields,
where it came from (``seconds_per_rank_source``: ``given`` or ``measured``)
and how it was measured (``timing``).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from typing import Any

from cosmicai.argtypes import positive_int
from cosmicai.study.results import money
from inference.cost import (
    ARCHITECTURES,
    LAMBDA_COLD_START_S,
    estimate_cost,
    lambda_compute,
    lambda_vcpus,
)
from inference.naming import DEFAULT_MODEL, SAMPLE_BYTES, parse_size


def add_arguments(parser: argparse.ArgumentParser) -> None:
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--data-size", help="the whole data set, e.g. 12.6GB (with --partition-size)")
    size.add_argument("--ranks", type=int, help="number of ranks (Lambda invocations of Infer)")
    parser.add_argument("--partition-size", default="25MB", help="one rank's partition (default 25MB)")
    parser.add_argument("--seconds-per-rank", type=float, help="billed seconds of one Infer invocation (default: measured)")
    parser.add_argument("--memory", type=int, required=True, help="Infer MemorySize in MB (128..10240)")
    parser.add_argument("--arch", choices=ARCHITECTURES, default="x86_64", help="the Lambda architecture priced")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"model timed for the per-sample estimate ({DEFAULT_MODEL}, tiny)")
    parser.add_argument("--batch-size", type=positive_int, default=256, help="samples per timed batch (default 256)")
    parser.add_argument("--batches", type=positive_int, default=4, help="batches per timing (default 4)")
    parser.add_argument("--repeats", type=positive_int, default=3, help="timings; the median is used, min and max give the range (default 3)")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch threads while timing (default: the Lambda's vCPUs at --memory, at most this machine's cores)")
    parser.add_argument("--json", action="store_true", help="print only a JSON object")


def measure_seconds_per_sample(model_name: str, *, batch_size: int = 256, batches: int = 4, repeats: int = 3, threads: int | None = None) -> list[float]:
    """Wall seconds per sample on this machine, one figure per timing of ``batches`` warm batches of ``batch_size``."""
    import torch

    from inference.checkpoint import load_model
    from inference.data import generate
    from inference.measure import predict

    if threads is not None:
        torch.set_num_threads(threads)
    model = load_model(model_name)
    samples = batch_size * batches
    data = generate(samples, seed=0)
    predict(model, data["images"][:batch_size], data["magnitudes"][:batch_size], batch_size)  # warm-up, unrecorded
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        predict(model, data["images"], data["magnitudes"], batch_size)
        timings.append((time.perf_counter() - started) / samples)
    return timings


def _check(args: argparse.Namespace) -> int:
    """The number of ranks; ValueError naming the bad option."""
    if not 128 <= args.memory <= 10_240:
        raise ValueError(f"--memory {args.memory}: Lambda allows 128..10240 MB")
    if args.seconds_per_rank is not None and args.seconds_per_rank <= 0:
        raise ValueError(f"--seconds-per-rank must be > 0, got {args.seconds_per_rank}")
    if args.ranks is not None:
        if args.ranks < 1:
            raise ValueError(f"--ranks must be >= 1, got {args.ranks}")
        return args.ranks
    return max(1, math.ceil(parse_size(args.data_size) / parse_size(args.partition_size)))


def _totals(ranks: int, seconds: float, args: argparse.Namespace) -> dict[str, float]:
    cost = estimate_cost(world_size=ranks, seconds_per_rank=seconds, memory_mb=args.memory, arch=args.arch)
    return {
        "lambda_duration_usd": ranks * lambda_compute(seconds, args.memory, arch=args.arch),
        "lambda_usd": cost["lambda"],
        "stepfunctions_usd": cost["stepfunctions"],
        "s3_usd": cost["s3"],
        "total_usd": cost["total"],
    }


def project(args: argparse.Namespace) -> dict[str, Any]:
    """The projection as JSON-ready data: inputs, assumptions (numbers, with their source apart), USD totals and their range."""
    ranks = _check(args)
    samples_per_rank = max(1, parse_size(args.partition_size) // SAMPLE_BYTES)
    assumptions: dict[str, Any] = {"samples_per_rank": samples_per_rank, "sample_bytes": SAMPLE_BYTES, "arch": args.arch}
    if args.seconds_per_rank is not None:
        seconds = args.seconds_per_rank
        assumptions.update(seconds_per_rank=seconds, seconds_per_rank_source="given")
        spread = None
    else:
        threads = args.threads or max(1, min(os.cpu_count() or 1, lambda_vcpus(args.memory)))
        timings = measure_seconds_per_sample(args.model, batch_size=args.batch_size, batches=args.batches, repeats=args.repeats, threads=threads)
        per_sample = statistics.median(timings)
        seconds = samples_per_rank * per_sample + LAMBDA_COLD_START_S
        spread = [samples_per_rank * t + LAMBDA_COLD_START_S for t in (min(timings), max(timings))]
        assumptions.update(
            seconds_per_rank=seconds, seconds_per_rank_min=spread[0], seconds_per_rank_max=spread[1], seconds_per_rank_source="measured",
            seconds_per_sample=per_sample, seconds_per_sample_min=min(timings), seconds_per_sample_max=max(timings),
            cold_start_s=LAMBDA_COLD_START_S,
            timing={"model": args.model, "batch_size": args.batch_size, "batches": args.batches, "repeats": args.repeats,
                    "samples_per_timing": args.batch_size * args.batches, "threads": threads, "lambda_vcpus": lambda_vcpus(args.memory),
                    "seconds_per_sample_each": timings},
        )
    result = {
        "inputs": {"ranks": ranks, "data_size": args.data_size, "partition_size": args.partition_size, "memory_mb": args.memory, "arch": args.arch},
        "assumptions": assumptions,
        **_totals(ranks, seconds, args),
    }
    if spread:
        result["total_usd_min"], result["total_usd_max"] = (_totals(ranks, s, args)["total_usd"] for s in spread)
    return result


def _range(low: str, high: str) -> str:
    return "" if low == high else f" (range {low} to {high})"


def main(args: argparse.Namespace) -> int:
    from cosmicai.console import out, print_json

    result = project(args)
    if args.json:
        print_json(result)
        return 0
    inputs, a = result["inputs"], result["assumptions"]
    out.print(f"[bold]{inputs['ranks']:,} ranks[/] x {inputs['memory_mb']:,} MB ({inputs['arch']}), partition {inputs['partition_size']} "
              f"= {a['samples_per_rank']:,} samples of 20,520 B per rank")
    if a["seconds_per_rank_source"] == "given":
        out.print(f"  seconds per rank: {a['seconds_per_rank']:.3g} s (given)")
    else:
        t = a["timing"]
        ms = [f"{1000 * a[k]:.3g}" for k in ("seconds_per_sample", "seconds_per_sample_min", "seconds_per_sample_max")]
        out.print(f"  time per sample: {ms[0]} ms{_range(*ms[1:])}, model {t['model']}, measured on this machine: {t['repeats']} timings of "
                  f"{t['batches']} batches x {t['batch_size']} samples, {t['threads']} torch threads (a {inputs['memory_mb']:,} MB Lambda has "
                  f"{t['lambda_vcpus']} vCPUs)")
        seconds = [f"{a[k]:.3g}" for k in ("seconds_per_rank", "seconds_per_rank_min", "seconds_per_rank_max")]
        out.print(f"  seconds per rank: {seconds[0]} s{_range(*seconds[1:])} = samples x time per sample + {a['cold_start_s']:.0f} s cold start; "
                  "a Lambda's speed depends on its memory (vCPUs scale with it)")
    out.print(f"  Lambda {money(result['lambda_usd'])} (duration {money(result['lambda_duration_usd'])}), "
              f"Step Functions {money(result['stepfunctions_usd'])}, S3 {money(result['s3_usd'])}")
    low_high = _range(money(result["total_usd_min"]), money(result["total_usd_max"])) if "total_usd_min" in result else ""
    out.print(f"[bold]total {money(result['total_usd'])}[/]{low_high} per run at us-east-1 list prices (inference/cost.py)")
    return 0
