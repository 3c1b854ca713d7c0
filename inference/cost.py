"""AWS price model for one pipeline run (us-east-1 list prices, as published in 2025).

=========================  ==========================  ==================================
item                       price (USD)                 counted as
=========================  ==========================  ==================================
Lambda compute, x86_64     0.0000166667 per GB-second  billed duration (rounded up to 1 ms)
Lambda compute, arm64      0.0000133334 per GB-second  x configured memory (GB = 1024 MB)
Lambda requests            0.20 per 1,000,000          one per invocation (4 functions)
Step Functions Standard    0.025 per 1,000 transitions 3 top-level states + per rank its
                                                       Distributed Map child execution's
                                                       states (Infer, and RecordFailure when
                                                       it failed)
S3 PUT/LIST                0.005 per 1,000             manifest, records, predictions, summary
S3 GET/HEAD                0.0004 per 1,000            partitions, model, records read back
a machine like this one    0.0504 per vCPU-hour        wall time x the machine's cores: EC2
                                                       m7i.large on demand ($0.1008/h for 2
                                                       vCPUs, Linux), the price of running
                                                       the same work on a rented machine
=========================  ==========================  ==================================

Free tiers are ignored: the figure is what the run costs on a paid account.
Check against the reference's published figure: 130 ranks x 25 s at 7,168 MB
is 22,750 GB-s, about $0.38 of Lambda duration on x86_64.
A rank without a recorded duration (it failed before measuring) is charged
for its function's timeout as the upper bound it is.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Prices:
    lambda_gb_second: float = 0.0000166667  # USD per GB-second, x86_64
    lambda_gb_second_arm64: float = 0.0000133334  # USD per GB-second, arm64 (Graviton)
    lambda_request: float = 0.20 / 1_000_000  # USD per invocation
    sfn_transition: float = 0.025 / 1_000  # USD per Standard state transition
    s3_put: float = 0.005 / 1_000  # USD per PUT, COPY, POST or LIST request
    s3_get: float = 0.0004 / 1_000  # USD per GET or HEAD request
    machine_vcpu_hour: float = 0.1008 / 2  # USD per vCPU-hour: EC2 m7i.large on demand, Linux (2 vCPUs)


PRICES = Prices()
AUX_FUNCTION_MEMORY_MB = 256  # Initialize, RecordFailure and Summarize are small zip functions
AUX_FUNCTION_SECONDS = 1.0  # their billed duration per invocation, an upper estimate


ARCHITECTURES = ("x86_64", "arm64")
LAMBDA_COLD_START_S = 10.0  # container image start + torch import + model load on a cold Lambda, an upper estimate
LAMBDA_MB_PER_VCPU = 1769  # Lambda gives one vCPU per 1,769 MB of MemorySize (6 at 10,240 MB)


def lambda_vcpus(memory_mb: int) -> int:
    """The vCPUs a Lambda function of ``memory_mb`` gets (at least 1, at most 6)."""
    return max(1, min(6, math.ceil(memory_mb / LAMBDA_MB_PER_VCPU)))


def machine_cost(seconds: float, cores: int, prices: Prices = PRICES) -> float:
    """What ``seconds`` of a rented machine with ``cores`` vCPUs cost (on-demand EC2 rate per vCPU-hour)."""
    return max(seconds, 0.0) / 3600 * cores * prices.machine_vcpu_hour


def lambda_compute(seconds: float, memory_mb: int, prices: Prices = PRICES, arch: str = "x86_64") -> float:
    """Duration cost of one invocation: billed seconds (1 ms steps) x GB x the architecture's price."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {', '.join(ARCHITECTURES)}, got {arch!r}")
    billed_s = math.ceil(max(seconds, 0.0) * 1000) / 1000
    rate = prices.lambda_gb_second_arm64 if arch == "arm64" else prices.lambda_gb_second
    return billed_s * (memory_mb / 1024) * rate


def run_cost(
    records: Iterable[dict[str, Any]],
    *,
    memory_mb: int,
    timeout_s: float,
    world_size: int,
    partitions_per_rank: float = 1.0,
    prices: Prices = PRICES,
    arch: str = "x86_64",
) -> dict[str, float]:
    """Cost of a finished run from its rank records: lambda, stepfunctions, s3 and total."""
    records = list(records)
    failed = sum(1 for r in records if r.get("status") != "succeeded")
    missing = max(world_size - len(records), 0)
    compute = 0.0
    for record in records:
        seconds = record.get("lambda_duration_s")
        compute += lambda_compute(seconds if seconds is not None else timeout_s, record.get("lambda_memory_mb") or memory_mb, prices, arch)
    compute += missing * lambda_compute(timeout_s, memory_mb, prices, arch)
    invocations = world_size + failed + missing + 2  # Infer per rank, RecordFailure per failure, Initialize, Summarize
    compute += (2 + failed + missing) * lambda_compute(AUX_FUNCTION_SECONDS, AUX_FUNCTION_MEMORY_MB, prices, arch)
    lam = compute + invocations * prices.lambda_request
    transitions = 3 + world_size + failed + missing
    sfn = transitions * prices.sfn_transition
    puts = 1 + 2 * world_size + 2 + math.ceil(world_size / 1000) * 2
    gets = world_size * (partitions_per_rank + 2) + world_size + 1
    s3 = puts * prices.s3_put + gets * prices.s3_get
    return {"lambda": lam, "stepfunctions": sfn, "s3": s3, "total": lam + sfn + s3}


def estimate_cost(*, world_size: int, seconds_per_rank: float, memory_mb: int, prices: Prices = PRICES, arch: str = "x86_64") -> dict[str, float]:
    """Cost of a planned run, before it starts (every rank succeeds in seconds_per_rank)."""
    planned = [{"status": "succeeded", "lambda_duration_s": seconds_per_rank, "lambda_memory_mb": memory_mb}] * world_size
    return run_cost(planned, memory_mb=memory_mb, timeout_s=seconds_per_rank, world_size=world_size, prices=prices, arch=arch)
