"""Local baseline: samples/s of the ``astromae`` model (its plain forward) on synthetic data, no Lambda, no S3.

Gives the number a serverless run is compared against. Usage:

    python benchmarks/local_baseline.py [--samples 2048] [--device cpu|cuda] [--batch-sizes 32 128 512]
"""

from __future__ import annotations

import argparse
import time

import torch

from inference.data import generate
from inference.checkpoint import load_model
from inference.model import count_parameters, flops_per_sample


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def run(samples: int, batch_sizes: list[int], device: str, model_name: str, seed: int) -> list[dict]:
    """Time one pass over ``samples`` per batch size (after one warm-up batch); return rows."""
    model = load_model(model_name, seed=seed, device=device)
    data = generate(samples, seed=seed)
    images, mags = data["images"].to(device), data["magnitudes"].to(device)
    flops = flops_per_sample(model.config)
    print(f"model {model_name}: {count_parameters(model):,} parameters, ~{flops / 1e9:.2f} GFLOP/sample; "
          f"{samples} samples on {device} ({torch.get_num_threads()} CPU threads)")
    rows = []
    with torch.inference_mode():
        for bs in batch_sizes:
            model(images[:bs], mags[:bs])  # warm-up
            _sync(device)
            t0 = time.perf_counter()
            for a in range(0, samples, bs):
                model(images[a:a + bs], mags[a:a + bs])
            _sync(device)
            dt = time.perf_counter() - t0
            rows.append({"batch_size": bs, "seconds": dt, "samples_per_s": samples / dt,
                         "gflops_per_s": samples * flops / dt / 1e9})
            print(f"batch {bs:5d}: {samples / dt:10.1f} samples/s  {dt:8.3f} s  "
                  f"~{samples * flops / dt / 1e9:8.1f} GFLOP/s")
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=2048, help="synthetic samples to run (default 2048)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128, 512])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--model", default="astromae", help="built-in model name (default astromae)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: CUDA is not available")
    run(args.samples, args.batch_sizes, args.device, args.model, args.seed)


if __name__ == "__main__":
    main()
