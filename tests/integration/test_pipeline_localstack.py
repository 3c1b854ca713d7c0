"""The functional pipeline tests (tests/functional/test_pipeline.py), re-run on LocalStack.

Not a copy: the same test functions, collected here too; this folder's conftest.py gives them
the localstack ``target`` and its ``deployment``. Tests marked ``embedded_only`` are skipped.
Without Docker or testcontainers the whole module is skipped, with one reason.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

from cosmicai.doctor import docker_daemon

_daemon = docker_daemon(timeout_s=3.0)
if not _daemon.ok:
    pytest.skip(f"LocalStack integration tests need Docker: {_daemon.detail}; see README 'With Docker'", allow_module_level=True)
pytest.importorskip("testcontainers", reason="LocalStack integration tests need testcontainers: pip install -e '.[docker]'")

FUNCTIONAL = Path(__file__).resolve().parents[1] / "functional"
if str(FUNCTIONAL) not in sys.path:  # where pytest's default (prepend) import mode puts it too
    sys.path.insert(0, str(FUNCTIONAL))
_pipeline = importlib.import_module("test_pipeline")

globals().update({name: value for name, value in vars(_pipeline).items() if name.startswith("test_") and callable(value)})
