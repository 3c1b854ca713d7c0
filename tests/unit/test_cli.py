"""The ``cosmicai`` command on bad input and on a small good path, run as subprocesses.

Every bad input must exit 2 with exactly one line on stderr naming the problem
(no traceback unless ``--debug``) and write nothing. The subprocesses of one
group run concurrently: each pays a torch import, and they are independent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from inference.data import load_partition
from inference.records import REFERENCE_KEYS

HANG_GUARD_S = 300  # only stops a hung command; not a speed requirement


@dataclass
class Result:
    args: list[str]
    cwd: Path
    returncode: int
    stdout: str
    stderr: str
    before: set[str]  # names in cwd before the command

    def written(self) -> set[str]:
        """Every path created under cwd by the command (relative, recursive)."""
        return {str(p.relative_to(self.cwd)) for p in self.cwd.rglob("*")} - self.before


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("COSMICAI_ENDPOINT", "AWS_ENDPOINT_URL", "COSMICAI_TARGET"):
        env.pop(name, None)
    env["PYTHONWARNINGS"] = "default"  # warnings must not be hidden from the one-line check
    return env


def run_many(cases: dict[str, tuple[Path, list[str]]]) -> dict[str, Result]:
    """Start every command at once (each in its own cwd), then collect them."""
    started = {}
    for name, (cwd, args) in cases.items():
        before = {str(p.relative_to(cwd)) for p in cwd.rglob("*")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "cosmicai.cli", *args],
            cwd=cwd,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started[name] = (proc, cwd, args, before)
    results = {}
    try:
        for name, (proc, cwd, args, before) in started.items():
            out, err = proc.communicate(timeout=HANG_GUARD_S)
            results[name] = Result(args, cwd, proc.returncode, out, err, before)
    finally:
        for proc, *_ in started.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


class Evil:
    """Unpickling this object opens (creates) ``path`` for writing."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def craft_malicious(path: Path, marker: Path) -> None:
    torch.save({"images": Evil(marker), "magnitudes": torch.zeros(1, 5), "redshifts": torch.zeros(1)}, path)


# --------------------------------------------------------------------------- bad input

MARKER = "PWNED_MARKER"

# name -> (args, words the one stderr line must contain)
BAD = {
    "missing-data": (["local", "--data", "missing.pt"], ["missing.pt"]),
    "text-file": (["local", "--data", "notes.txt", "--model", "tiny"], ["notes.txt"]),
    "malicious-pickle": (["local", "--data", "evil.pt", "--model", "tiny"], ["evil.pt"]),
    "batch-size-0": (["local", "--data", "notes.txt", "--batch-size", "0"], ["batch"]),
    "batch-size-negative": (["local", "--data", "notes.txt", "--batch-size", "-2"], ["batch", "-2"]),
    "batch-size-float": (["local", "--data", "notes.txt", "--batch-size", "1.5"], ["batch", "1.5"]),
    "unknown-model": (["local", "--data", "notes.txt", "--model", "nosuch"], ["nosuch"]),
    "run-missing-data": (["run", "--data", "missing.pt"], ["missing.pt"]),
    "run-unknown-model": (["run", "--model", "nosuch"], ["nosuch"]),
    "run-batch-size-0": (["run", "--batch-size", "0"], ["batch"]),
    # every check that can be made before start-up is made before it: nothing started, nothing written
    "out-is-a-file": (["run", "--model", "tiny", "--out", "notes.txt"], ["notes.txt", "a file"]),
    "out-under-a-file": (["run", "--model", "tiny", "--out", "notes.txt/run"], ["notes.txt", "is a file"]),
    "bucket-name": (["run", "--model", "tiny", "--bucket", "Bad_Bucket"], ["bucket name", "Bad_Bucket"]),
    "stack-name": (["run", "--model", "tiny", "--stack", "bad stack"], ["stack name", "bad stack"]),
    "run-id-outside": (["run", "--model", "tiny", "--run-id", "../../x"], ["run id", "../../x"]),
    "model-folder-missing": (["run", "--model-folder", "nowhere"], ["nowhere", "model.py"]),
    "model-and-model-folder": (["run", "--model", "tiny", "--model-folder", "gappy"], ["--model", "--model-folder"]),
    "partition-size": (["run", "--model", "tiny", "--partition-size", "10XB"], ["10XB"]),
    "payload-and-data": (["run", "--payload", "payload.json", "--data", "gappy"], ["--payload", "--data"]),
    "payload-in-process": (["run", "--payload", "payload.json"], ["--payload", "in-process"]),
    "payload-typo": (["run", "--payload", "typo.json"], ["modle", "model_key"]),
    "payload-bool": (["run", "--payload", "bool.json"], ["batch_size", "true"]),
    "data-folder-gaps-and-strays": (["run", "--model", "tiny", "--data", "gappy"], ["3", "notes.md", "--lenient-data"]),
    "local-precision-with-folder": (["local", "--data", "notes.txt", "--model-folder", "gappy", "--precision", "int8"], ["--precision", "--model-folder"]),
    **({} if torch.cuda.is_available() else {"device-cuda": (["run", "--model", "tiny", "--device", "cuda"], ["cuda"])}),
}
DEBUG = ["--debug", "local", "--data", "missing.pt"]
DEBUG_AFTER = ["local", "--data", "missing.pt", "--debug"]


def _prepare(cwd: Path) -> None:
    cwd.mkdir(parents=True)
    (cwd / "notes.txt").write_text("this is not a torch file\n")
    craft_malicious(cwd / "evil.pt", cwd / MARKER)
    gappy = cwd / "gappy"
    gappy.mkdir()
    for name in ("1.pt", "2.pt", "4.pt", "notes.md"):
        (gappy / name).write_bytes(b"")
    (cwd / "payload.json").write_text(json.dumps({"bucket": "cosmicai-data", "data_prefix": "data/x"}))
    (cwd / "typo.json").write_text(json.dumps({"bucket": "cosmicai-data", "modle_key": "tiny"}))
    (cwd / "bool.json").write_text(json.dumps({"bucket": "cosmicai-data", "batch_size": True}))


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory) -> dict[str, Result]:
    root = tmp_path_factory.mktemp("cli-bad")
    cases = {}
    for name, (args, _) in {**BAD, "debug": (DEBUG, []), "debug-after": (DEBUG_AFTER, [])}.items():
        _prepare(root / name)
        cases[name] = (root / name, args)
    return run_many(cases)


def test_malicious_file_is_really_malicious(tmp_path):
    """Control: an unsafe load of the crafted file does run its code (so the CLI check below means something)."""
    marker = tmp_path / "control-marker"
    craft_malicious(tmp_path / "evil.pt", marker)
    obj = torch.load(tmp_path / "evil.pt", weights_only=False)
    obj["images"].close()
    assert marker.exists()


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_exits_2_with_one_line(bad_runs, name):
    result = bad_runs[name]
    _, words = BAD[name]
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert lines[0].startswith("cosmicai: error:"), lines[0]
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_writes_nothing(bad_runs, name):
    result = bad_runs[name]
    assert result.written() == set()
    assert result.stdout == ""


def test_malicious_pickle_runs_no_code(bad_runs):
    result = bad_runs["malicious-pickle"]
    assert not (result.cwd / MARKER).exists()
    assert "refused" in result.stderr


@pytest.mark.parametrize("name", ["debug", "debug-after"])
def test_debug_shows_the_traceback_wherever_it_is_on_the_line(bad_runs, name):
    result = bad_runs[name]
    assert result.returncode != 0
    assert "Traceback" in result.stderr
    assert "PartitionError" in result.stderr
    assert "missing.pt" in result.stderr


def test_every_option_of_every_command_says_what_it_does():
    import argparse

    from cosmicai.cli import build_parser

    silent = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, f"{path} {name}")
            elif not action.help and action.dest != "help":
                silent.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), "cosmicai")
    assert not silent


def test_version_and_a_bare_command_show_what_to_type():
    version = subprocess.run([sys.executable, "-m", "cosmicai.cli", "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("cosmicai ")
    bare = subprocess.run([sys.executable, "-m", "cosmicai.cli"], capture_output=True, text=True, timeout=60)
    assert bare.returncode == 2 and "usage: cosmicai" in bare.stderr and "run the whole pipeline" in bare.stderr
    nested = subprocess.run([sys.executable, "-m", "cosmicai.cli", "data"], capture_output=True, text=True, timeout=60)
    assert nested.returncode == 2 and "usage: cosmicai data" in nested.stderr and "data_command" not in nested.stderr


def test_an_unknown_aws_profile_is_one_line(tmp_path):
    env = {**_env(), "AWS_PROFILE": "no-such-profile-here", "AWS_CONFIG_FILE": str(tmp_path / "config"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "creds")}
    done = subprocess.run([sys.executable, "-m", "cosmicai.cli", "run", "--target", "aws", "--model", "tiny"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1 and "no-such-profile-here" in done.stderr, done.stderr
    assert not (tmp_path / "cosmicai-out").exists()


# --------------------------------------------------------------------------- good path


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("cli-good")
    result = run_many({"make": (cwd, ["data", "make", "--samples", "300", "--out", "p.pt"])})["make"]
    assert result.returncode == 0, result.stderr
    assert (cwd / "p.pt").is_file()
    return cwd


@pytest.fixture(scope="module")
def good_runs(made, tmp_path_factory) -> dict[str, Result]:
    dirs = {}
    for name in ("local-json", "split", "split-too-many"):
        dirs[name] = tmp_path_factory.mktemp(f"cli-{name}")
        shutil.copy(made / "p.pt", dirs[name] / "p.pt")
    return run_many(
        {
            "local-json": (dirs["local-json"], ["local", "--data", "p.pt", "--json", "--model", "tiny", "--batch-size", "128"]),
            "split": (dirs["split"], ["data", "split", "p.pt", "--partitions", "3", "--out", "parts"]),
            "split-too-many": (dirs["split-too-many"], ["data", "split", "p.pt", "--partitions", "1000", "--out", "parts"]),
        }
    )


def test_data_make(made):
    assert len(load_partition(made / "p.pt")) == 300


def test_local_json_prints_only_the_record(good_runs):
    result = good_runs["local-json"]
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)  # the whole of stdout is one JSON document
    assert isinstance(record, dict)
    assert record["num_batches"] == 3
    assert record["batch_size"] == 128
    assert record["num_samples"] == 300
    assert record["status"] == "succeeded"
    missing = [key for key in REFERENCE_KEYS if key not in record]
    assert not missing


def test_data_split(good_runs):
    result = good_runs["split"]
    assert result.returncode == 0, result.stderr
    parts = result.cwd / "parts"
    assert sorted(p.name for p in parts.iterdir()) == ["1.pt", "2.pt", "3.pt"]
    assert [len(load_partition(parts / f"{i}.pt")) for i in (1, 2, 3)] == [100, 100, 100]


def test_failed_split_writes_nothing(good_runs):
    result = good_runs["split-too-many"]
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "1000" in lines[0] and "300" in lines[0], result.stderr
    parts = result.cwd / "parts"
    if parts.exists():
        assert not list(parts.glob("*.pt"))
    assert result.written() == set()


def test_the_console_script_exits_with_mains_code_after_what_an_exit_owes(tmp_path):
    """``cosmicai.cli.entry`` skips the interpreter's teardown, not its duties: non-daemon threads joined, atexit
    handlers run, buffered output flushed, main's exit code kept."""
    script = (
        "import atexit, sys, threading, time\n"
        "import cosmicai.cli as cli\n"
        f"out = {str(tmp_path)!r}\n"
        "def late():\n"
        "    time.sleep(0.2)\n"
        "    open(out + '/thread', 'w').write('joined')\n"
        "threading.Thread(target=late).start()\n"
        "atexit.register(lambda: open(out + '/atexit', 'w').write('ran'))\n"
        "cli.main = lambda: (sys.stdout.write('buffered, no newline'), 3)[1]\n"
        "cli.entry()\n"
        "print('not reached')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 3 and done.stdout == "buffered, no newline", done.stderr[-2000:]
    assert (tmp_path / "thread").read_text() == "joined" and (tmp_path / "atexit").read_text() == "ran"
