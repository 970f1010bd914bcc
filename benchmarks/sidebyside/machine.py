"""What the report's header states: machine, date, versions, pinning; and the core pinning itself.

The servers (and their children) run on one core, the load client on another, when at least two cores are
available to us; with one core nothing is pinned and the report says so.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .servers import PEERS, REPO, Tools

__all__ = ["Pinning", "describe", "memory_guard_mib", "pin_client"]

GUARD_CAP_MIB = 4096.0
"""Upstream keeps every run in memory (a full session reached 12 GiB): restart both servers past this."""


@dataclass(frozen=True, slots=True)
class Pinning:
    """Cores for the servers and for the client (``None``: not pinned)."""

    server: int | None
    client: int | None

    @classmethod
    def choose(cls) -> Pinning:
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < 2 or not shutil.which("taskset"):
            return cls(None, None)
        return cls(cores[0], cores[1])

    def describe(self) -> str:
        if self.server is None:
            return "not pinned (fewer than 2 cores or no taskset)"
        return (
            f"servers and their children on core {self.server} (taskset), load client on core {self.client}"
        )


def pin_client(pinning: Pinning) -> None:
    """Pin this process (the load client) to its core."""
    if pinning.client is not None:
        os.sched_setaffinity(0, {pinning.client})


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _mem_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
    except OSError:
        pass
    return "? RAM"


def memory_guard_mib() -> float:
    """Default restart guard: a quarter of RAM, at most ``GUARD_CAP_MIB``."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return min(GUARD_CAP_MIB, int(line.split()[1]) / 1024 / 4)
    except OSError:
        pass
    return 1024.0


def _git_rev() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "?"


def _installed(marker: str) -> str:
    try:
        return (PEERS / marker).read_text().strip()
    except OSError:
        return "?"


def _dist(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def describe(tools: Tools, pinning: Pinning) -> dict[str, str]:
    """Header facts for the report (the upstream version is added once its server answers)."""
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{_cpu_model()}, {os.cpu_count()} cores, {_mem_total()}, Linux {platform.release()}",
        "pinning": pinning.describe(),
        "ours": f"stepflow-gateway {_dist('stepflow-gateway')} (git {_git_rev()}), Python "
        f"{platform.python_version()}, uvicorn {_dist('uvicorn')} (h11 {_dist('h11')}, httptools "
        f"{_dist('httptools')}, uvloop {_dist('uvloop')})",
        "upstream": f"{_installed('.installed-orch090')} ({tools.upstream_server.name})",
        "component servers": f"{_installed('.installed-sf092')} (echo_server.py); "
        f"{_installed('.installed-npm').split()[0]} over stdio, node {_node_version(tools)}",
        "client": "raw HTTP/1.1 keep-alive, asyncio, one process (benchmarks/sidebyside/client.py)",
    }


def _node_version(tools: Tools) -> str:
    try:
        return subprocess.run(
            [str(tools.node), "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"
