"""Unit tests of inference.cost: Lambda GB-s, run totals, timeouts for missing ranks, estimates."""

from __future__ import annotations

import math

import pytest

from inference.cost import (
    AUX_FUNCTION_MEMORY_MB,
    AUX_FUNCTION_SECONDS,
    PRICES,
    Prices,
    estimate_cost,
    lambda_compute,
    run_cost,
)

GB_S = 0.0000166667


def _ok(seconds: float, memory_mb: int = 1024) -> dict:
    return {"status": "succeeded", "lambda_duration_s": seconds, "lambda_memory_mb": memory_mb}


# --------------------------------------------------------------------------- lambda_compute


def test_lambda_compute_known_case():
    assert lambda_compute(2.0, 1024) == pytest.approx(2 * GB_S, rel=1e-12)


@pytest.mark.parametrize(("seconds", "memory_mb", "gb_seconds"), [(1.0, 2048, 2.0), (10.0, 512, 5.0), (0.5, 10240, 5.0), (0.0, 1024, 0.0)])
def test_lambda_compute_scales_with_memory_and_time(seconds, memory_mb, gb_seconds):
    assert lambda_compute(seconds, memory_mb) == pytest.approx(gb_seconds * GB_S, rel=1e-12, abs=0.0)


def test_lambda_compute_rounds_up_to_the_millisecond():
    assert lambda_compute(1.0001, 1024) == pytest.approx(1.001 * GB_S, rel=1e-9)
    assert lambda_compute(-1.0, 1024) == 0.0


def test_lambda_compute_uses_given_prices():
    assert lambda_compute(3.0, 1024, Prices(lambda_gb_second=1.0)) == pytest.approx(3.0)


# --------------------------------------------------------------------------- run_cost


def test_run_cost_totals_add_up():
    cost = run_cost([_ok(2.0), _ok(4.0, 2048)], memory_mb=1024, timeout_s=60.0, world_size=2)
    assert set(cost) == {"lambda", "stepfunctions", "s3", "total"}
    assert all(v > 0 for v in cost.values())
    assert cost["total"] == pytest.approx(cost["lambda"] + cost["stepfunctions"] + cost["s3"], rel=1e-12)


def test_run_cost_lambda_known_case():
    cost = run_cost([_ok(2.0), _ok(4.0, 2048)], memory_mb=1024, timeout_s=60.0, world_size=2)
    infer = lambda_compute(2.0, 1024) + lambda_compute(4.0, 2048)
    aux = 2 * lambda_compute(AUX_FUNCTION_SECONDS, AUX_FUNCTION_MEMORY_MB)  # Initialize + Summarize
    requests = (2 + 2) * PRICES.lambda_request
    assert cost["lambda"] == pytest.approx(infer + aux + requests, rel=1e-12)
    assert cost["stepfunctions"] == pytest.approx((3 + 2) * PRICES.sfn_transition, rel=1e-12)


def test_missing_rank_is_charged_its_timeout():
    timeout = 120.0
    one = run_cost([_ok(2.0)], memory_mb=1024, timeout_s=timeout, world_size=1)
    with_missing = run_cost([_ok(2.0)], memory_mb=1024, timeout_s=timeout, world_size=2)
    extra_lambda = with_missing["lambda"] - one["lambda"]
    # the missing rank's Infer at its timeout, its RecordFailure, and two more requests
    expected = lambda_compute(timeout, 1024) + lambda_compute(AUX_FUNCTION_SECONDS, AUX_FUNCTION_MEMORY_MB) + 2 * PRICES.lambda_request
    assert extra_lambda == pytest.approx(expected, rel=1e-9)
    assert extra_lambda > lambda_compute(timeout, 1024)


def test_missing_rank_costs_as_much_as_a_failed_rank_that_hit_the_timeout():
    timeout = 300.0
    missing = run_cost([_ok(2.0)], memory_mb=1024, timeout_s=timeout, world_size=2)
    failed_at_timeout = run_cost([_ok(2.0), {"status": "failed", "lambda_duration_s": timeout}], memory_mb=1024, timeout_s=timeout, world_size=2)
    for key in missing:
        assert missing[key] == pytest.approx(failed_at_timeout[key], rel=1e-12)


def test_failed_rank_without_duration_is_charged_the_timeout():
    timeout = 300.0
    no_duration = run_cost([_ok(2.0), {"status": "failed", "lambda_duration_s": None}], memory_mb=1024, timeout_s=timeout, world_size=2)
    at_timeout = run_cost([_ok(2.0), {"status": "failed", "lambda_duration_s": timeout}], memory_mb=1024, timeout_s=timeout, world_size=2)
    assert no_duration["lambda"] == pytest.approx(at_timeout["lambda"], rel=1e-12)


def test_a_longer_timeout_costs_more_only_when_ranks_are_missing():
    complete = [_ok(2.0), _ok(2.0)]
    assert run_cost(complete, memory_mb=1024, timeout_s=10, world_size=2) == run_cost(complete, memory_mb=1024, timeout_s=900, world_size=2)
    short = run_cost(complete[:1], memory_mb=1024, timeout_s=10, world_size=2)
    long = run_cost(complete[:1], memory_mb=1024, timeout_s=900, world_size=2)
    assert long["lambda"] > short["lambda"]


# --------------------------------------------------------------------------- estimate_cost


def test_estimate_cost_grows_linearly_with_world_size():
    sizes = [1, 2, 4, 10, 100]
    totals = {w: estimate_cost(world_size=w, seconds_per_rank=5.0, memory_mb=3008)["total"] for w in sizes}
    per_rank = totals[2] - totals[1]
    assert per_rank > 0
    for w in sizes:
        assert totals[w] == pytest.approx(totals[1] + (w - 1) * per_rank, rel=1e-9)


def test_estimate_cost_lambda_part_is_per_rank_compute():
    a = estimate_cost(world_size=3, seconds_per_rank=5.0, memory_mb=3008)
    b = estimate_cost(world_size=6, seconds_per_rank=5.0, memory_mb=3008)
    per_rank = lambda_compute(5.0, 3008) + PRICES.lambda_request
    assert b["lambda"] - a["lambda"] == pytest.approx(3 * per_rank, rel=1e-9)


def test_estimate_cost_equals_run_cost_of_all_succeeded():
    est = estimate_cost(world_size=4, seconds_per_rank=7.5, memory_mb=2048)
    actual = run_cost([_ok(7.5, 2048)] * 4, memory_mb=2048, timeout_s=900.0, world_size=4)
    for key in est:
        assert math.isclose(est[key], actual[key], rel_tol=1e-12)


def test_the_reference_figure_130_ranks_of_25_s_at_7168_mb_is_about_38_cents():
    from inference.cost import lambda_compute

    duration = 130 * lambda_compute(25.0, 7168)
    assert abs(duration - 130 * 25 * 7 * 0.0000166667) < 1e-9
    assert 0.37 < duration < 0.39


def test_arm64_is_priced_below_x86():
    from inference.cost import lambda_compute

    assert lambda_compute(10.0, 2048, arch="arm64") == pytest.approx(10 * 2 * 0.0000133334)
    with pytest.raises(ValueError, match="arch"):
        lambda_compute(1.0, 128, arch="sparc")


def test_cosmicai_cost_json_holds_inputs_assumptions_and_totals():
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "cosmicai.cli", "cost", "--data-size", "2.5GB", "--partition-size", "25MB", "--seconds-per-rank", "25", "--memory", "7168", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["inputs"]["ranks"] == 103  # ceil(2.5 GiB / 25 MiB)
    assert set(result) >= {"inputs", "assumptions", "lambda_usd", "stepfunctions_usd", "s3_usd", "total_usd"}
    assert result["total_usd"] == pytest.approx(result["lambda_usd"] + result["stepfunctions_usd"] + result["s3_usd"])
    assumptions = result["assumptions"]  # numbers are numbers; where they came from is a field of its own
    assert assumptions["seconds_per_rank"] == 25.0 and isinstance(assumptions["seconds_per_rank"], float)
    assert assumptions["seconds_per_rank_source"] == "given" and assumptions["samples_per_rank"] == 1277
    bad = subprocess.run([sys.executable, "-m", "cosmicai.cli", "cost", "--ranks", "4", "--memory", "20000", "--seconds-per-rank", "1"], capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 2 and "10240" in bad.stderr


# --------------------------------------------------------------------------- cosmicai cost


def _cost_args(*argv: str):
    from cosmicai.cli import build_parser

    return build_parser().parse_args(["cost", *argv])


def test_a_measured_projection_times_several_batches_repeatedly_and_reports_the_spread_as_numbers():
    from cosmicai.study import cost

    args = _cost_args("--ranks", "4", "--memory", "3008", "--model", "tiny", "--batch-size", "16", "--batches", "3", "--repeats", "3", "--json")
    result = cost.project(args)
    a = result["assumptions"]
    assert a["seconds_per_rank_source"] == "measured"
    timing = a["timing"]
    assert (timing["batch_size"], timing["batches"], timing["repeats"], timing["samples_per_timing"]) == (16, 3, 3, 48)
    assert len(timing["seconds_per_sample_each"]) == 3 and timing["threads"] >= 1
    for key in ("seconds_per_rank", "seconds_per_rank_min", "seconds_per_rank_max", "seconds_per_sample", "cold_start_s"):
        assert isinstance(a[key], float), key
    assert a["seconds_per_sample_min"] <= a["seconds_per_sample"] <= a["seconds_per_sample_max"]
    assert a["seconds_per_sample"] == pytest.approx(sorted(timing["seconds_per_sample_each"])[1])  # the median of three
    assert a["seconds_per_rank"] == pytest.approx(1277 * a["seconds_per_sample"] + a["cold_start_s"])
    assert result["total_usd_min"] <= result["total_usd"] <= result["total_usd_max"]
    assert result["total_usd"] == pytest.approx(estimate_cost(world_size=4, seconds_per_rank=a["seconds_per_rank"], memory_mb=3008)["total"])


def test_cosmicai_cost_prints_money_rounded(capsys):
    from cosmicai.study import cost

    assert cost.main(_cost_args("--ranks", "130", "--seconds-per-rank", "25", "--memory", "7168")) == 0
    printed = capsys.readouterr().out
    assert "total $0.384 per run" in printed and "Lambda $0.379" in printed and "seconds per rank: 25 s (given)" in printed
    assert "0.3840" not in printed and "0.37920" not in printed  # no float noise


def test_lambda_vcpus_and_the_price_of_this_machine():
    from inference.cost import lambda_vcpus, machine_cost

    assert [lambda_vcpus(m) for m in (128, 1769, 3008, 5307, 7076, 10240)] == [1, 1, 2, 3, 4, 6]
    assert machine_cost(3600, 2) == pytest.approx(0.1008)  # an hour of a 2-vCPU on-demand machine (m7i.large)
    assert machine_cost(-1, 2) == 0.0
