"""A process tree's memory, read from ``/proc``: what the worker environments' memory polls need.

``psutil.Process.children`` finds children by reading the parent of every
process on the machine; the environments poll at every invocation of every
worker, in the emulator's busiest process, so here each process's own
``/proc/<pid>/task/<tid>/children`` lists are followed instead (Linux with
``CONFIG_PROC_CHILDREN``; psutil elsewhere).
"""

from __future__ import annotations

import contextlib
import os

import psutil

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
_PROC_CHILDREN = os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")  # Linux with CONFIG_PROC_CHILDREN


def _children(pid: int) -> list[int]:
    """The child processes of ``pid``, from ``/proc/<pid>/task/*/children``."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found: list[int] = []
    for tid in tasks:
        with contextlib.suppress(OSError, ValueError):
            with open(f"/proc/{pid}/task/{tid}/children") as handle:
                found += [int(child) for child in handle.read().split()]
    return found


def descendants_rss(pid: int) -> int:
    """The summed RSS of every process below ``pid`` (0 when it has none or is gone)."""
    if not _PROC_CHILDREN:
        return sum(child.memory_info().rss for child in psutil.Process(pid).children(recursive=True))
    total, todo = 0, _children(pid)
    while todo:
        child = todo.pop()
        try:
            with open(f"/proc/{child}/statm") as statm:
                total += int(statm.read().split()[1]) * _PAGE_BYTES
        except (OSError, ValueError, IndexError):  # it ended meanwhile
            continue
        todo += _children(child)
    return total
