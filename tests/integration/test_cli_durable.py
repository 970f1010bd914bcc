"""Durable runs from the command line, as real subprocesses (issue 12): ``run --state``, Ctrl-C,
``resume``, ``runs list``/``runs show``, and ``serve --data-dir``/``--drain-timeout``.

The slow step is ``/slow_pid`` of our SDK's stdio test server (``stepflow/servers/sdk_server.py``):
it sleeps ``ms`` and returns the server's pid and the step's ``attempt``. A resumed run's result
therefore says which process ran each step: a step finished before Ctrl-C keeps the pid of the
first process's server and attempt 1; the interrupted one ran again (attempt 2) in another.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest

EXE = str(Path(sys.executable).parent / "stepflow-gateway")
SDK_SERVER = Path(__file__).resolve().parent / "stepflow" / "servers" / "sdk_server.py"

CONFIG = f"""\
plugins:
  builtin: {{ type: builtin }}
  sdk:
    type: stepflow
    transport: stdio
    command: "{sys.executable}"
    args: ["{SDK_SERVER}"]
routes:
  "/builtin/{{*component}}": [ {{ plugin: builtin }} ]
  "/sdk/{{*component}}": [ {{ plugin: sdk }} ]
"""

FLOW = {
    "name": "two-steps",
    "description": "a quick step, then a slow one",
    "steps": [
        {"id": "first", "component": "/sdk/slow_pid", "input": {"ms": 0}},
        {
            "id": "second",
            "component": "/sdk/slow_pid",
            "input": {"ms": {"$input": "ms"}, "after": {"$step": "first"}},
        },
    ],
    "output": {"first": {"$step": "first"}, "second": {"$step": "second"}},
}

SLEEP_FLOW = {
    "name": "nap",
    "description": "one slow step",
    "steps": [{"id": "nap", "component": "/sdk/slow_pid", "input": {"ms": {"$input": "ms"}}}],
    "output": {"$step": "nap"},
}


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "stepflow-config.yml").write_text(CONFIG, encoding="utf-8")
    (tmp_path / "flow.json").write_text(json.dumps(FLOW), encoding="utf-8")
    return tmp_path


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPFLOW_")}
    return {**env, "COLUMNS": "200", "NO_COLOR": "1"}


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([EXE, *args], cwd=cwd, capture_output=True, text=True, timeout=90, env=_env())
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    return proc


def show(work: Path, run_id: str) -> dict[str, Any]:
    proc = cli("runs", "show", "--state", "sqlite:state.db", run_id, cwd=work)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def wait_for(predicate: Any, what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_ctrl_c_leaves_a_journaled_run_that_resume_finishes(work: Path) -> None:
    assert not (work / "state.db").exists()  # run --state creates the file
    proc = subprocess.Popen(
        [EXE, "run", "--flow", "flow.json", "--input-json", '{"ms": 4000}', "--state", "sqlite:state.db"],
        cwd=work,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = ""
        while "journaled in" not in line:  # stepflow-gateway writes it before the first step starts
            line = proc.stderr.readline()
            assert line, "run exited without announcing its run id"
        run_id = line.split()[1]
        assert line.strip() == f"run {run_id} journaled in {work / 'state.db'}"

        def second_running() -> bool:
            steps = {s["stepId"]: s for s in show(work, run_id)["steps"]}
            return steps["first"]["status"] == "completed" and steps["second"]["status"] == "running"

        wait_for(second_running, "the slow step to start")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert out == ""  # no result: the run has not finished
    assert f"stepflow-gateway resume --state sqlite:state.db {run_id}" in err
    assert "Traceback" not in err

    listed = cli("runs", "list", "--state", "sqlite:state.db", "--json", cwd=work)
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["runId"], r["status"], r["flowName"]) for r in rows] == [(run_id, "running", "two-steps")]
    with sqlite3.connect(work / "state.db") as db:
        assert db.execute("SELECT status FROM runs WHERE run_id = ?", (run_id,)).fetchone() == ("running",)
    shown = show(work, run_id)
    assert shown["items"] == [{"index": 0, "status": "running", "result": None}]
    assert [(s["stepId"], s["status"], s["attempts"]) for s in shown["steps"]] == [
        ("first", "completed", 1),
        ("second", "running", 1),
    ]

    resumed = cli("resume", "--state", "sqlite:state.db", run_id, cwd=work)
    assert resumed.returncode == 0, resumed.stderr
    result = json.loads(resumed.stdout)  # printed like `run`: one FlowResult
    assert result["outcome"] == "success"
    first, second = result["result"]["first"], result["result"]["second"]
    # `first` finished before Ctrl-C: its result comes from the journal, not from a new call
    assert first["attempt"] == 1 and second["attempt"] == 2
    assert first["pid"] != second["pid"]

    shown = show(work, run_id)
    assert shown["status"] == "completed" and shown["completedAt"]
    assert shown["items"][0]["status"] == "completed" and shown["items"][0]["result"] == result
    assert [(s["stepId"], s["status"], s["attempts"]) for s in shown["steps"]] == [
        ("first", "completed", 1),
        ("second", "completed", 2),
    ]
    listed = cli("runs", "list", "--state", "sqlite:state.db", "--status", "running", cwd=work)
    assert listed.returncode == 0 and listed.stdout == ""


def test_resume_refuses_unknown_and_finished_runs(work: Path) -> None:
    done = cli("run", "--flow", "flow.json", "--input-json", '{"ms": 0}', "--state", "state.db", cwd=work)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["outcome"] == "success"
    run_id = next(ln.split()[1] for ln in done.stderr.splitlines() if "journaled in" in ln)

    again = cli("resume", "--state", "sqlite:state.db", run_id, cwd=work)
    assert again.returncode == 2 and again.stdout == ""
    assert f"run {run_id} has already finished (status completed)" in again.stderr

    unknown = cli("resume", "--state", "sqlite:state.db", "no-such-run", cwd=work)
    assert unknown.returncode == 2
    assert f"run no-such-run is not in {work / 'state.db'}" in unknown.stderr

    missing = cli("resume", "--state", "sqlite:missing.db", run_id, cwd=work)
    assert missing.returncode == 2 and str(work / "missing.db") in missing.stderr
    assert not (work / "missing.db").exists()  # resume and runs never create a state file

    assert cli("runs", "show", "--state", "sqlite:state.db", "nope", cwd=work).returncode == 2
    listed = cli(
        "runs", "list", "--state", "sqlite:state.db", "--flow", "two-steps", "--limit", "5", cwd=work
    )
    assert [json.loads(ln)["runId"] for ln in listed.stdout.splitlines()] == [run_id]
    other = cli("runs", "list", "--state", "sqlite:state.db", "--flow", "other", cwd=work)
    assert other.returncode == 0 and other.stdout == ""
    bad = cli("runs", "list", "--state", "sqlite:state.db", "--status", "sleeping", cwd=work)
    assert bad.returncode == 2 and "--status must be one of" in bad.stderr


# --- serve ------------------------------------------------------------------------------------


class Served:
    def __init__(self, cwd: Path, port: int, *args: str) -> None:
        self.port = port
        self.log_path = cwd / f"serve-{port}.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [EXE, "serve", "--port", str(port), *args],
                cwd=cwd,
                env=_env(),
                stdout=subprocess.DEVNULL,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        self.api = f"http://127.0.0.1:{port}/api/v1"
        wait_for(lambda: "stepflow-gateway: serving" in self.log() or self.proc.poll() is not None, "start")
        assert self.proc.poll() is None, self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def state_line(self) -> str:
        return next(ln for ln in self.log().splitlines() if ln.startswith("stepflow-gateway: state in "))

    def stop(self, *signals: float | signal.Signals) -> float:
        """Send the signals (a number between them: seconds to wait) and the time until exit."""
        t0 = time.monotonic()
        for s in signals:
            if isinstance(s, signal.Signals):
                self.proc.send_signal(s)
            else:
                time.sleep(s)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"serve did not exit:\n{self.log()}") from None
        return time.monotonic() - t0

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def test_serve_data_dir_holds_the_state_and_is_printed(work: Path, free_port: Any) -> None:
    explicit = Served(work, free_port(), "--data-dir", "data")
    try:
        assert explicit.state_line() == f"stepflow-gateway: state in {work / 'data' / 'state.db'} (sqlite)"
        assert (work / "data" / "state.db").is_file()
        assert explicit.stop(signal.SIGTERM) < 20 and explicit.proc.returncode == 0
    finally:
        explicit.close()

    default = Served(work, free_port())  # no state.db from before --data-dir: ./.stepflow
    try:
        assert (
            default.state_line() == f"stepflow-gateway: state in {work / '.stepflow' / 'state.db'} (sqlite)"
        )
        default.stop(signal.SIGTERM)
    finally:
        default.close()

    legacy = work / ".stepflow-gateway"
    legacy.mkdir()
    sqlite3.connect(legacy / "state.db").close()
    kept = Served(work, free_port())  # an existing <workingDirectory>/.stepflow-gateway/state.db is kept
    try:
        assert kept.state_line() == f"stepflow-gateway: state in {legacy / 'state.db'} (sqlite)"
        kept.stop(signal.SIGTERM)
    finally:
        kept.close()


def _start(served: Served, ms: int) -> str:
    fid = httpx2.post(f"{served.api}/flows", json={"flow": SLEEP_FLOW}, timeout=30).json()["flowId"]
    body = {"flowId": fid, "wait": False, "input": [{"ms": ms}]}
    return str(httpx2.post(f"{served.api}/runs", json=body, timeout=30).json()["runId"])


def _statuses(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT run_id, status FROM runs").fetchall())


def test_serve_drain_timeout_waits_for_steps_then_leaves_runs_in_the_journal(
    work: Path, free_port: Any
) -> None:
    served = Served(work, free_port(), "--data-dir", "data", "--drain-timeout", "3")
    try:
        short, long = _start(served, 1000), _start(served, 120_000)
        elapsed = served.stop(signal.SIGTERM)
    finally:
        served.close()
    assert served.proc.returncode == 0, served.log()
    assert 2.0 < elapsed < 20, served.log()  # waited about the drain timeout, not for the long step
    assert "drain timeout 3 s" in served.log()
    # the short run finished while the server drained; the long one is neither cancelled nor lost
    assert _statuses(work / "data" / "state.db") == {short: "completed", long: "running"}


def test_serve_second_signal_stops_at_once(work: Path, free_port: Any) -> None:
    served = Served(work, free_port(), "--data-dir", "data", "--drain-timeout", "120")
    try:
        rid = _start(served, 120_000)
        time.sleep(0.5)
        elapsed = served.stop(signal.SIGTERM, 1.0, signal.SIGTERM)
    finally:
        served.close()
    assert served.proc.returncode == 0, served.log()
    assert elapsed < 15, served.log()  # far below the 120 s drain timeout
    assert "stepflow-gateway: stopping now" in served.log()
    assert "Traceback" not in served.log()
    assert _statuses(work / "data" / "state.db") == {rid: "running"}
