"""Helpers of the crash tests: configs, flows, the record file, the stores, SIGKILL and the checks.

The component server (``delay_server.py``) appends a ``start`` and an ``end`` line per execution
of ``/delay`` to the record file. A test submits runs to a real ``serve`` process, waits on the
record file for the moment it wants, SIGKILLs the server (``crash``), restarts it on the same
config and store, waits for the runs and then checks, from the record file and from what the
store's journal held at each kill (``Kill.durable``):

* a step whose result was journaled before a kill never starts again after that kill; one that
  finished before the first kill ran exactly once (one ``start``, one ``end``);
* a step started before a kill but not journaled runs once more after it (no more), with
  ``attempt`` = previous + 1 (StepFlow tells the attempt; MCP calls do not);
* nothing ran that the flows do not contain;
* the component servers of each killed gateway are gone (no orphans).

Every wait is bounded; the record file is polled, never slept on blindly.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PYTHON = REPO / ".venv" / "bin" / "python"
DELAY_SERVER = HERE / "delay_server.py"

POLL_S = 0.01
RUN_TIMEOUT_S = 60.0
"""How long runs may take to finish after a restart."""
ORPHAN_TIMEOUT_S = 10.0
"""How long the killed gateway's component servers may take to notice and exit."""

STORES = ["sqlite", "postgres"]
"""The state stores every crash test runs against (``make_store``). Postgres gets a fresh database
per test from ``tests/postgres.py`` (``pg_database``); without a PostgreSQL server those tests are
skipped locally and fail in CI, as that module decides."""

TRANSPORTS = ("stepflow-stdio", "stepflow-http", "mcp")

Key = tuple[str | None, str]
"""``(run_id, step_label)``: one step of one item of one run (labels are unique within a run)."""


# --- state stores ---------------------------------------------------------------------------------


class Store:
    """A state store the server is configured with, and a way to read its journal directly."""

    name = "?"

    def config(self) -> str:
        raise NotImplementedError

    def journal_rows(self) -> list[tuple[str, str, int, str | None, int, Any]]:
        """``(run_id, kind, item, step, attempt, data)`` of every journal event, in order."""
        raise NotImplementedError

    def durable(self) -> set[Key]:
        """The ``/delay`` calls whose successful result the journal holds (a ``step_finished``
        whose result is ``{step_label, payload}``)."""
        out: set[Key] = set()
        for run_id, kind, _item, _step, _attempt, data in self.journal_rows():
            if kind != "step_finished" or not isinstance(data, dict) or data.get("outcome") != "success":
                continue
            result = data.get("result")
            if isinstance(result, dict) and isinstance(result.get("step_label"), str) and "payload" in result:
                out.add((run_id, result["step_label"]))
        return out

    def started_attempts(self) -> dict[tuple[str, int, str], int]:
        """``(run_id, item, step)`` → the highest ``attempt`` the journal says was started."""
        out: dict[tuple[str, int, str], int] = {}
        for run_id, kind, item, step, attempt, _data in self.journal_rows():
            if kind == "step_started" and step is not None:
                key = (run_id, item, step)
                out[key] = max(out.get(key, 0), attempt)
        return out


class SqliteFile(Store):
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path

    def config(self) -> str:
        return f'stateStore:\n  type: sqlite\n  databaseUrl: "sqlite:{self.path}?mode=rwc"\n'

    def journal_rows(self) -> list[tuple[str, str, int, str | None, int, Any]]:
        if not self.path.exists():
            return []
        # read-only, short-lived: the server may be running (WAL lets the reader in)
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "journal" not in tables:
                return []
            rows = conn.execute(
                "SELECT j.run_id, j.kind, j.item, j.step, j.attempt, COALESCE(j.data, b.data) "
                "FROM journal j LEFT JOIN blobs b ON b.blob_id = j.blob_ref ORDER BY j.root_run_id, j.seq"
            ).fetchall()
        finally:
            conn.close()
        return [(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]) if r[5] else None) for r in rows]


class PostgresDb(Store):
    """A PostgreSQL database (the store's tables are SQLite's: ``journal``, ``blobs``, …)."""

    name = "postgres"

    def __init__(self, url: str) -> None:
        self.url = url

    def config(self) -> str:
        return f'stateStore:\n  type: postgres\n  databaseUrl: "{self.url}"\n'

    def journal_rows(self) -> list[tuple[str, str, int, str | None, int, Any]]:
        import psycopg

        with psycopg.connect(self.url, connect_timeout=5, autocommit=True) as conn:
            try:
                rows = conn.execute(
                    "SELECT j.run_id, j.kind, j.item, j.step, j.attempt, COALESCE(j.data, b.data) "
                    "FROM journal j LEFT JOIN blobs b ON b.blob_id = j.blob_ref ORDER BY j.root_run_id, j.seq"
                ).fetchall()
            except psycopg.errors.UndefinedTable:  # the server has not created its schema yet
                return []
        return [
            (r[0], r[1], r[2], r[3], r[4], json.loads(r[5]) if isinstance(r[5], str) else r[5]) for r in rows
        ]


def make_store(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> Store:
    if name == "sqlite":
        return SqliteFile(tmp_path / "store" / "recovery.db")
    if name == "postgres":
        return PostgresDb(request.getfixturevalue("pg_database"))  # tests/postgres.py
    raise ValueError(name)


# --- configs and flows ----------------------------------------------------------------------------


def plugin_config(transport: str, record: Path) -> str:
    env = f'    env:\n      RECOVERY_RECORD: "{record}"\n'
    if transport == "stepflow-stdio":
        return (
            f'  test:\n    type: stepflow\n    transport: stdio\n    command: "{PYTHON}"\n'
            f'    args: ["{DELAY_SERVER}", "stepflow"]\n' + env
        )
    if transport == "stepflow-http":  # a self-launching worker: it prints {"port": N}
        return (
            f'  test:\n    type: stepflow\n    command: "{PYTHON}"\n'
            f'    args: ["{DELAY_SERVER}", "stepflow", "--http"]\n' + env
        )
    if transport == "mcp":
        return f'  test:\n    type: mcp\n    command: "{PYTHON}"\n    args: ["{DELAY_SERVER}", "mcp"]\n' + env
    raise ValueError(transport)


def gateway_config(store: Store, record: Path, transport: str = "stepflow-stdio") -> str:
    return (
        "plugins:\n  builtin:\n    type: builtin\n"
        + plugin_config(transport, record)
        + 'routes:\n  "/test/{*component}":\n    - plugin: test\n'
        + '  "/builtin/{*component}":\n    - plugin: builtin\n'
        + store.config()
    )


def delay(step_id: str, seconds: Any, payload: Any, label: Any = None) -> dict[str, Any]:
    """A ``/test/delay`` step; its label is the step id unless given."""
    return {
        "id": step_id,
        "component": "/test/delay",
        "input": {"seconds": seconds, "step_label": step_id if label is None else label, "payload": payload},
    }


def sequential_flow(durations: list[float], name: str = "sequential_delay") -> dict[str, Any]:
    """``s1 … sN``, each passing the payload on (upstream's sequential_delay, N steps)."""
    steps = []
    for i, seconds in enumerate(durations, 1):
        payload = {"$input": "data"} if i == 1 else {"$step": f"s{i - 1}", "path": "payload"}
        steps.append(delay(f"s{i}", seconds, payload))
    output: dict[str, Any] = {
        f"s{i}": {"$step": f"s{i}", "path": "step_label"} for i in range(1, len(steps) + 1)
    }
    output["final"] = {"$step": f"s{len(steps)}", "path": "payload"}
    return {"name": name, "steps": steps, "output": output}


def sequential_result(n: int, data: Any) -> dict[str, Any]:
    out: dict[str, Any] = {f"s{i}": f"s{i}" for i in range(1, n + 1)}
    out["final"] = data
    return out


# --- the record file ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    index: int
    ev: str
    pid: int
    ppid: int
    label: str | None
    run_id: str | None
    step_id: str | None
    attempt: int | None
    idem: str | None
    transport: str

    @property
    def key(self) -> Key:
        run_id = self.run_id
        if run_id is None and self.idem:  # MCP: the idempotency key is {runId}/{item}/{stepId}
            run_id = self.idem.split("/", 1)[0]
        return (run_id, self.label or "")


class Record:
    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> list[Line]:
        if not self.path.exists():
            return []
        out = []
        for raw in self.path.read_text().splitlines():
            if not raw.strip():
                continue
            d = json.loads(raw)
            out.append(
                Line(
                    len(out),
                    d["ev"],
                    d["pid"],
                    d["ppid"],
                    d.get("label"),
                    d.get("run_id"),
                    d.get("step_id"),
                    d.get("attempt"),
                    d.get("idem"),
                    d.get("transport", "?"),
                )
            )
        return out

    def events(self, ev: str, lines: list[Line] | None = None) -> list[Line]:
        return [ln for ln in (self.lines() if lines is None else lines) if ln.ev == ev]

    def labels(self, ev: str, lines: list[Line] | None = None) -> list[str]:
        return [ln.label or "" for ln in self.events(ev, lines)]

    def wait_for(
        self,
        predicate: Callable[[list[Line]], Any],
        what: str,
        *,
        timeout: float = 30.0,
        server: Any = None,
        poll: float | None = None,
    ) -> list[Line]:
        """Poll until ``predicate(lines)`` holds; returns the lines (AssertionError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            lines = self.lines()
            if predicate(lines):
                return lines
            if server is not None and server.proc.poll() is not None:
                raise AssertionError(
                    f"server exited ({server.proc.returncode}) waiting for {what}:\n{server.log()}"
                )
            if time.monotonic() > deadline:
                log = f"\nserver log:\n{server.log()[-4000:]}" if server is not None else ""
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what}; record:\n{self.dump()}{log}"
                )
            time.sleep(POLL_S if poll is None else poll)

    def dump(self) -> str:
        return self.path.read_text() if self.path.exists() else "(no record file)"


def _by(lines: list[Line], gateway: int | None) -> list[Line]:
    """The lines of the processes ``gateway`` started (all lines when ``None``)."""
    if gateway is None:
        return lines
    pids = {ln.pid for ln in lines if ln.ev == "boot" and ln.ppid == gateway}
    return [ln for ln in lines if ln.pid in pids]


def started(label: str, gateway: int | None = None) -> Callable[[list[Line]], bool]:
    """``label`` started (in a component server of ``gateway``, a pid, when given)."""
    return lambda lines: any(ln.ev == "start" and ln.label == label for ln in _by(lines, gateway))


def ended(label: str, gateway: int | None = None) -> Callable[[list[Line]], bool]:
    """``label`` ended (in a component server of ``gateway``, a pid, when given)."""
    return lambda lines: any(ln.ev == "end" and ln.label == label for ln in _by(lines, gateway))


# --- the server -----------------------------------------------------------------------------------


def api(server: Any) -> httpx2.Client:
    return httpx2.Client(base_url=server.api, timeout=30)


def store_flow(server: Any, flow: dict[str, Any]) -> str:
    with api(server) as c:
        r = c.post("/flows", json={"flow": flow})
        assert r.status_code in (200, 201), r.text
        return r.json()["flowId"]


def submit(server: Any, flow_id: str, inputs: list[Any], client: httpx2.Client | None = None) -> str:
    """``POST /runs`` with ``wait: false``; returns the run id (the run is journaled by then)."""
    body = {"flowId": flow_id, "input": inputs, "wait": False}
    if client is not None:
        r = client.post("/runs", json=body)
    else:
        with api(server) as c:
            r = c.post("/runs", json=body)
    assert r.status_code in (200, 201, 202), r.text
    run = r.json()
    assert run["status"] == "running", run
    return run["runId"]


def wait_runs(
    server: Any, run_ids: Iterable[str], timeout: float = RUN_TIMEOUT_S
) -> dict[str, dict[str, Any]]:
    """Poll until every run has ended; ``{run_id: {"status", "results": [FlowResult JSON]}}``."""
    pending = list(run_ids)
    done: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    with api(server) as c:
        while pending:
            still = []
            for rid in pending:
                r = c.get(f"/runs/{rid}")
                assert r.status_code == 200, r.text
                if r.json()["status"] == "running":
                    still.append(rid)
                    continue
                items = c.get(f"/runs/{rid}/items").json()["items"]
                done[rid] = {"status": r.json()["status"], "results": [i.get("result") for i in items]}
            pending = still
            if not pending:
                break
            if server.proc.poll() is not None:
                raise AssertionError(f"server exited ({server.proc.returncode}):\n{server.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(pending)} run(s) still running {timeout} s after the restart, "
                    f"e.g. {pending[:3]}:\n{server.log()[-4000:]}"
                )
            time.sleep(0.05)
    return done


def success(value: Any) -> dict[str, Any]:
    return {"outcome": "success", "result": value}


# --- crashing -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Kill:
    """What was true at one SIGKILL."""

    gateway_pid: int
    cut: int
    """Record lines written before the kill."""
    durable: set[Key]
    """``/delay`` calls whose result the journal held after the kill."""
    journal_attempts: dict[tuple[str, int, str], int]
    """``(run_id, item, step)`` → the last attempt the journal had recorded as started."""
    children: list[int] = field(default_factory=list)
    """Component server processes the killed gateway had started (from their ``boot`` lines)."""


def crash(server: Any, record: Record, store: Store) -> Kill:
    """SIGKILL the gateway, then note what the record file and the journal hold."""
    pid = server.proc.pid
    os.kill(pid, signal.SIGKILL)
    try:
        server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"gateway {pid} still alive 10 s after SIGKILL") from None
    lines = record.lines()
    return Kill(
        gateway_pid=pid,
        cut=len(lines),
        durable=store.durable(),
        journal_attempts=store.started_attempts(),
        children=sorted({ln.pid for ln in lines if ln.ev == "boot" and ln.ppid == pid}),
    )


def alive(pid: int) -> bool:
    """The process exists, is not a zombie, and is one of our delay servers (no pid reuse)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X") and DELAY_SERVER.name.encode() in cmdline


def assert_no_orphans(kills: list[Kill], timeout: float = ORPHAN_TIMEOUT_S) -> None:
    """The component servers of every killed gateway exit (bounded wait). Leftovers are killed."""
    pids = [(k.gateway_pid, p) for k in kills for p in k.children]
    deadline = time.monotonic() + timeout
    left = [(g, p) for g, p in pids if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [(g, p) for g, p in left if alive(p)]
    for _g, p in left:  # do not leave them behind, whatever the verdict
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not left, (
        "ORPHANED COMPONENT SERVERS: "
        + ", ".join(f"pid {p} (child of killed gateway {g})" for g, p in left)
        + f" still running {timeout} s after the gateway was SIGKILLed. A child must not outlive a "
        "gateway that died without shutting it down (PR_SET_PDEATHSIG on the plugin's spawn, or the "
        "child noticing its closed stdin)."
    )


def kill_leftovers(record: Record) -> None:
    """Teardown safety net: SIGKILL any delay server this test's gateways started that still runs."""
    for pid in {ln.pid for ln in record.lines() if ln.ev == "boot"}:
        if alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# --- the checks -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Executions:
    """Per ``/delay`` call: its ``start`` and ``end`` lines, in file order."""

    starts: dict[Key, list[Line]]
    ends: dict[Key, list[Line]]

    def count(self, key: Key) -> int:
        return len(self.starts.get(key, []))

    def attempts(self, key: Key) -> list[int | None]:
        return [ln.attempt for ln in self.starts.get(key, [])]


def check_executions(
    record: Record,
    kills: list[Kill],
    expected: set[Key] | None = None,
    *,
    label_only: bool = False,
    label_of: Callable[[int, str], str] = lambda item, step: step,
) -> Executions:
    """Check the invariants of the module docstring; returns the executions for further asserts.

    Each record line belongs to the gateway *incarnation* that started its process (``boot``
    line's parent): ``i`` for the gateway of ``kills[i]``, ``len(kills)`` for the last one. So a
    line the killed gateway's child wrote late still counts as that gateway's.

    ``expected``: exactly the calls that must have run (each must have ended, too).
    ``label_only``: key by label alone (MCP calls without an idempotency key carry no run id).
    ``label_of(item, step)``: the label a journaled step runs with (the step id by default).
    """
    lines = record.lines()
    gateway_of = {ln.pid: ln.ppid for ln in lines if ln.ev == "boot"}
    incarnation_of_gateway = {k.gateway_pid: i for i, k in enumerate(kills)}

    def incarnation(ln: Line) -> int:
        return incarnation_of_gateway.get(gateway_of.get(ln.pid, -1), len(kills))

    def key_of(ln: Line) -> Key:
        return (None, ln.key[1]) if label_only else ln.key

    def norm(keys: set[Key]) -> set[Key]:
        return {(None, k[1]) for k in keys} if label_only else keys

    durable = [norm(k.durable) for k in kills]
    journaled: list[dict[Key, int]] = []
    for k in kills:
        attempts: dict[Key, int] = {}
        for (run_id, item, step), attempt in k.journal_attempts.items():
            key = (None if label_only else run_id, label_of(item, step))
            attempts[key] = max(attempts.get(key, 0), attempt)
        journaled.append(attempts)
    starts: dict[Key, list[Line]] = defaultdict(list)
    ends: dict[Key, list[Line]] = defaultdict(list)
    for ln in lines:
        if ln.ev == "start":
            starts[key_of(ln)].append(ln)
        elif ln.ev == "end":
            ends[key_of(ln)].append(ln)
    problems: list[str] = []
    for key, ss in starts.items():
        by_inc: dict[int, list[Line]] = defaultdict(list)
        for st in ss:
            by_inc[incarnation(st)].append(st)
        for n in range(len(kills)):
            if key in durable[n] and any(i > n for i in by_inc):
                problems.append(
                    f"{key}: its result was journaled before kill {n + 1}, yet it ran again "
                    f"(attempts {[st.attempt for i in by_inc if i > n for st in by_inc[i]]})"
                )
        # Each execution either ended with its result journaled or was cut short by the kill of
        # its gateway; each one cut short must be made once more (its result is still needed):
        # executions = 1 + the kills whose gateway had started it without journaling its result.
        interrupted = sum(1 for n in range(len(kills)) if n in by_inc and key not in durable[n])
        if len(ss) != 1 + interrupted:
            problems.append(
                f"{key}: started {len(ss)} times, but {interrupted} kill(s) interrupted it "
                f"(expected {1 + interrupted} executions)"
            )
        # attempt numbers: 1 at first; after a restart, one more than the journal's last start
        # (a try journaled as started counts even if the kill came before the component saw it)
        if all(st.attempt is not None for st in ss):
            for i, group in sorted(by_inc.items()):
                first = 1 if i == 0 else journaled[i - 1].get(key, 0) + 1
                want = list(range(first, first + len(group)))
                if [st.attempt for st in group] != want:
                    problems.append(
                        f"{key}: gateway incarnation {i} made attempts {[st.attempt for st in group]}, "
                        f"expected {want}"
                    )
        if kills and key in durable[0] and (len(ss) != 1 or len(ends.get(key, [])) != 1):
            problems.append(
                f"{key}: finished and journaled before the first kill, so it must have run exactly once; "
                f"starts {len(ss)}, ends {len(ends.get(key, []))}"
            )
        last = ss[-1]
        if not any(
            e.pid == last.pid and e.attempt == last.attempt and e.index > last.index for e in ends[key]
        ):
            problems.append(f"{key}: its last execution (attempt {last.attempt}, pid {last.pid}) never ended")
    for key, es in ends.items():
        if len(es) > len(starts.get(key, [])):
            problems.append(f"{key}: {len(es)} ends for {len(starts.get(key, []))} starts")
    if expected is not None:
        expected = norm(expected)
        extra = set(starts) - expected
        missing = expected - set(starts)
        if extra:
            problems.append(f"calls that should not have run: {sorted(map(str, extra))}")
        if missing:
            problems.append(f"calls that never ran: {sorted(map(str, missing))}")
    assert not problems, (
        "execution record violates recovery:\n  "
        + "\n  ".join(problems)
        + (
            f"\nkills (gateway pid, record lines, journaled): "
            f"{[(k.gateway_pid, k.cut, sorted(map(str, d))) for k, d in zip(kills, durable, strict=True)]}"
            f"\nrecord:\n{record.dump()}"
        )
    )
    return Executions(dict(starts), dict(ends))


def started_before(kill: Kill, record: Record) -> set[Key]:
    """The calls the killed gateway's component servers had started."""
    pids = set(kill.children)
    return {ln.key for ln in record.lines() if ln.ev == "start" and ln.pid in pids}


def wait_durable(store: Store, keys: set[Key], timeout: float) -> bool:
    """Poll the journal until it holds the results of ``keys``; False after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if keys <= store.durable():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
