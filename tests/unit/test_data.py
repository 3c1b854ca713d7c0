"""Unit tests of inference.data: generator, format, safe loading and its rejections, splitter."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from inference.data import (
    SAMPLE_BYTES, Partition, generate, list_partitions, load_partition, parse_size, partition_index, save_partition,
    sorted_partitions, split, split_file,
)
from inference.errors import PartitionError


@pytest.fixture(scope="module")
def data() -> dict[str, torch.Tensor]:
    return generate(600, seed=7)


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = a.argsort().argsort().double(), b.argsort().argsort().double()
    return float(torch.corrcoef(torch.stack([ra, rb]))[0, 1])


# --------------------------------------------------------------------------- generator

def test_generator_is_deterministic(data):
    again, other = generate(600, seed=7), generate(600, seed=8)
    for k in ("images", "magnitudes", "redshifts"):
        assert torch.equal(data[k], again[k])
        assert not torch.equal(data[k], other[k])


def test_generator_shapes_dtypes_ranges(data):
    assert data["images"].shape == (600, 5, 32, 32)
    assert data["magnitudes"].shape == (600, 5)
    assert data["redshifts"].shape == (600,)
    assert data["images"].dtype == torch.float32 and data["redshifts"].dtype == torch.float32
    assert data["magnitudes"].dtype == torch.float64  # the reference's layout
    z = data["redshifts"]
    assert 0 <= z.min() and z.max() <= 0.45
    assert 0.05 < z.median() < 0.2
    assert all(torch.isfinite(v).all() for v in data.values())
    assert 14 < data["magnitudes"][:, 2].median() < 20  # r band, SDSS-like


def test_images_consistent_with_magnitudes_and_redshift(data):
    images, mags, z = data["images"], data["magnitudes"], data["redshifts"]
    flux = images.sum(dim=(2, 3))  # (n,5) total band flux in nanomaggies
    # magnitudes follow the image flux (r band; noise makes faint ones scatter)
    assert _spearman(flux[:, 2], -mags[:, 2]) > 0.95
    # farther galaxies are smaller: fewer r-band pixels well above the sky noise
    size = (images[:, 2] > 5 * 0.015).sum(dim=(1, 2)).float()
    assert _spearman(size, z) < -0.6
    # and redder: g/r flux ratio falls, g-r colour rises with z
    assert _spearman(flux[:, 1] / flux[:, 2], z) < -0.6
    assert _spearman(mags[:, 1] - mags[:, 2], z) > 0.6


# --------------------------------------------------------------------------- format round trip

@pytest.mark.parametrize("fmt", ["dict", "tensordataset"])
def test_save_load_round_trip(tmp_path, data, fmt):
    path = save_partition(tmp_path / "1.pt", data, fmt=fmt)
    with torch.serialization.safe_globals([TensorDataset]):
        raw = torch.load(path, weights_only=True)
    assert isinstance(raw, dict if fmt == "dict" else TensorDataset)
    stored = raw if fmt == "dict" else dict(zip(("images", "magnitudes", "redshifts"), raw.tensors))
    assert [stored[k].dtype for k in ("images", "magnitudes", "redshifts")] == [torch.float32, torch.float64, torch.float32]
    assert sum(stored[k][0].nbytes for k in ("images", "magnitudes")) == SAMPLE_BYTES  # 20,480 + 40 B, the reference's figure
    part = load_partition(path)
    assert isinstance(part, Partition) and part.path == path
    assert len(part) == 600 and part.nbytes == 600 * SAMPLE_BYTES
    assert all(t.dtype == torch.float32 for t in part.tensors().values())
    assert part.cast == ("magnitudes float64",)
    assert torch.equal(part.images, data["images"])
    assert torch.equal(part.magnitudes, data["magnitudes"].float())
    assert torch.equal(part.redshifts, data["redshifts"])
    assert [p.name for p in tmp_path.iterdir()] == ["1.pt"]  # no temp file left


def test_default_files_load_in_the_reference_loader(tmp_path, data):
    """What the reference's Lambda does with a partition: torch.load (unsafe, as it is written) and a DataLoader."""
    path = save_partition(tmp_path / "1.pt", data)
    loaded = torch.load(path, weights_only=False)
    assert isinstance(loaded, TensorDataset) and loaded.tensors[1].dtype == torch.float64
    images, magnitudes, redshifts = next(iter(torch.utils.data.DataLoader(loaded, batch_size=512)))
    assert images.shape == (512, 5, 32, 32) and magnitudes.shape == (512, 5) and redshifts.shape == (512,)


def test_reference_tensordataset_file_loads(tmp_path, data):
    path = tmp_path / "ref.pt"
    torch.save(TensorDataset(data["images"], data["magnitudes"], data["redshifts"]), path)
    assert len(load_partition(path)) == 600


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.int32])
def test_other_real_dtypes_are_cast_at_the_edge(tmp_path, data, dtype):
    d = _bad(data, images=data["images"][:10].to(dtype), magnitudes=data["magnitudes"][:10].to(dtype))
    path = tmp_path / "1.pt"
    torch.save(TensorDataset(d["images"], d["magnitudes"], d["redshifts"]), path)
    part = load_partition(path)
    assert all(t.dtype == torch.float32 for t in part.tensors().values())
    name = str(dtype).replace("torch.", "")
    assert part.cast == (f"images {name}", f"magnitudes {name}")
    assert torch.equal(part.magnitudes, d["magnitudes"].float())


# --------------------------------------------------------------------------- rejections

def _bad(data, **changes):
    return {**{k: v[:10] for k, v in data.items()}, **changes}


def _expect(path: Path, *fragments: str) -> None:
    with pytest.raises(PartitionError) as info:
        load_partition(path)
    msg = str(info.value)
    assert str(path) in msg
    for frag in fragments:
        assert frag in msg, msg


def test_rejects_missing_file(tmp_path):
    _expect(tmp_path / "9.pt", "file not found")


def test_rejects_truncated_file(tmp_path, data):
    good = save_partition(tmp_path / "1.pt", _bad(data))
    cut = tmp_path / "2.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _expect(cut, "truncated or corrupt")
    empty = tmp_path / "3.pt"
    empty.write_bytes(b"")
    _expect(empty, "empty file")


def test_rejects_text_file(tmp_path):
    path = tmp_path / "1.pt"
    path.write_text("images,magnitudes,redshifts\n1,2,3\n")
    _expect(path, "not a torch.save file")


class _Exploit:
    """Unpickling this runs ``open(marker, "w").write(...)`` through builtins.exec."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("wrap", ["dict", "bare", "tensordataset"])
def test_rejects_malicious_pickle_without_running_it(tmp_path, data, wrap):
    marker = tmp_path / "marker.txt"
    exploit = _Exploit(marker)
    obj = {"dict": _bad(data, images=exploit), "bare": exploit,
           "tensordataset": TensorDataset(data["images"][:2], data["magnitudes"][:2], data["redshifts"][:2])}[wrap]
    if wrap == "tensordataset":
        obj.tensors = (exploit, *obj.tensors[1:])
    path = tmp_path / "1.pt"
    torch.save(obj, path)
    # control: an unsafe load of this very file does run the code, so the check below is meaningful
    control = tmp_path / "control.pt"
    shutil.copy(path, control)
    torch.load(control, weights_only=False)
    assert marker.exists()
    marker.unlink()
    _expect(path, "refused: it names the Python global 'exec'", "not on the allow-list", "nothing in the file was run")
    with pytest.raises(PartitionError) as info:
        load_partition(path)
    assert "weights_only=False" not in str(info.value)  # never advise the unsafe load
    assert not marker.exists()


def test_rejects_wrong_keys(tmp_path, data):
    d = _bad(data)
    path = tmp_path / "1.pt"
    torch.save({"imgs": d["images"], "magnitudes": d["magnitudes"], "redshifts": d["redshifts"]}, path)
    _expect(path, "wrong keys", "missing ['images']", "unexpected ['imgs']")
    torch.save(TensorDataset(d["images"], d["magnitudes"]), path)
    _expect(path, "holds 2 tensors, expected 3")
    torch.save([d["images"]], path)
    _expect(path, "got list")


def test_rejects_wrong_shapes(tmp_path, data):
    path = tmp_path / "1.pt"
    torch.save(_bad(data, images=torch.zeros(10, 5, 64, 64)), path)
    _expect(path, "images has shape (10, 5, 64, 64), expected (N, 5, 32, 32)")
    torch.save(_bad(data, magnitudes=torch.zeros(10, 4)), path)
    _expect(path, "magnitudes has shape (10, 4), expected (N, 5)")
    torch.save(_bad(data, redshifts=torch.zeros(10, 1)), path)
    _expect(path, "redshifts has shape (10, 1), expected (N)")


def test_rejects_dtypes_that_are_not_real_numbers(tmp_path, data):
    path = tmp_path / "1.pt"
    torch.save(_bad(data, images=data["images"][:10] > 0), path)
    _expect(path, "images has dtype torch.bool, which is not a real number type")
    torch.save(_bad(data, magnitudes=torch.zeros(10, 5, dtype=torch.complex64)), path)
    _expect(path, "magnitudes has dtype torch.complex64")


def test_rejects_mismatched_lengths(tmp_path, data):
    path = tmp_path / "1.pt"
    torch.save(_bad(data, magnitudes=data["magnitudes"][:9]), path)
    _expect(path, "mismatched lengths", "images has 10", "magnitudes has 9")


@pytest.mark.parametrize("key,value,word", [("images", float("nan"), "NaN"), ("images", float("inf"), "inf"),
                                            ("magnitudes", float("nan"), "NaN"),
                                            ("magnitudes", float("-inf"), "inf")])
def test_rejects_non_finite(tmp_path, data, key, value, word):
    d = {k: v[:10].clone() for k, v in data.items()}
    d[key].view(-1)[3] = value
    path = tmp_path / "1.pt"
    torch.save(d, path)
    _expect(path, f"{key} contains {word}")


def test_rejects_zero_samples(tmp_path, data):
    path = tmp_path / "1.pt"
    torch.save({k: v[:0] for k, v in data.items()}, path)
    _expect(path, "zero samples")


# --------------------------------------------------------------------------- names, sizes, splitter

def test_parse_size():
    assert parse_size("25MB") == 25 * 2**20
    assert parse_size("100MB") == parse_size("100MiB") == 100 * 2**20
    assert parse_size("1.5GB") == 3 * 2**29
    assert parse_size("512KB") == 512 * 1024
    assert parse_size("2048") == 2048
    assert parse_size("100MB") // SAMPLE_BYTES == 5110  # the reference's ~5113 samples per 100MB
    for bad in ["", "MB", "ten MB", "5XB", "-1MB"]:
        with pytest.raises(ValueError, match="bad size"):
            parse_size(bad)


def test_partition_names_sort_numerically():
    assert partition_index("data/12.pt") == 12
    with pytest.raises(ValueError):
        partition_index("data/a.pt")
    keys = ["p/10.pt", "p/2.pt", "p/1.pt", "p/manifest.json", "p/100.pt", "p/x1.pt"]
    assert sorted_partitions(keys) == ["p/1.pt", "p/2.pt", "p/10.pt", "p/100.pt"]


def test_split_by_size(tmp_path, data):
    paths = split(data, tmp_path / "out", partition_size=3 * SAMPLE_BYTES + 100)  # 3 samples each
    assert len(paths) == 200
    parts = [load_partition(p) for p in paths[:2] + paths[-1:]]
    assert [len(p) for p in parts] == [3, 3, 3]
    assert torch.equal(parts[1].images, data["images"][3:6])
    # a string size and a remainder: 600 = 7 * 82 + 26
    paths = split(data, tmp_path / "s", partition_size=f"{82 * SAMPLE_BYTES / 2**10}KB")
    sizes = [len(load_partition(p)) for p in paths]
    assert sizes == [82] * 7 + [26]
    # the file holds just its slice, not the whole source storage
    assert paths[0].stat().st_size < 82 * SAMPLE_BYTES * 1.05


def test_split_by_count_is_near_equal_and_numeric(tmp_path, data):
    paths = split(data, tmp_path / "out", partitions=12, fmt="tensordataset")
    assert [p.name for p in paths] == [f"{i}.pt" for i in range(1, 13)]
    assert list_partitions(tmp_path / "out") == paths  # 1..12, not 1, 10, 11, 12, 2
    parts = [load_partition(p) for p in paths]
    assert {len(p) for p in parts} == {50}
    assert torch.equal(torch.cat([p.redshifts for p in parts]), data["redshifts"])
    small = {k: v[:23] for k, v in data.items()}
    sizes = [len(load_partition(p)) for p in split(small, tmp_path / "five", partitions=5)]
    assert sizes == [5, 5, 5, 4, 4]
    # a smaller re-split leaves exactly its own files
    split(small, tmp_path / "out", partitions=3)
    assert [p.name for p in list_partitions(tmp_path / "out")] == ["1.pt", "2.pt", "3.pt"]


def test_split_argument_errors(tmp_path, data):
    small = {k: v[:4] for k, v in data.items()}
    with pytest.raises(ValueError, match="exactly one"):
        split(small, tmp_path, partitions=2, partition_size="1MB")
    with pytest.raises(ValueError, match="exactly one"):
        split(small, tmp_path)
    with pytest.raises(ValueError, match="partitions"):
        split(small, tmp_path, partitions=5)
    with pytest.raises(ValueError, match="partitions"):
        split(small, tmp_path, partitions=0)


def test_split_file_and_list_partitions(tmp_path, data):
    src = save_partition(tmp_path / "all.pt", data, fmt="tensordataset")
    paths = split_file(src, tmp_path / "parts", partitions=4)
    assert sum(len(load_partition(p)) for p in paths) == 600
    with pytest.raises(PartitionError, match="no <int>.pt"):
        list_partitions(_empty(tmp_path))
    with pytest.raises(PartitionError, match="not found"):
        list_partitions(tmp_path / "nope")


def _empty(tmp_path: Path) -> Path:
    d = tmp_path / "empty"
    d.mkdir()
    (d / "notes.txt").write_text("x")
    return d
