"""Server-side cost from ``/proc``: CPU time and memory of a server process and all its descendants.

CPU is ``utime + stime`` of every live process in the tree plus the root's ``cutime + cstime`` (children
it has already reaped), in clock ticks converted to seconds. Memory is ``VmRSS`` / ``VmHWM`` from
``/proc/<pid>/status``. Processes may exit while we read: a vanished pid counts as zero.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MemorySample", "cpu_seconds", "memory", "tree_pids"]

_TICK = 1.0 / os.sysconf("SC_CLK_TCK")
_PROC = Path("/proc")


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        tasks = list((_PROC / str(pid) / "task").iterdir())
    except OSError:
        return kids
    for task in tasks:
        try:
            kids.extend(int(x) for x in (task / "children").read_text().split())
        except OSError:
            continue
    return kids


def tree_pids(root: int) -> list[int]:
    """``root`` and its live descendants (breadth first)."""
    out, queue = [], [root]
    while queue:
        pid = queue.pop(0)
        out.append(pid)
        queue.extend(_children(pid))
    return out


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # Fields after the command name (which may contain spaces): state is field 3 of the man page.
    return raw[raw.rindex(")") + 2 :].split()


def process_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` alone (its component servers and other children excluded)."""
    f = _stat_fields(pid)
    return 0.0 if f is None else (int(f[11]) + int(f[12])) * _TICK


def cpu_seconds(root: int) -> float:
    """CPU seconds consumed so far by ``root``, its live descendants and its reaped children."""
    ticks = 0
    for i, pid in enumerate(tree_pids(root)):
        f = _stat_fields(pid)
        if f is None:
            continue
        # man proc(5): utime=14, stime=15, cutime=16, cstime=17; here index = field - 3.
        ticks += int(f[11]) + int(f[12])
        if i == 0:
            ticks += int(f[13]) + int(f[14])
    return ticks * _TICK


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in (_PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass(frozen=True, slots=True)
class MemorySample:
    """Resident memory in KiB: of the server process alone and of its whole process tree."""

    server_rss: int
    tree_rss: int
    server_hwm: int
    tree_hwm: int


def memory(root: int) -> MemorySample:
    """Current RSS and high-water mark of ``root`` and of ``root`` plus its live descendants."""
    pids = tree_pids(root)
    rss = [_status_kib(p, "VmRSS:") for p in pids]
    hwm = [_status_kib(p, "VmHWM:") for p in pids]
    return MemorySample(rss[0], sum(rss), hwm[0], sum(hwm))
