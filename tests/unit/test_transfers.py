"""Unit tests of a run's transfers: ``cosmicai.execute.fetch_results`` with a stand-in S3 client (what it brings
home, which keys it refuses to turn into paths) and ``cosmicai.deploy.upload_files`` through moto; both move
several objects at once (a barrier, not a clock)."""

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


def test_partitions_go_up_several_at_once_with_their_tags(tmp_path):
    """``deploy.upload_files`` through moto: every file arrives, tagged, and PutObjects are in flight together (a
    barrier in botocore's before-call hook: one upload at a time never gets past it)."""
    import boto3
    from moto import mock_aws

    from cosmicai.deploy import upload_files

    paths = []
    for rank in range(TRANSFER_THREADS):
        path = tmp_path / f"{rank}.pt"
        path.write_bytes(b"p%d" % rank)
        paths.append(path)
    barrier = threading.Barrier(2, timeout=10)

    def together(**kwargs):
        try:
            barrier.wait()
        except threading.BrokenBarrierError:  # the last one finds no partner: fine once the others went together
            pass

    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="cosmicai-up")
        waits = []
        s3.meta.events.register("before-call.s3.PutObject", lambda **kw: waits.append(barrier.n_waiting) or together())
        keys = upload_files(s3, "cosmicai-up", "data/x", paths, tags={"cosmicai:stack": "t"})
        assert keys == [f"data/x/{rank}.pt" for rank in range(TRANSFER_THREADS)]
        assert s3.get_object(Bucket="cosmicai-up", Key="data/x/3.pt")["Body"].read() == b"p3"
        assert s3.get_object_tagging(Bucket="cosmicai-up", Key="data/x/3.pt")["TagSet"] == [{"Key": "cosmicai:stack", "Value": "t"}]
    assert max(waits) >= 1, "no PutObject found another in flight"
