"""Inference speed: the reference project's loop against our rank function, in one process and one run.

(a) the reference loop, re-created faithfully: the whole loop inside
    ``torch.profiler.profile(activities=[CPU], profile_memory=True, record_shapes=True)``,
    ``torch.no_grad()``, a ``DataLoader`` over a ``TensorDataset(images, magnitudes,
    redshifts)`` (default collate, num_workers=0, no shuffle), the model in eval(),
    ``gc.collect()`` after every batch; timed from entering the profiler to leaving it;
(b) ``inference.measure.predict`` (what every rank runs) in fp32 and in each reduced
    precision asked for; its loop time, as in the rank record (preparing the model
    for a precision is printed apart).

Both see the same model and the same synthetic data, and every path is warmed up
with one batch first. Rounds alternate the order of the paths; with --rounds > 1
the table gives the best and the median of each figure (the machine is shared:
read the spread, not one number). The float32 matmul peak is the higher of a
``torch.mm`` of 2048x2048 (8192 on CUDA) and, on the CPU, the same product through
oneDNN's packed matmul (what our fp32 path uses), with the same threads, best of
several, measured at the start of every round. ``--ablation`` times our path with each optimisation taken
away in turn (and ``--compile`` adds torch.compile, with its compile time).

    python benchmarks/inference_speed.py [--samples 1024] [--batch-sizes 32 128 512] [--rounds 1]
        [--threads N] [--precision fp32 int8 bf16] [--device cpu|cuda] [--ablation] [--compile] [--json OUT]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
import warnings
from typing import Any, Callable

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils.data import DataLoader, TensorDataset

from inference.data import generate
from inference.measure import predict
from inference.model import RedshiftModel, count_parameters, flops_per_sample, load_checkpoint, load_model, CONFIGS
from inference.precision import (
    MICRO_BATCH, PRECISIONS, InferenceModel, check_supported, cpu_bf16_feature, inference_flops_per_sample, onednn_available,
    prepare,
)

DEFAULT = "+ oneDNN packed linears, fused GELU/residual (= default fp32)"  # the ablation's reference row


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, repeats: int = 3) -> dict[str, float]:
    """Best float32 GFLOP/s of square products: torch.mm (MKL on the CPU) and, where used, oneDNN's packed matmul.

    Our fp32 path runs its linear layers through oneDNN, which beats MKL's sgemm
    on this CPU; the higher of the two is the peak the model is compared against.
    """
    n = 8192 if device.type == "cuda" else 2048
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    products: dict[str, Callable[[], Any]] = {"torch.mm": lambda: torch.mm(a, b)}
    if device.type == "cpu" and onednn_available():
        packed = torch.ops.mkldnn._reorder_linear_weight(b)
        products["oneDNN"] = lambda: torch.ops.mkldnn._linear_pointwise(a, packed, None, "none", [], "")
    reps, peaks = (20 if device.type == "cuda" else 4), {}
    with torch.inference_mode():
        for name, product in products.items():
            product()
            _sync(device)
            best = 0.0
            for _ in range(repeats):
                t0 = time.perf_counter()
                for _ in range(reps):
                    product()
                _sync(device)
                best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9)
            peaks[name] = best
    return peaks


def reference_loop(model: torch.nn.Module, images: torch.Tensor, magnitudes: torch.Tensor, redshifts: torch.Tensor,
                   batch_size: int, device: torch.device) -> tuple[torch.Tensor, float]:
    """The reference worker's loop; returns (predictions on the CPU, seconds)."""
    loader = DataLoader(TensorDataset(images, magnitudes, redshifts), batch_size=batch_size, shuffle=False, num_workers=0)
    model.eval()
    outs = []
    _sync(device)
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True):
        with torch.no_grad():
            for data in loader:
                image = data[0].to(device)
                magnitude = data[1].to(device)
                outs.append(model(image, magnitude))
                gc.collect()
        _sync(device)
    seconds = time.perf_counter() - t0
    return torch.cat(outs).float().cpu(), seconds


def our_loop(net: torch.nn.Module, images: torch.Tensor, magnitudes: torch.Tensor, batch_size: int, device: torch.device) -> tuple[torch.Tensor, float]:
    """predict's loop over an already prepared module (for the ablation variants)."""
    out = torch.empty(images.shape[0])
    _sync(device)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for a in range(0, images.shape[0], batch_size):
            out[a:a + batch_size] = net(images[a:a + batch_size].to(device), magnitudes[a:a + batch_size].to(device)).float().cpu()
    _sync(device)
    return out, time.perf_counter() - t0


def _stats(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:8.1f}"
    return f"{max(values):8.1f} (median {statistics.median(values):.1f}, min {min(values):.1f})"


def ablation_variants(model: RedshiftModel, device: torch.device, compile_too: bool) -> dict[str, tuple[Callable[[], torch.nn.Module], int | None]]:
    """name -> (builder, threads or None): our fp32 path with one optimisation taken away at a time."""
    def im(**kw: Any) -> Callable[[], torch.nn.Module]:
        return lambda: InferenceModel(model, **kw)

    variants: dict[str, tuple[Callable[[], torch.nn.Module], int | None]] = {
        "plain forward (inference_mode, slices)": (lambda: model, None),
        "SDPA attention only (whole batch, NCHW, MKL)": (im(cls_only=False, channels_last=False, micro_batch=None, onednn=False), None),
        "+ cls-only last layer": (im(channels_last=False, micro_batch=None, onednn=False), None),
        "+ channels_last": (im(micro_batch=None, onednn=False), None),
        f"+ micro-batch {MICRO_BATCH}": (im(onednn=False), None),
        DEFAULT: (im(), None),
        "default, micro-batch 32": (im(micro_batch=32), None),
        "default, micro-batch 128": (im(micro_batch=128), None),
        "default, whole batch (no micro-batch)": (im(micro_batch=None), None),
    }
    if device.type == "cpu" and torch.get_num_threads() > 1:
        variants["default, 1 thread"] = (im(), 1)

    def frozen() -> torch.nn.Module:
        x = torch.randn(MICRO_BATCH, 5, 32, 32, device=device)
        m = torch.randn(MICRO_BATCH, 5, device=device)
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the input-shape checks become constants
            traced = torch.jit.trace(InferenceModel(model, micro_batch=None, onednn=False), (x, m), check_trace=False)
            graph = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
        return _MicroBatched(graph, MICRO_BATCH)

    variants[f"micro-batch {MICRO_BATCH} + torch.jit.freeze (MKL linears)"] = (frozen, None)
    if compile_too:
        def compiled() -> torch.nn.Module:
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True
            net = torch.compile(InferenceModel(model, micro_batch=None, onednn=False), dynamic=False)
            return _MicroBatched(net, MICRO_BATCH)

        variants[f"micro-batch {MICRO_BATCH} + torch.compile (inductor, freezing)"] = (compiled, None)
    return variants


class _MicroBatched(torch.nn.Module):
    def __init__(self, net: Any, step: int) -> None:
        super().__init__()
        self.net, self.step = net, step

    def forward(self, images: torch.Tensor, magnitudes: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.net(images[i:i + self.step], magnitudes[i:i + self.step]) for i in range(0, images.shape[0], self.step)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1024, help="synthetic samples per timed pass (default 1024)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128, 512])
    ap.add_argument("--rounds", type=int, default=1, help="passes per path, alternating the order (default 1)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's, the physical cores)")
    ap.add_argument("--precision", nargs="+", choices=PRECISIONS, default=None,
                    help="modes of our path to time (default: fp32, int8 on CPU, bf16 where native)")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    ap.add_argument("--model", default="full", help="config name or checkpoint file (default full)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ablation", action="store_true", help="time our fp32 path with each optimisation taken away (largest batch)")
    ap.add_argument("--compile", action="store_true", help="with --ablation: also torch.compile (slow to compile)")
    ap.add_argument("--json", help="also write every figure to this JSON file")
    args = ap.parse_args(argv)
    try:
        device = check_supported("fp32", args.device)[1]
        if args.precision is None:
            modes = ["fp32"] + (["int8"] if device.type == "cpu" else [])
            try:
                check_supported("bf16", device)
                modes.append("bf16")
            except ValueError:
                pass
        else:
            modes = list(dict.fromkeys(["fp32", *args.precision]))
            for mode in modes:
                check_supported(mode, device)
    except ValueError as exc:  # cuda without CUDA, bf16 without native support: one line, exit 2
        print(f"inference_speed: error: {exc}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()

    model = load_model(args.model, seed=args.seed, device=device) if args.model in CONFIGS else load_checkpoint(args.model, device=device)
    data = generate(args.samples, seed=args.seed)
    images, mags, z = data["images"], data["magnitudes"], data["redshifts"]
    flops, flops_ours = flops_per_sample(model.config), inference_flops_per_sample(model.config)
    print(f"torch {torch.__version__}, device {device}, {threads} threads, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"native bf16: {cpu_bf16_feature() or 'no'}")
    print(f"model {args.model}: {count_parameters(model):,} parameters; FLOPs/sample {flops / 1e9:.3f} G (model), "
          f"{flops_ours / 1e9:.3f} G executed by our fp32 path (last layer computes the cls token only); "
          f"{args.samples} samples, {args.rounds} round(s), modes {', '.join(modes)}")

    with torch.inference_mode():  # warm-up: one small batch through every path (kernels, oneDNN primitives)
        warm = min(args.batch_sizes)
        for net in (model, *(prepare(model, mode, device) for mode in modes)):
            net(images[:warm].to(device), mags[:warm].to(device))
    peaks: list[float] = []
    ref: dict[int, list[float]] = {bs: [] for bs in args.batch_sizes}
    ours: dict[tuple[str, int], list[float]] = {(m, bs): [] for m in modes for bs in args.batch_sizes}
    preds: dict[Any, torch.Tensor] = {}
    prepare_s: dict[str, float] = {}
    for r in range(args.rounds):
        measured = matmul_peak(device)
        peaks.append(max(measured.values()))
        print(f"round {r + 1}: float32 matmul peak " + ", ".join(f"{k} {v:.1f}" for k, v in measured.items()) + " GFLOP/s", flush=True)
        for bs in args.batch_sizes:
            order = ["ref", *modes] if r % 2 == 0 else [*modes, "ref"]
            for path in order:
                if path == "ref":
                    p, secs = reference_loop(model, images, mags, z, bs, device)
                    ref[bs].append(args.samples / secs)
                    preds[("ref", bs)] = p
                else:
                    p, timing = predict(model, images, mags, bs, device, path)
                    ours[(path, bs)].append(args.samples / timing.wall_s)
                    preds[(path, bs)] = p
                    prepare_s[path] = timing.prepare_s
                figure = ref[bs][-1] if path == "ref" else ours[(path, bs)][-1]
                print(f"  batch {bs:4d} {'reference' if path == 'ref' else 'ours ' + path:>10s}: {figure:7.1f} samples/s", flush=True)

    peak = max(peaks)
    results: dict[str, Any] = {"device": str(device), "threads": threads, "samples": args.samples, "rounds": args.rounds,
                               "flops_per_sample": flops, "flops_per_sample_executed": flops_ours,
                               "matmul_peak_gflops": peaks, "rows": []}
    print(f"\nfloat32 matmul peak (the higher of torch.mm and oneDNN): {_stats(peaks)} GFLOP/s; "
          f"samples/s below: best of {args.rounds} (median, min)")
    for bs in args.batch_sizes:
        r_best = max(ref[bs])
        print(f"batch {bs}: reference {_stats(ref[bs])} samples/s = {r_best * flops / 1e9:.1f} GFLOP/s ({100 * r_best * flops / 1e9 / peak:.0f}% of matmul peak)")
        for mode in modes:
            best = max(ours[(mode, bs)])
            paired = [o / f for o, f in zip(ours[(mode, bs)], ref[bs])]
            row = {"batch_size": bs, "precision": mode, "reference_sps": ref[bs], "ours_sps": ours[(mode, bs)],
                   "ratio_best": best / r_best, "ratio_paired_median": statistics.median(paired),
                   "max_abs_diff_vs_reference": float((preds[(mode, bs)] - preds[("ref", bs)]).abs().max()),
                   "max_abs_diff_vs_fp32": float((preds[(mode, bs)] - preds[("fp32", bs)]).abs().max()),
                   "mae": float((preds[(mode, bs)] - z).abs().mean()), "mae_fp32": float((preds[("fp32", bs)] - z).abs().mean()),
                   "gflops_executed": best * flops_ours / 1e9, "gflops_model": best * flops / 1e9}
            results["rows"].append(row)
            line = (f"  ours {mode}: {_stats(ours[(mode, bs)])} samples/s, {row['ratio_best']:.2f}x the reference "
                    f"(paired median {row['ratio_paired_median']:.2f}x)")
            if mode == "fp32":
                line += (f", max |diff| vs reference {row['max_abs_diff_vs_reference']:.1e}; "
                         f"{row['gflops_executed']:.1f} GFLOP/s executed = {100 * row['gflops_executed'] / peak:.0f}% of matmul peak "
                         f"({row['gflops_model']:.1f} counting the model's FLOPs = {100 * row['gflops_model'] / peak:.0f}%)")
            else:
                line += (f"; max |diff| vs fp32 {row['max_abs_diff_vs_fp32']:.1e}; MAE vs true z {row['mae']:.4f} "
                         f"(fp32 {row['mae_fp32']:.4f}, {row['mae'] - row['mae_fp32']:+.4f}); prepare {prepare_s[mode]:.2f} s")
            print(line)

    if args.ablation:
        results["ablation"] = run_ablation(model, images, mags, max(args.batch_sizes), device, args.rounds, args.compile, preds[("fp32", max(args.batch_sizes))])
    _verdict(results, max(args.batch_sizes), peak)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


def run_ablation(model: RedshiftModel, images: torch.Tensor, mags: torch.Tensor, bs: int, device: torch.device,
                 rounds: int, compile_too: bool, fp32_preds: torch.Tensor) -> list[dict[str, Any]]:
    """Time each variant ``rounds`` times (alternating), print samples/s against the default fp32 path."""
    n = images.shape[0]
    variants = ablation_variants(model, device, compile_too)
    built: dict[str, torch.nn.Module] = {}
    setup: dict[str, float] = {}
    default_threads = torch.get_num_threads()
    first: dict[str, float] = {}
    for name, (build, _) in variants.items():
        t0 = time.perf_counter()
        built[name] = build()
        setup[name] = time.perf_counter() - t0
        t0 = time.perf_counter()
        with torch.inference_mode():  # first call: traces run their optimisation passes, torch.compile compiles
            built[name](images[:MICRO_BATCH].to(device), mags[:MICRO_BATCH].to(device))
        first[name] = time.perf_counter() - t0
    sps: dict[str, list[float]] = {name: [] for name in variants}
    diffs: dict[str, float] = {}
    names = list(variants)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            threads = variants[name][1]
            torch.set_num_threads(threads or default_threads)
            p, secs = our_loop(built[name], images, mags, bs, device)
            torch.set_num_threads(default_threads)
            sps[name].append(n / secs)
            diffs[name] = float((p - fp32_preds).abs().max())
    base = max(sps[DEFAULT])
    print(f"\nablation at batch {bs} (fp32; samples/s best of {rounds}; setup = build + first call beyond a normal "
          f"{MICRO_BATCH}-sample step, paid once per prepared model):")
    rows = []
    for name in names:
        best = max(sps[name])
        setup[name] += max(0.0, first[name] - MICRO_BATCH / best)
        note = ""
        if setup[name] > 1 and best > base:
            gain_per_sample = 1 / base - 1 / best
            note = f"; its setup is repaid after {setup[name] / gain_per_sample:,.0f} samples"
        print(f"  {name:50s} {_stats(sps[name])}  ({best / base:.2f}x default; setup {setup[name]:.1f} s; max |diff| {diffs[name]:.1e}{note})")
        rows.append({"variant": name, "sps": sps[name], "vs_default": best / base, "setup_s": setup[name], "max_abs_diff": diffs[name]})
    return rows


def _verdict(results: dict[str, Any], bs: int, peak: float) -> None:
    """The issue's targets at batch ``bs``. Ratios: the median of per-round ratios (each pair measured
    back to back, so a burst of load elsewhere hits both), with best-of-rounds beside it."""
    rows = {r["precision"]: r for r in results["rows"] if r["batch_size"] == bs}
    fp32 = rows["fp32"]
    ratio = fp32["ratio_paired_median"]
    print(f"\ntargets at batch {bs} (ratios: median of per-round pairs; best-of-rounds in brackets):")
    print(f"  fp32 >= 1.3x the reference: {ratio:.2f}x [{fp32['ratio_best']:.2f}x] -> {'met' if ratio >= 1.3 else 'NOT met'}; "
          f"predictions within 1e-4: {fp32['max_abs_diff_vs_reference']:.1e} -> {'met' if fp32['max_abs_diff_vs_reference'] <= 1e-4 else 'NOT met'}")
    share = fp32["gflops_executed"] / peak
    print(f"  fp32 >= 60% of matmul peak: {100 * share:.0f}% counting executed FLOPs, {100 * fp32['gflops_model'] / peak:.0f}% "
          f"counting the model's (best rounds) -> {'met' if share >= 0.6 else 'NOT met'}")
    for mode, row in rows.items():
        if mode != "fp32":
            ratio = row["ratio_paired_median"]
            print(f"  {mode} >= 2x the reference: {ratio:.2f}x [{row['ratio_best']:.2f}x] -> {'met' if ratio >= 2 else 'NOT met'}; "
                  f"accuracy cost: MAE vs true z {row['mae_fp32']:.4f} -> {row['mae']:.4f}, max |diff| vs fp32 {row['max_abs_diff_vs_fp32']:.1e}")


if __name__ == "__main__":
    raise SystemExit(main())
