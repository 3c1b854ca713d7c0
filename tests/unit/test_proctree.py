"""emulator.proctree: a process tree's RSS from each process's own children lists, as psutil would sum it."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import pytest

from emulator import proctree

GRANDCHILD = "x = bytearray(96 * 2**20); x[::4096] = b'1' * len(x[::4096]); import time; time.sleep(30)"
CHILD = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {GRANDCHILD!r}]); time.sleep(30)"


@pytest.fixture()
def tree():
    """A child that started a grandchild holding 96 MiB."""
    process = subprocess.Popen([sys.executable, "-c", CHILD])
    deadline = time.time() + 20
    while sum(c.memory_info().rss for c in psutil.Process(process.pid).children(recursive=True)) < 96 * 2**20:
        assert time.time() < deadline, "the grandchild did not start"
        time.sleep(0.05)
    yield process
    for child in psutil.Process(process.pid).children(recursive=True):
        child.kill()
    process.kill()
    process.wait()


def test_descendants_rss_counts_grandchildren_as_psutil_does(tree):
    expected = sum(c.memory_info().rss for c in psutil.Process(tree.pid).children(recursive=True))
    measured = proctree.descendants_rss(tree.pid)
    assert measured >= 96 * 2**20
    assert abs(measured - expected) < 8 * 2**20  # the same processes (their RSS moves a little between reads)


def test_without_proc_children_lists_psutil_is_used(tree, monkeypatch):
    monkeypatch.setattr(proctree, "_PROC_CHILDREN", False)
    assert proctree.descendants_rss(tree.pid) >= 96 * 2**20


def test_a_process_that_is_gone_has_no_descendants():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    assert proctree.descendants_rss(process.pid) == 0
