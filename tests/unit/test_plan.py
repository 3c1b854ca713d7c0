"""Unit tests of inference.plan: partition listing order, rank blocks, manifest items."""

from __future__ import annotations

import pytest

from inference.errors import PayloadError
from inference.payload import parse_payload
from inference.plan import assign_partitions, partition_keys, plan_items

PREFIX = "data/x/"


def _keys(n: int) -> list[str]:
    return [f"{PREFIX}{i}.pt" for i in range(1, n + 1)]


# --------------------------------------------------------------------------- assign_partitions


@pytest.mark.parametrize(("n", "world"), [(1, 1), (5, 1), (5, 5), (10, 3), (12, 5), (7, 2), (100, 7)])
def test_assign_partitions_contiguous_balanced_ordered(n, world):
    keys = _keys(n)
    blocks = assign_partitions(keys, world)
    assert len(blocks) == world
    assert all(blocks), "no rank may get an empty block"
    # concatenating the blocks gives back the keys in their order: contiguous and order-preserving
    assert [k for block in blocks for k in block] == keys
    sizes = [len(b) for b in blocks]
    assert max(sizes) - min(sizes) <= 1
    assert sum(sizes) == n


def test_assign_partitions_known_case():
    keys = _keys(10)
    assert assign_partitions(keys, 3) == [keys[0:4], keys[4:7], keys[7:10]]


def test_assign_partitions_rejects_bad_world_size():
    with pytest.raises(PayloadError, match="world_size"):
        assign_partitions(_keys(3), 0)
    with pytest.raises(PayloadError, match="4"):
        assign_partitions(_keys(3), 4)


# --------------------------------------------------------------------------- partition_keys


def test_partition_keys_numeric_order():
    keys = sorted(_keys(12))  # lexicographic: 1, 10, 11, 12, 2, ...
    assert keys[1] == f"{PREFIX}10.pt"
    assert partition_keys(keys, PREFIX) == _keys(12)


def test_partition_keys_ignores_other_names_and_sub_folders():
    listing = [
        f"{PREFIX}2.pt",
        f"{PREFIX}README.md",
        f"{PREFIX}1.pt",
        f"{PREFIX}notes.pt",
        f"{PREFIX}3.pt.bak",
        f"{PREFIX}.1.pt.tmp",
        f"{PREFIX}10.pt",
        f"{PREFIX}sub/4.pt",
        f"{PREFIX}old/run/5.pt",
        f"{PREFIX}manifest.json",
    ]
    assert partition_keys(listing, PREFIX) == [f"{PREFIX}1.pt", f"{PREFIX}2.pt", f"{PREFIX}10.pt"]


def test_partition_keys_at_bucket_root():
    assert partition_keys(["3.pt", "1.pt", "x/2.pt", "a.txt"], "") == ["1.pt", "3.pt"]


def test_partition_keys_accepts_any_iterable():
    assert partition_keys(iter(reversed(_keys(3))), PREFIX) == _keys(3)


# --------------------------------------------------------------------------- plan_items


def _payload(**extra):
    return parse_payload({"bucket": "cosmic-bucket", "data_prefix": "data/x", "batch_size": 32, **extra})


def test_plan_items_one_item_per_rank():
    payload = _payload(world_size=3, model_key="tiny")
    items = plan_items(payload, _keys(7), "run-1", "results/run-1")
    assert [item.rank for item in items] == [1, 2, 3]
    assert all(item.world_size == 3 for item in items)
    assert [item.partitions for item in items] == assign_partitions(_keys(7), 3)
    first = items[0]
    assert first.run_id == "run-1"
    assert first.bucket == first.data_bucket == "cosmic-bucket"
    assert first.batch_size == 32
    assert first.result_prefix == "results/run-1"
    assert first.model_key == "scripts/tiny"


def test_plan_items_default_world_size_is_one_rank_per_partition():
    items = plan_items(_payload(), _keys(5), "r", "results/r")
    assert len(items) == 5
    assert [item.partitions for item in items] == [[k] for k in _keys(5)]


def test_plan_items_no_partitions_names_the_prefix():
    with pytest.raises(PayloadError) as info:
        plan_items(_payload(), [], "r", "results/r")
    message = str(info.value)
    assert "data/x/" in message
    assert "cosmic-bucket" in message


def test_plan_items_world_size_larger_than_partitions():
    with pytest.raises(PayloadError) as info:
        plan_items(_payload(world_size=9), _keys(4), "r", "results/r")
    message = str(info.value)
    assert "world_size" in message
    assert "9" in message
    assert "4" in message
