"""Names, with no torch import: partitions and sizes (the small zip Lambdas use these), and the built-in models.

Partition files are named ``<int>.pt`` so that numeric order is rank order:
1, 2, ..., 10, 100 -- never lexicographic. The built-in models' names are
here so that a command that only names a model need not import torch.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from typing import TypeVar

log = logging.getLogger(__name__)

SAMPLE_BYTES = 20_520  # one sample as the reference reports it (image memory = batch_size * 20,520 B)
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(i?)(b?)\s*$", re.IGNORECASE)
_NAME = re.compile(r"^(\d+)\.pt$")
T = TypeVar("T")


def parse_size(text: str | int) -> int:
    """Bytes in a size like "25MB", "1.5GB", "512KB", "100MiB" or "1000".

    Binary units throughout: KB = KiB = 2**10, MB = MiB = 2**20, GB = 2**30,
    to match the reference, whose "100MB" partition held ~5113 samples
    (100 MiB / 20,520 B = 5110; 100 * 10**6 would give 4873).
    """
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"size must be >= 0, got {text}")
        return text
    m = _SIZE.match(str(text))
    if not m or (m.group(3) and not m.group(2)):
        raise ValueError(f"bad size {text!r}: expected e.g. '25MB', '1.5GB', '512KB', '100MiB'")
    power = " KMGT".index(m.group(2).upper() or " ")
    return int(float(m.group(1)) * 2 ** (10 * power))


def partition_index(name: str | os.PathLike) -> int:
    """The integer stem of ``<int>.pt`` (a path or S3 key; only the last component counts); else ValueError."""
    base = str(name).replace("\\", "/").rsplit("/", 1)[-1]
    m = _NAME.match(base)
    if not m:
        raise ValueError(f"not a partition name (<int>.pt): {str(name)!r}")
    return int(m.group(1))


def sorted_partitions(paths_or_keys: Iterable[T]) -> list[T]:
    """Items named ``<int>.pt`` in numeric order (1, 2, ..., 10); other names are ignored."""
    keyed = []
    for item in paths_or_keys:
        try:
            keyed.append((partition_index(item), item))  # type: ignore[arg-type]
        except ValueError:
            log.debug("ignoring non-partition name %s", item)
    return [item for _, item in sorted(keyed, key=lambda kv: kv[0])]


BUILTIN_MODELS = ("astromae", "tiny")  # inference.model.CONFIGS has one config for each
ALIASES = {"full": "astromae"}  # earlier name of the default model
DEFAULT_MODEL = "astromae"


def canonical_name(name: str) -> str:
    """A built-in model's name with aliases resolved (``full`` -> ``astromae``)."""
    return ALIASES.get(name, name)


def is_builtin(name: str) -> bool:
    return canonical_name(name) in BUILTIN_MODELS


def builtin_names() -> str:
    """The valid built-in names, for error messages."""
    return ", ".join([*BUILTIN_MODELS, *(f"{a} (= {t})" for a, t in ALIASES.items())])
