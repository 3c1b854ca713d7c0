"""Unit tests of inference.summary.build_summary on a hand-made run of 4 ranks."""

from __future__ import annotations

import math

import pytest

from inference.cost import run_cost
from inference.summary import build_summary

SAMPLE_BYTES = 20_520
START = "2025-03-01T12:00:00.000+00:00"
FINISH = "2025-03-01T12:00:12.500+00:00"  # 12.5 s later


def _ok(rank: int, samples: int, bps: float, persec: float, exec_time: float, rss: float) -> dict:
    return {
        "rank": rank,
        "world_size": 4,
        "status": "succeeded",
        "error": None,
        "num_samples": samples,
        "throughput_bps": bps,
        "sample_persec": persec,
        "execution_time (seconds/batch)": exec_time,
        "peak_rss_mb": rss,
        "lambda_duration_s": 3.0,
        "lambda_memory_mb": 2048,
    }


RECORDS = {
    1: _ok(1, 1000, 4.0e7, 250.0, 0.5, 900.0),
    2: _ok(2, 600, 3.0e7, 180.0, 0.7, 1200.0),
    3: {
        "rank": 3,
        "world_size": 4,
        "status": "failed",
        "error": {"type": "PartitionError", "message": "partition data/3.pt: truncated"},
        "num_samples": None,
    },
    # rank 4 never wrote a record
}


def _summary(tolerance: float, records: dict | None = None, start: str | None = START, finish: str = FINISH) -> dict:
    return build_summary(
        RECORDS if records is None else records,
        run_id="run-x",
        world_size=4,
        tolerated_failure_percentage=tolerance,
        execution_start=start,
        finished_at=finish,
        target="embedded",
        memory_mb=2048,
        timeout_s=60.0,
        result_prefix="results/run-x",
    )


def test_counts_and_failures():
    s = _summary(0.0)
    assert s["run_id"] == "run-x"
    assert s["target"] == "embedded"
    assert s["world_size"] == 4
    assert s["ranks_succeeded"] == 2
    assert s["ranks_failed"] == [
        {"rank": 3, "error": {"type": "PartitionError", "message": "partition data/3.pt: truncated"}},
        {"rank": 4, "error": {"type": "MissingResult", "message": s["ranks_failed"][1]["error"]["message"]}},
    ]
    assert s["ranks_failed"][1]["error"]["message"]  # a non-empty explanation
    assert s["failed_percentage"] == pytest.approx(50.0)


def test_samples_bytes_wall_and_throughput():
    s = _summary(0.0)
    assert s["samples_total"] == 1600  # failed and missing ranks count nothing
    assert s["bytes_total"] == 1600 * SAMPLE_BYTES
    assert s["wall_time_s"] == pytest.approx(12.5)
    assert s["throughput_bps"] == pytest.approx(1600 * SAMPLE_BYTES * 8 / 12.5)
    assert s["throughput_bytes_per_s"] == pytest.approx(1600 * SAMPLE_BYTES / 12.5)
    assert s["sample_persec"] == pytest.approx(1600 / 12.5)


def test_sums_means_and_peaks_over_succeeded_ranks():
    s = _summary(0.0)
    assert s["throughput_bps_sum"] == pytest.approx(7.0e7)
    assert s["sample_persec_sum"] == pytest.approx(430.0)
    assert s["execution_time_mean_s"] == pytest.approx(0.6)
    assert s["execution_time_p95_s"] == pytest.approx(0.7)
    assert s["peak_rss_mb_max"] == pytest.approx(1200.0)


def test_zulu_timestamps():
    s = _summary(0.0, start="2025-03-01T12:00:00Z", finish="2025-03-01T12:01:40Z")
    assert s["wall_time_s"] == pytest.approx(100.0)
    assert s["throughput_bps"] == pytest.approx(1600 * SAMPLE_BYTES * 8 / 100.0)


def test_no_start_time_gives_no_rates():
    s = _summary(0.0, start=None)
    assert s["wall_time_s"] is None
    assert s["throughput_bps"] is None
    assert s["sample_persec"] is None
    assert s["bytes_total"] == 1600 * SAMPLE_BYTES


@pytest.mark.parametrize(("tolerance", "status"), [(0.0, "FAILED"), (49.9, "FAILED"), (50.0, "SUCCEEDED"), (100.0, "SUCCEEDED")])
def test_status_against_tolerance(tolerance, status):
    s = _summary(tolerance)
    assert s["status"] == status
    assert s["tolerated_failure_percentage"] == tolerance


def test_all_ranks_succeeded():
    records = {r: _ok(r, 100, 1.0, 1.0, 0.1, 10.0) for r in range(1, 5)}
    s = _summary(0.0, records=records)
    assert s["status"] == "SUCCEEDED"
    assert s["ranks_failed"] == []
    assert s["ranks_succeeded"] == 4
    assert s["failed_percentage"] == 0.0


def test_failed_record_without_error_is_still_listed():
    records = {**RECORDS, 4: {"rank": 4, "status": "failed"}}
    s = _summary(0.0, records=records)
    assert [f["rank"] for f in s["ranks_failed"]] == [3, 4]
    assert s["ranks_failed"][1]["error"]["type"]


def test_cost_is_the_run_cost_of_the_records():
    s = _summary(0.0)
    expected = run_cost(RECORDS.values(), memory_mb=2048, timeout_s=60.0, world_size=4)
    assert s["cost_usd"].keys() == {"lambda", "stepfunctions", "s3", "total"}
    for key, value in expected.items():
        assert math.isclose(s["cost_usd"][key], value, rel_tol=1e-12)
