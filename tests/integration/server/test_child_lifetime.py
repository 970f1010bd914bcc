"""No child of ``serve`` outlives it, not even after ``kill -9`` of the gateway (issue 12).

The server runs four real children: a StepFlow stdio server (our SDK), a self-launching StepFlow
HTTP worker *under* ``sh -c`` (a grandchild whose stdin is ``/dev/null``: nothing but the gateway's
guards can end it), server-everything's ``node`` under ``sh -c`` (npm server behind a wrapper), and
mcp-server-time. The whole process tree is read from ``/proc`` before the kill; afterwards every one
of those processes, and the gateway's reaper, must be gone within a bound.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import time
from pathlib import Path

import peers
import pytest

from .conftest import ServerProcess

pytestmark = [
    pytest.mark.peers,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG"),
]

SDK_SERVER = Path(__file__).resolve().parents[1] / "stepflow" / "servers" / "sdk_server.py"
TREE_TIMEOUT_S = 60.0
GONE_TIMEOUT_S = 10.0


def _config() -> str:
    everything = peers.node_modules() / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
    time_argv = peers.mcp_time_command()
    peers.require(everything, time_argv[0], why="server-everything and mcp-server-time")
    python = shlex.quote(sys.executable)
    env = {"PYTHONPATH": os.environ["PYTHONPATH"]} if os.environ.get("PYTHONPATH") else {}
    config = {
        "plugins": {
            "sdk": {
                "type": "stepflow",
                "transport": "stdio",
                "command": sys.executable,
                "args": [str(SDK_SERVER)],
                "env": env,
            },
            "worker": {
                "type": "stepflow",
                # `; true` keeps the shell alive as the worker's parent (no exec of the last command).
                "command": "sh",
                "args": ["-c", f"{python} {shlex.quote(str(SDK_SERVER))} --http; true"],
                "env": env,
                "healthCheck": {"timeoutMs": 20000},
            },
            "everything": {
                "type": "mcp",
                "command": "sh",
                "args": ["-c", f"node {shlex.quote(str(everything))} stdio; true"],
            },
            "time": {"type": "mcp", "command": time_argv[0], "args": time_argv[1:]},
        },
        "routes": {
            "/sdk/{*component}": [{"plugin": "sdk"}],
            "/worker/{*component}": [{"plugin": "worker"}],
            "/everything/{*component}": [{"plugin": "everything"}],
            "/time/{*component}": [{"plugin": "time"}],
        },
    }
    return json.dumps(config)


def _stat(pid: int) -> tuple[int, int] | None:
    """``(ppid, start time)`` of a live process, ``None`` once it is gone (or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[1]), int(fields[19])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _descendants(root: int) -> dict[int, tuple[int, int, str]]:
    """Every live descendant of ``root``: pid -> (ppid, start time, command line)."""
    table: dict[int, tuple[int, int, str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            table[int(entry.name)] = (*stat, _cmdline(int(entry.name)))
    found: dict[int, tuple[int, int, str]] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, row in table.items():
            if row[0] == parent and pid not in found:
                found[pid] = row
                frontier.append(pid)
    return found


def _tree_complete(tree: dict[int, tuple[int, int, str]], gateway: int) -> bool:
    """The four children are up, and both shell wrappers have started their server."""
    by_cmd = {pid: cmd for pid, (_, _, cmd) in tree.items()}
    shells = [
        pid
        for pid, (ppid, _, cmd) in tree.items()
        if ppid == gateway and cmd.split(" ", 1)[0].endswith("/sh")
    ]
    wrapped = [pid for pid, (ppid, _, _) in tree.items() if ppid in shells]
    return (
        len(shells) == 2
        and len(wrapped) == 2
        and any("index.js stdio" in by_cmd[p] for p in wrapped)
        and any("sdk_server.py --http" in by_cmd[p] for p in wrapped)
        and any(str(SDK_SERVER) in cmd and "--http" not in cmd for cmd in by_cmd.values())
        and any("mcp-server-time" in cmd for cmd in by_cmd.values())
    )


def _reaper_of(gateway: int) -> int | None:
    needle = f"stepflow-gateway-reaper {gateway} "
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _cmdline(int(entry.name)).endswith(needle):
            return int(entry.name)
    return None


def test_kill_9_of_serve_leaves_no_child_or_grandchild(start_server) -> None:  # type: ignore[no-untyped-def]
    server: ServerProcess = start_server(_config())
    gateway = server.proc.pid
    deadline = time.monotonic() + TREE_TIMEOUT_S
    tree = _descendants(gateway)
    while not _tree_complete(tree, gateway):
        assert time.monotonic() < deadline, f"children did not start: {tree}\n{server.log()}"
        time.sleep(0.1)
        tree = _descendants(gateway)
    time.sleep(0.5)  # let the HTTP worker pass its health check (nothing else depends on it)
    tree = _descendants(gateway)
    reaper = _reaper_of(gateway)
    assert reaper is not None, "the gateway's reaper is not running"
    assert reaper not in tree  # detached: never one of the gateway's children

    os.kill(gateway, signal.SIGKILL)
    server.proc.wait(timeout=10)

    watched = {pid: start for pid, (_, start, _) in tree.items()}
    deadline = time.monotonic() + GONE_TIMEOUT_S
    while True:
        alive = {
            pid: tree[pid][2]
            for pid, start in watched.items()
            if (stat := _stat(pid)) is not None and stat[1] == start
        }
        if not alive and _stat(reaper) is None:
            break
        assert time.monotonic() < deadline, f"still alive {GONE_TIMEOUT_S} s after kill -9: {alive}"
        time.sleep(0.1)
