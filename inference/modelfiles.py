"""A model folder's files, digest and manifest, with no torch import (the host uploads folders with these).

Artifacts: ``cosmicai-folder.json`` (written beside the files when a folder is
uploaded: its name, content digest and file list). Loading and running a
folder is ``inference.modelfolder``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath
from typing import Any

from inference.errors import CosmicAIError

MODULE = "model.py"
MANIFEST = "cosmicai-folder.json"
_SKIP = ("__pycache__", ".git", ".ipynb_checkpoints")


class ModelFolderError(CosmicAIError):
    """A model folder is malformed, or its load/predict failed or returned the wrong outputs."""


def folder_files(folder: Path) -> list[str]:
    """The folder's files as relative POSIX paths, sorted (caches and VCS folders left out)."""
    if not folder.is_dir():
        raise ModelFolderError(f"model folder {folder}: not a folder")
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and not any(part in _SKIP for part in p.relative_to(folder).parts) and p.name != MANIFEST and p.suffix != ".pyc"
    )


def folder_digest(folder: Path, files: list[str] | None = None) -> str:
    """SHA-256 over names and bytes: a warm worker reloads only when this changes."""
    digest = hashlib.sha256()
    for name in files if files is not None else folder_files(folder):
        digest.update(name.encode() + b"\0")
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()[:16]


def manifest(folder: Path, name: str) -> dict[str, Any]:
    files = folder_files(folder)
    if MODULE not in files:
        raise ModelFolderError(f"model folder {name!r} ({folder}): no {MODULE} in it")
    return {"name": name, "digest": folder_digest(folder, files), "module": MODULE, "files": files}


def safe_relative(name: str, where: str) -> str:
    """A manifest entry usable as a local path: relative, no '..', no absolute parts."""
    path = PurePosixPath(name)
    if path.is_absolute() or any(part in ("..", "") for part in path.parts) or "\\" in name:
        raise ModelFolderError(f"model folder {where}: unsafe file name {name!r} in {MANIFEST}")
    return path.as_posix()


def parse_manifest(body: bytes, where: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
        files = [safe_relative(str(f), where) for f in data["files"]]
        return {"name": str(data["name"]), "digest": str(data["digest"]), "files": files}
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFolderError(f"model folder {where}: {MANIFEST} is not valid ({exc})") from None
