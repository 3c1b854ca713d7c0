"""`cosmicai cost`: project what a run costs on real AWS, printing every assumption.

Time per rank comes from ``--seconds-per-rank``, else from the time per sample
measured here on the chosen model (one warm batch of the full model by
default), times the samples of one partition, plus a cold start. The prices
and what is counted are in ``inference/cost.py``.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

from inference.cost import ARCHITECTURES, estimate_cost, lambda_compute
from inference.naming import SAMPLE_BYTES, parse_size

COLD_START_S = 10.0  # container image start + torch import + model load on a cold Lambda, an upper estimate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--data-size", help="the whole data set, e.g. 12.6GB (with --partition-size)")
    size.add_argument("--ranks", type=int, help="number of ranks (Lambda invocations of Infer)")
    parser.add_argument("--partition-size", default="25MB", help="one rank's partition (default 25MB)")
    parser.add_argument("--seconds-per-rank", type=float, help="billed seconds of one Infer invocation (default: measured)")
    parser.add_argument("--memory", type=int, required=True, help="Infer MemorySize in MB (128..10240)")
    parser.add_argument("--arch", choices=ARCHITECTURES, default="x86_64", help="the Lambda architecture priced")
    parser.add_argument("--model", default="astromae", help="model timed for the per-sample estimate (astromae, tiny)")
    parser.add_argument("--json", action="store_true", help="print only a JSON object")


def measured_seconds_per_sample(model_name: str, samples: int = 64) -> float:
    """Wall seconds per sample of one warm batch on this machine (torch's default threads)."""
    import torch

    from inference.data import generate
    from inference.measure import predict
    from inference.checkpoint import load_model

    model = load_model(model_name)
    data = generate(samples, seed=0)
    predict(model, data["images"][:8], data["magnitudes"][:8], 8)  # warm-up
    started = time.perf_counter()
    predict(model, data["images"], data["magnitudes"], samples)
    del torch
    return (time.perf_counter() - started) / samples


def project(args: argparse.Namespace) -> dict[str, Any]:
    if not 128 <= args.memory <= 10_240:
        raise ValueError(f"--memory {args.memory}: Lambda allows 128..10240 MB")
    partition = parse_size(args.partition_size)
    samples_per_rank = max(1, partition // SAMPLE_BYTES)
    if args.ranks is not None:
        if args.ranks < 1:
            raise ValueError(f"--ranks must be >= 1, got {args.ranks}")
        ranks = args.ranks
    else:
        ranks = max(1, math.ceil(parse_size(args.data_size) / partition))
    assumptions: dict[str, Any] = {"samples_per_rank": samples_per_rank, "sample_bytes": SAMPLE_BYTES, "arch": args.arch}
    if args.seconds_per_rank is not None:
        if args.seconds_per_rank <= 0:
            raise ValueError(f"--seconds-per-rank must be > 0, got {args.seconds_per_rank}")
        seconds = args.seconds_per_rank
        assumptions["seconds_per_rank"] = f"{seconds} s, given"
    else:
        per_sample = measured_seconds_per_sample(args.model)
        seconds = samples_per_rank * per_sample + COLD_START_S
        assumptions["seconds_per_sample"] = per_sample
        assumptions["seconds_per_rank"] = (
            f"{seconds:.1f} s = {samples_per_rank} samples x {per_sample * 1000:.1f} ms/sample (model {args.model}, measured on this machine) "
            f"+ {COLD_START_S:.0f} s cold start; a Lambda's speed depends on its memory (vCPUs scale with it)"
        )
    cost = estimate_cost(world_size=ranks, seconds_per_rank=seconds, memory_mb=args.memory, arch=args.arch)
    return {
        "inputs": {"ranks": ranks, "data_size": args.data_size, "partition_size": args.partition_size, "memory_mb": args.memory, "arch": args.arch},
        "assumptions": assumptions,
        "lambda_duration_usd": ranks * lambda_compute(seconds, args.memory, arch=args.arch),
        "lambda_usd": cost["lambda"],
        "stepfunctions_usd": cost["stepfunctions"],
        "s3_usd": cost["s3"],
        "total_usd": cost["total"],
    }


def main(args: argparse.Namespace) -> int:
    from cosmicai.console import out, print_json

    result = project(args)
    if args.json:
        print_json(result)
        return 0
    inputs = result["inputs"]
    out.print(f"[bold]{inputs['ranks']} ranks[/] x {inputs['memory_mb']} MB ({inputs['arch']}), partition {inputs['partition_size']}")
    for key, value in result["assumptions"].items():
        out.print(f"  assumption {key}: {value}")
    out.print(f"  Lambda ${result['lambda_usd']:.4f} (duration ${result['lambda_duration_usd']:.4f}), Step Functions ${result['stepfunctions_usd']:.4f}, S3 ${result['s3_usd']:.4f}")
    out.print(f"[bold]total ${result['total_usd']:.4f}[/] per run at us-east-1 list prices (inference/cost.py)")
    return 0
