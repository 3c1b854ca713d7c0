"""``torch.load`` that never runs pickled code, with one clear error per failure.

Every file this project reads (partitions, checkpoints) goes through
:func:`safe_load`: ``weights_only=True`` with an explicit allow-list of extra
globals. A refused file gets an error naming the global that was refused;
torch's own advice to retry with ``weights_only=False`` is never repeated.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

_GLOBAL = re.compile(r"GLOBAL (\S+)")


def refusal_reason(exc: pickle.UnpicklingError) -> str:
    """What the weights-only unpickler refused, in a few words (the global's name when there is one)."""
    text = str(exc)
    match = _GLOBAL.search(text)
    if match:
        return f"it names the Python global {match.group(1).rstrip('.,')!r}, which is not on the allow-list"
    detail = text.split("WeightsUnpickler error:")[-1].strip().splitlines()[0] if text.strip() else type(exc).__name__
    return detail.split(". Please")[0].split(" Please use")[0].strip()


def safe_load(path: Path, where: str, error: type[Exception], allow: Iterable[Any] = ()) -> Any:
    """``torch.load(path, weights_only=True)`` with ``allow`` added to the allow-list; failures raise ``error``.

    ``allow`` takes what ``torch.serialization.safe_globals`` takes: classes, or
    ``(object, "module.Name")`` pairs that resolve a name to an object of ours.
    """
    if not path.exists():
        raise error(f"{where}: file not found")
    if not path.is_file():
        raise error(f"{where}: not a regular file")
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        raise error(f"{where}: empty file")
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
        raise error(f"{where}: not a torch.save file (starts with {head!r})")
    try:
        with torch.serialization.safe_globals(list(allow)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise error(f"{where}: refused: {refusal_reason(exc)}; nothing in the file was run") from None
    except Exception as exc:  # zip/stream errors, EOF, unexpected pickle content
        first = (str(exc).strip().splitlines() or [""])[0]
        raise error(f"{where}: truncated or corrupt torch file ({type(exc).__name__}: {first})") from None
