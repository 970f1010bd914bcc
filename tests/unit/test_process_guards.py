"""The two guards of ``plugins/_process.py``, each on its own, with real processes.

A small "gateway" script spawns children with one guard, prints their pids and waits; the test
kills it with SIGKILL and watches the children die (or, for a released group, survive).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG, /proc")

SRC = Path(__file__).resolve().parents[2] / "src"

PDEATHSIG_ONLY = """
    child = subprocess.Popen(["sleep", "60"], preexec_fn=_process.child_preexec())
    report([child.pid])
"""

REAPER_ONLY = """
    # No parent-death signal: only the reaper can end the shell and its sleep.
    wrapper = subprocess.Popen(["sh", "-c", "sleep 60; true"], start_new_session=True)
    _process.guard_group(wrapper.pid)
    released = subprocess.Popen(["sleep", "60"], start_new_session=True)
    _process.guard_group(released.pid)
    _process.release_group(released.pid)
    report([wrapper.pid, *grandchildren(wrapper.pid)], released.pid)
"""

PRELUDE = """
import json, os, subprocess, sys, time
from stepflow_gateway.plugins import _process

def grandchildren(pid):
    for _ in range(100):
        found = open(f"/proc/{pid}/task/{pid}/children").read().split()
        if found:
            return [int(p) for p in found]
        time.sleep(0.02)
    raise SystemExit("no grandchild")

def report(doomed, spared=None):
    found = {"doomed": doomed, "spared": spared, "reaper": _process.reaper_pid()}
    print("REPORT", json.dumps(found), flush=True)
    time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _run_and_kill(body: str) -> dict:
    script = PRELUDE + textwrap.dedent(body)
    env = dict(os.environ, PYTHONPATH=str(SRC))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # structlog may print too
            if line.startswith(b"REPORT "):
                break
        else:
            raise AssertionError("the script died before reporting")
        report = json.loads(line[7:])
        for pid in report["doomed"]:
            assert _alive(pid)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    return report


def _wait_gone(pids: list[int], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in pids):
        assert time.monotonic() < deadline, f"still alive: {[p for p in pids if _alive(p)]}"
        time.sleep(0.05)


def test_parent_death_signal_kills_the_child_of_a_killed_parent() -> None:
    report = _run_and_kill(PDEATHSIG_ONLY)
    _wait_gone(report["doomed"])
    assert report["reaper"] is None  # nothing registered: the kernel alone did it


def test_reaper_kills_guarded_groups_and_spares_released_ones() -> None:
    report = _run_and_kill(REAPER_ONLY)
    assert len(report["doomed"]) == 2  # the shell and its sleep
    _wait_gone([*report["doomed"], report["reaper"]])
    spared = report["spared"]
    try:
        time.sleep(0.2)
        assert _alive(spared)
    finally:
        os.killpg(spared, signal.SIGKILL)
