"""What the server processes cost, read from /proc (Linux only).

CPU is each thread's time on a CPU from ``/proc/<pid>/task/<tid>/schedstat``
(nanoseconds; it counts user and system time alike, so it is ``utime + stime``
without the 10 ms tick granularity of ``/proc/<pid>/stat``, which is the
fallback), summed over a process and all its descendants, so that nginx's
master and worker both count. Memory is ``VmRSS`` / ``VmHWM`` from
``/proc/<pid>/status`` in KiB, summed the same way.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

__all__ = ["ProcessTree", "client_cpu_seconds"]

_TICKS = os.sysconf("SC_CLK_TCK")
_PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces.
    return raw[raw.rindex(")") + 2 :].split()


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and int(fields[1]) == pid:
            kids.append(int(entry.name))
    return kids


def _cpu_seconds(pid: int) -> float:
    try:
        tasks = list((_PROC / str(pid) / "task").iterdir())
        return sum(int((t / "schedstat").read_text().split()[0]) for t in tasks) / 1e9
    except (OSError, ValueError, IndexError):
        fields = _stat_fields(pid)
        if fields is None:
            return 0.0
        # fields[0] is field 3 (state): utime is field 14, stime field 15.
        return (int(fields[11]) + int(fields[12])) / _TICKS


def _status_kib(pid: int, key: str) -> int:
    try:
        text = (_PROC / str(pid) / "status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return 0


class ProcessTree:
    """Server processes and their descendants, rescanned on every reading.

    Several roots make one server (tornado_lp and the redis-server it uses).
    """

    def __init__(self, root: int, *more: int) -> None:
        self.root = root
        self.roots = (root, *more)

    def pids(self) -> list[int]:
        found = list(self.roots)
        frontier = list(self.roots)
        while frontier:
            kids = [k for p in frontier for k in _children(p)]
            found.extend(kids)
            frontier = kids
        return found

    def cpu_seconds(self) -> float:
        """User + system CPU of every live process of the tree."""
        return sum(_cpu_seconds(pid) for pid in self.pids())

    def rss_kib(self) -> int:
        return sum(_status_kib(pid, "VmRSS:") for pid in self.pids())

    def peak_rss_kib(self) -> int:
        return sum(_status_kib(pid, "VmHWM:") for pid in self.pids())


def client_cpu_seconds() -> float:
    """CPU used so far by this (the load generator's) process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
