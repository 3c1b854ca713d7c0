"""Unit tests of the zip functions' packaging (``cosmicai.deploy.package_handlers``): vendored modules ship compiled
for the runtime that is this interpreter (unchecked-hash pycs, PEP 552), never for another, and the zip is the same
bytes however often and wherever in a process it is built (its CodeSha256 decides whether a deploy publishes)."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

from cosmicai.deploy import HOST_RUNTIME, package_handlers

ROOT = Path(__file__).resolve().parents[2]
TAG = sys.implementation.cache_tag


def _vendor(tmp_path: Path) -> Path:
    folder = tmp_path / "vendor"
    (folder / "pkg").mkdir(parents=True)
    (folder / "pkg" / "__init__.py").write_text("from pkg.core import VALUE\n")
    (folder / "pkg" / "core.py").write_text("VALUE = {'a': [1, 2, 3], 'name': 'core'}\n\ndef twice(x):\n    return 2 * x\n")
    (folder / "single.py").write_text("import json\nDUMPED = json.dumps({'k': 'v'})\n")
    (folder / "broken.py").write_text("def broken(:\n")  # not compilable: shipped as source only
    (folder / ".complete").write_text("pkg\n")
    return folder


def _names(code: bytes) -> list[str]:
    return zipfile.ZipFile(io.BytesIO(code)).namelist()


def test_vendored_modules_ship_compiled_for_this_runtime_only(tmp_path):
    vendor = _vendor(tmp_path)
    compiled = package_handlers(vendor_dir=vendor, runtime=HOST_RUNTIME)
    pycs = sorted(n for n in _names(compiled) if n.endswith(".pyc"))
    assert pycs == [f"__pycache__/single.{TAG}.pyc", f"pkg/__pycache__/__init__.{TAG}.pyc", f"pkg/__pycache__/core.{TAG}.pyc"]
    archive = zipfile.ZipFile(io.BytesIO(compiled))
    for name in pycs:
        flags = int.from_bytes(archive.read(name)[4:8], "little")
        assert flags == 0b01, f"{name}: not an unchecked-hash pyc (flags {flags:#b})"  # valid whatever the files' times
    assert "broken.py" in _names(compiled) and "inference/handlers.py" in _names(compiled)
    for other in ("python3.99", None):
        assert not [n for n in _names(package_handlers(vendor_dir=vendor, runtime=other)) if n.endswith(".pyc")]


def test_the_compiled_zip_imports_from_its_bytecode(tmp_path):
    """Unpacked (as Lambda unpacks it: new file times) and imported in a fresh interpreter, the vendored modules
    load from the shipped pycs: here the sources are emptied after unpacking, and the values are still there."""
    (tmp_path / "task").mkdir()
    zipfile.ZipFile(io.BytesIO(package_handlers(vendor_dir=_vendor(tmp_path), runtime=HOST_RUNTIME))).extractall(tmp_path / "task")
    for source in ("pkg/__init__.py", "pkg/core.py", "single.py"):
        (tmp_path / "task" / source).write_text("")
    done = subprocess.run([sys.executable, "-I", "-S", "-c", "import sys; sys.path.insert(0, sys.argv[1]); import pkg, single; "
                           "print(pkg.VALUE['name'], single.DUMPED)", str(tmp_path / "task")], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.split() == ["core", '{"k":', '"v"}'], done.stderr


def test_the_zip_is_the_same_bytes_from_any_process(tmp_path):
    """Built from scratch twice, in processes whose imports differ (marshal's output follows its process's state)."""
    vendor = _vendor(tmp_path)
    script = (
        "import sys, hashlib\n"
        "if sys.argv[2] == 'busy':\n"
        "    import json, typing, pydantic, boto3\n"
        "from pathlib import Path\n"
        "from cosmicai.deploy import HOST_RUNTIME, package_handlers\n"
        "vendor = Path(sys.argv[1])\n"
        "for cached in vendor.parent.glob(vendor.name + '*.zip'):\n"
        "    cached.unlink()\n"
        "print(hashlib.sha256(package_handlers(vendor_dir=vendor, runtime=HOST_RUNTIME)).hexdigest())\n"
    )
    digests = [subprocess.run([sys.executable, "-c", script, str(vendor), state], capture_output=True, text=True, cwd=ROOT, check=True).stdout
               for state in ("quiet", "busy")]
    assert digests[0] == digests[1] and len(digests[0].strip()) == 64


def test_a_compile_that_gives_nothing_is_said_and_not_kept(tmp_path, caplog):
    import logging

    folder = tmp_path / "vendor"
    folder.mkdir()
    (folder / "broken.py").write_text("def broken(:\n")
    (folder / ".complete").write_text("x\n")
    with caplog.at_level(logging.WARNING, logger="cosmicai.deploy"):
        code = package_handlers(vendor_dir=folder, runtime=HOST_RUNTIME)
    assert "broken.py" in _names(code) and not [n for n in _names(code) if n.endswith(".pyc")]
    assert any("broken.py" in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
    assert not list(tmp_path.glob("vendor*.zip"))  # tried again at the next deploy, not cached without bytecode
