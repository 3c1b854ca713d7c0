"""Unit tests of ``cosmicai.execute.fetch_results`` with a stand-in S3 client: what it brings home, which keys it
refuses to turn into paths, and that it fetches several objects at once (a barrier, not a clock)."""

from __future__ import annotations

import io
import json
import threading

from botocore.exceptions import ClientError

from cosmicai.execute import TRANSFER_THREADS, fetch_results


class FakeS3:
    """list_objects_v2 (one page) and get_object over a dict; ``together`` get_objects must be in flight at once."""

    def __init__(self, objects: dict[str, bytes], together: int = 1) -> None:
        self.objects = objects
        self.barrier = threading.Barrier(together, timeout=10) if together > 1 else None

    def get_paginator(self, name: str):
        assert name == "list_objects_v2"
        objects = self.objects

        class Pages:
            def paginate(self, Bucket: str, Prefix: str):
                yield {"Contents": [{"Key": k} for k in sorted(objects) if k.startswith(Prefix)]}

        return Pages()

    def get_object(self, Bucket: str, Key: str):
        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "NoSuchKey", "Message": Key}}, "GetObject")
        if self.barrier is not None and "/ranks/" in Key:
            self.barrier.wait()  # raises BrokenBarrierError when the others never come: fetched one at a time
        return {"Body": io.BytesIO(self.objects[Key])}


def _results(ranks: int) -> dict[str, bytes]:
    objects = {"r/summary.json": json.dumps({"ranks_succeeded": ranks}).encode(), "r/combined_data.json": b"[]"}
    for rank in range(ranks):
        objects[f"r/ranks/{rank}.json"] = json.dumps({"rank": rank}).encode()
        objects[f"r/predictions/{rank}.pt"] = b"pt%d" % rank
    return objects


def test_everything_a_run_wrote_comes_home_and_nothing_else(tmp_path):
    objects = _results(12)
    objects["r/ranks/../../escape.json"] = b"{}"  # never a path taken from a key as is
    objects["r/ranks/notes.txt"] = b"?"
    summary = fetch_results(FakeS3(objects), "b", "r", tmp_path)
    assert summary == {"ranks_succeeded": 12}
    assert sorted(p.name for p in (tmp_path / "ranks").iterdir()) == sorted(f"{r}.json" for r in range(12))
    assert (tmp_path / "predictions" / "7.pt").read_bytes() == b"pt7"
    assert not (tmp_path.parent / "escape.json").exists()


def test_records_are_fetched_several_at_once(tmp_path):
    fetch_results(FakeS3(_results(TRANSFER_THREADS * 2), together=TRANSFER_THREADS), "b", "r", tmp_path)
    assert len(list((tmp_path / "ranks").iterdir())) == TRANSFER_THREADS * 2


def test_a_missing_summary_is_none_and_the_records_still_come(tmp_path):
    objects = {k: v for k, v in _results(3).items() if not k.endswith("summary.json")}
    assert fetch_results(FakeS3(objects), "b", "r", tmp_path) is None
    assert len(list((tmp_path / "ranks").iterdir())) == 3


def test_no_ranks_is_an_empty_fetch(tmp_path):
    assert fetch_results(FakeS3(_results(0)), "b", "r", tmp_path) == {"ranks_succeeded": 0}
    assert list((tmp_path / "ranks").iterdir()) == []
