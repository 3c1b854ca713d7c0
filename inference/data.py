"""Partitions: the on-disk format, safe loading, a synthetic SDSS-like generator and the splitter.

Artifacts written (all by :func:`save_partition`, atomically):

* ``<out_dir>/1.pt`` .. ``<out_dir>/N.pt`` -- one file per rank, named so that
  numeric order is rank order (``sorted_partitions``; never lexicographic).

Partition format: a ``torch.save`` file holding the three tensors ``images``
[N,5,32,32], ``magnitudes`` [N,5] and ``redshifts`` [N], either

* ``fmt="tensordataset"`` (default): ``torch.utils.data.TensorDataset(images,
  magnitudes, redshifts)`` -- the reference's layout (its ``split_data.py``):
  images float32, **magnitudes float64** (20,480 + 40 = 20,520 bytes per sample),
  redshifts float32; these files load in the reference's own loader; or
* ``fmt="dict"``: ``{"images": ..., "magnitudes": ..., "redshifts": ...}`` with the
  same dtypes.

Loading (:func:`load_partition`) accepts either layout with any real floating or
integer dtype and casts to float32 at this edge (``Partition.cast`` names what
was cast, for the rank's log); it refuses what cannot be converted: wrong keys,
ranks or shapes, bool or complex tensors, NaN/Inf in the inputs. Loading is
always ``torch.load(..., weights_only=True)`` with TensorDataset allow-listed, so
a partition never runs pickled code.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import TensorDataset

from inference.errors import PartitionError
from inference.safeload import safe_load
from inference.naming import SAMPLE_BYTES, parse_size, partition_index, sorted_partitions  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

BANDS = ("u", "g", "r", "i", "z")
KEYS = ("images", "magnitudes", "redshifts")
_IMAGE_SHAPE = (5, 32, 32)
_ZERO_POINT = 22.5  # magnitude of 1 nanomaggy (SDSS convention)
_CHUNK = 4096  # galaxies rendered per step: bounds temporary memory


# --------------------------------------------------------------------------- generator

def _draw_redshift(n: int, g: torch.Generator, z_min: float = 0.01, z_max: float = 0.40) -> torch.Tensor:
    """Gamma(k=3, theta=0.05) redshifts (mode 0.1, like SDSS main galaxies), truncated to [z_min, z_max]."""
    def gamma3(m: int) -> torch.Tensor:  # sum of 3 exponentials, via the seeded generator
        u = torch.rand(m, 3, generator=g, dtype=torch.float64).clamp_min(1e-12)
        return -0.05 * u.log().sum(dim=1)

    z = gamma3(n)
    for _ in range(20):  # redraw the few out of range; ~1.5% then ~0.02% ...
        bad = (z < z_min) | (z > z_max)
        if not bad.any():
            break
        z[bad] = gamma3(int(bad.sum()))
    return z.clamp(z_min, z_max)


def _randn(n: int, g: torch.Generator) -> torch.Tensor:
    return torch.randn(n, generator=g, dtype=torch.float64)


def generate(n_samples: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Deterministic synthetic SDSS-like galaxies; same seed => same bytes.

    Each galaxy: redshift z; type t in [0,1] (blue disk .. red elliptical);
    absolute magnitude -> apparent r magnitude through a low-z luminosity
    distance; colours u-g, g-r, r-i, i-z that redden with z and t; a Sersic
    profile (index grows with t) whose half-light radius in pixels shrinks
    with angular-diameter distance, broadened in quadrature by a ~1 px seeing
    term; random axis ratio, orientation and sub-pixel centre; Gaussian sky
    noise per band. Fluxes are in nanomaggies (zero point 22.5), images sum
    to the band flux plus noise, and magnitudes are -2.5 log10(flux) + 22.5
    plus small photometric noise. Dtypes are the reference's on-disk layout:
    images float32 (n,5,32,32), magnitudes float64 (n,5), redshifts float32 (n,).
    """
    if n_samples < 0:
        raise ValueError(f"n_samples must be >= 0, got {n_samples}")
    n = int(n_samples)
    g = torch.Generator().manual_seed(int(seed))
    z = _draw_redshift(n, g)
    t = torch.rand(n, generator=g, dtype=torch.float64)
    # brightness: M_r ~ -21, ellipticals brighter; d_L (Mpc) for H0=70, q0=-0.55 to second order in z
    abs_mag = (-20.8 - 0.6 * t + 0.7 * _randn(n, g)).clamp(-23.5, -18.5)
    d_l = 4282.7 * z * (1 + 0.775 * z)
    m_r = abs_mag + 5 * torch.log10(d_l) + 25
    # colours: redder with z (band shifting) and with type; small intrinsic scatter
    slopes = torch.tensor([[1.0, 0.8, 1.5], [0.4, 0.4, 3.0], [0.25, 0.15, 1.0], [0.15, 0.1, 0.6]], dtype=torch.float64)
    colours = slopes[:, 0] + slopes[:, 1] * t[:, None] + slopes[:, 2] * z[:, None]  # (n,4): u-g g-r r-i i-z
    colours = colours + 0.05 * torch.randn(n, 4, generator=g, dtype=torch.float64)
    ug, gr, ri, iz = colours.unbind(1)
    mags = torch.stack([m_r + gr + ug, m_r + gr, m_r, m_r - ri, m_r - ri - iz], dim=1)  # (n,5) true
    flux = 10 ** (-0.4 * (mags - _ZERO_POINT))  # (n,5) nanomaggies
    # shape: half-light radius kpc -> arcsec via D_A -> pixels (0.396"/px), plus seeing in quadrature
    r_kpc = 3.5 * (1 + 0.3 * t) * torch.exp(0.3 * _randn(n, g))
    d_a = d_l / (1 + z) ** 2
    r_pix = r_kpc / (d_a * 1000) * 206265 / 0.396
    r_e = (r_pix.square() + 1.0).sqrt().clamp(0.6, 10.0)
    sersic = (0.8 + 2.7 * t + 0.3 * _randn(n, g)).clamp(0.5, 4.0)
    q = 0.4 + 0.6 * torch.rand(n, generator=g, dtype=torch.float64)
    theta = math.pi * torch.rand(n, generator=g, dtype=torch.float64)
    centre = 15.5 + (torch.rand(n, 2, generator=g, dtype=torch.float64) - 0.5)
    sky = torch.tensor([0.04, 0.01, 0.015, 0.02, 0.06], dtype=torch.float64)  # nMgy / pixel
    mag_err = torch.tensor([0.05, 0.02, 0.02, 0.02, 0.03], dtype=torch.float64)
    magnitudes = mags + mag_err * torch.randn(n, 5, generator=g, dtype=torch.float64)  # float64, as the reference stores them

    images = torch.empty(n, *_IMAGE_SHAPE, dtype=torch.float32)
    coords = torch.arange(32, dtype=torch.float32)
    sky_f = sky.float()[None, :, None, None]
    for a in range(0, n, _CHUNK):
        s = slice(a, min(a + _CHUNK, n))
        p = {k: v[s].float()[:, None, None] for k, v in
             (("cx", centre[:, 0]), ("cy", centre[:, 1]), ("th", theta), ("q", q), ("re", r_e), ("k", sersic))}
        dx = coords[None, None, :] - p["cx"]  # (c,1,32)
        dy = coords[None, :, None] - p["cy"]  # (c,32,1)
        cos, sin = p["th"].cos(), p["th"].sin()
        u = dx * cos + dy * sin  # (c,32,32) along the major axis
        v = (dy * cos - dx * sin) / p["q"]  # (c,32,32) along the minor axis, stretched
        r = (u.square() + v.square()).sqrt() / p["re"]
        b_n = 2 * p["k"] - 1 / 3 + 0.009876 / p["k"]
        prof = torch.exp(-b_n * r.pow(1 / p["k"]))  # (c,32,32) Sersic, centre = 1
        prof = prof / prof.sum(dim=(1, 2), keepdim=True)  # unit flux within the cutout
        out = images[s]
        torch.randn(out.shape, generator=g, out=out)  # (c,5,32,32) sky noise, unit sigma
        out.mul_(sky_f).addcmul_(flux[s].float()[:, :, None, None], prof[:, None])
    return {"images": images, "magnitudes": magnitudes, "redshifts": z.float()}


# --------------------------------------------------------------------------- format, load, save

@dataclass
class Partition:
    """One loaded, validated partition, every tensor float32."""

    images: torch.Tensor  # float32 (N,5,32,32)
    magnitudes: torch.Tensor  # float32 (N,5)
    redshifts: torch.Tensor  # float32 (N,)
    path: Path | None = None
    cast: tuple[str, ...] = ()  # what was cast to float32 on load, e.g. ("magnitudes float64",)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def nbytes(self) -> int:
        """Size in the reference's accounting: samples x SAMPLE_BYTES."""
        return len(self) * SAMPLE_BYTES

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"images": self.images, "magnitudes": self.magnitudes, "redshifts": self.redshifts}


ON_DISK_DTYPES = {"images": torch.float32, "magnitudes": torch.float64, "redshifts": torch.float32}  # the reference's layout


def _validate(obj: Any, where: str) -> dict[str, torch.Tensor]:
    """The three named tensors of a dict or TensorDataset (dtypes as found), or PartitionError saying what is wrong."""
    if isinstance(obj, TensorDataset):
        if len(obj.tensors) != 3:
            raise PartitionError(f"{where}: TensorDataset holds {len(obj.tensors)} tensors, expected 3 "
                                 "(images, magnitudes, redshifts)")
        obj = dict(zip(KEYS, obj.tensors))
    elif isinstance(obj, Partition):
        obj = obj.tensors()
    elif not isinstance(obj, Mapping):
        raise PartitionError(f"{where}: expected a dict of {', '.join(KEYS)} or a TensorDataset, "
                             f"got {type(obj).__name__}")
    missing = [k for k in KEYS if k not in obj]
    extra = sorted(str(k) for k in obj if k not in KEYS)
    if missing or extra:
        raise PartitionError(f"{where}: wrong keys: expected {list(KEYS)}, missing {missing}, unexpected {extra}")
    n = None
    for key, tail in zip(KEYS, (_IMAGE_SHAPE, (5,), ())):
        x = obj[key]
        if not isinstance(x, torch.Tensor):
            raise PartitionError(f"{where}: {key} is a {type(x).__name__}, expected a tensor")
        if x.dim() != 1 + len(tail) or tuple(x.shape[1:]) != tail:
            want = "(N" + "".join(f", {d}" for d in tail) + ")"
            raise PartitionError(f"{where}: {key} has shape {tuple(x.shape)}, expected {want}")
        if x.dtype == torch.bool or x.is_complex():
            raise PartitionError(f"{where}: {key} has dtype {x.dtype}, which is not a real number type (float32 expected)")
        if n is not None and x.shape[0] != n:
            raise PartitionError(f"{where}: mismatched lengths: images has {n} samples, {key} has {x.shape[0]}")
        n = x.shape[0]
    if n == 0:
        raise PartitionError(f"{where}: zero samples")
    for key in ("images", "magnitudes"):
        bad = ~torch.isfinite(obj[key])
        if bad.any():
            kinds = [k for k, m in (("NaN", obj[key].isnan()), ("inf", obj[key].isinf())) if m.any()]
            raise PartitionError(f"{where}: {key} contains {'/'.join(kinds)} ({int(bad.sum())} values)")
    return {k: obj[k] for k in KEYS}


def load_partition(path: str | os.PathLike) -> Partition:
    """Load and validate one partition file (either layout, any real dtype), cast to float32; never runs pickled code."""
    p = Path(path)
    where = f"partition {p}"
    t = _validate(safe_load(p, where, PartitionError, allow=[TensorDataset]), where)
    cast = tuple(f"{k} {v.dtype}".replace("torch.", "") for k, v in t.items() if v.dtype != torch.float32)
    t = {k: v.float() for k, v in t.items()}
    return Partition(t["images"], t["magnitudes"], t["redshifts"], p, cast)


def save_partition(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor] | Partition,
                   fmt: str = "tensordataset") -> Path:
    """Validate and write one partition atomically (temp file in the same folder + os.replace), in the reference's dtypes.

    ``fmt`` "tensordataset" (default, the reference's layout) or "dict". Tensors
    are cloned first: ``torch.save`` of a slice would write the whole underlying storage.
    """
    p = Path(path)
    t = _validate(tensors, f"partition {p}")
    t = {k: v.detach().cpu().to(ON_DISK_DTYPES[k]).contiguous().clone() for k, v in t.items()}
    if fmt == "dict":
        obj: Any = t
    elif fmt == "tensordataset":
        obj = TensorDataset(*(t[k] for k in KEYS))
    else:
        raise ValueError(f"unknown partition format {fmt!r}; valid: {', '.join(FORMATS)}")
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600: give the file the user's umask, as open() would
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


FORMATS = ("tensordataset", "dict")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------- names and sizes

def list_partitions(folder: str | os.PathLike) -> list[Path]:
    """The ``<int>.pt`` files in ``folder``, numeric order; PartitionError if there are none."""
    d = Path(folder)
    if not d.is_dir():
        raise PartitionError(f"partition folder {d}: not found")
    found = sorted_partitions(p for p in d.iterdir() if p.is_file())
    if not found:
        raise PartitionError(f"partition folder {d}: no <int>.pt partition files")
    return found


# --------------------------------------------------------------------------- splitter

def _bounds(n: int, partition_size: int | str | None, partitions: int | None) -> list[tuple[int, int]]:
    if (partition_size is None) == (partitions is None):
        raise ValueError("give exactly one of partition_size or partitions")
    if partition_size is not None:
        size = parse_size(partition_size)
        if size <= 0:
            raise ValueError(f"partition_size must be > 0, got {partition_size!r}")
        per = max(1, size // SAMPLE_BYTES)
        return [(a, min(a + per, n)) for a in range(0, n, per)]
    if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
        raise ValueError(f"partitions must be an int >= 1, got {partitions!r}")
    if partitions > n:
        raise ValueError(f"partitions ({partitions}) > samples ({n}): some partition would be empty")
    base, extra = divmod(n, partitions)
    out, a = [], 0
    for i in range(partitions):
        b = a + base + (1 if i < extra else 0)
        out.append((a, b))
        a = b
    return out


def split(tensors_or_partition: Mapping[str, torch.Tensor] | Partition, out_dir: str | os.PathLike, *,
          partition_size: int | str | None = None, partitions: int | None = None, fmt: str = "tensordataset") -> list[Path]:
    """Write contiguous partitions ``1.pt`` .. ``N.pt`` into ``out_dir``; return them in numeric order.

    By size: samples per partition = max(1, size // SAMPLE_BYTES), the last
    one may be smaller. By count: near-equal blocks (sizes differ by <= 1).
    Other ``<int>.pt`` files already in ``out_dir`` (e.g. from an earlier,
    larger split) are deleted so that the folder holds exactly this split.
    """
    t = _validate(tensors_or_partition, "split input")
    n = int(t["images"].shape[0])
    bounds = _bounds(n, partition_size, partitions)
    if fmt not in FORMATS:
        raise ValueError(f"unknown partition format {fmt!r}; valid: {', '.join(FORMATS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [save_partition(out / f"{i}.pt", {k: v[a:b] for k, v in t.items()}, fmt=fmt)
             for i, (a, b) in enumerate(bounds, start=1)]
    written = {p.name for p in paths}
    for stale in sorted_partitions(p for p in out.iterdir() if p.is_file() and p.name not in written):
        log.warning("removing stale partition %s", stale)
        stale.unlink()
    log.info("split %d samples into %d partitions in %s", n, len(paths), out)
    return paths


def split_file(path: str | os.PathLike, out_dir: str | os.PathLike, **kw: Any) -> list[Path]:
    """:func:`split` of one partition file (loaded safely with :func:`load_partition`)."""
    return split(load_partition(path), out_dir, **kw)
