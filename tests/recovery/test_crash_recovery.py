"""Black-box crash tests of durable runs: SIGKILL ``serve`` at chosen moments, restart it, check.

Like upstream's ``tests/recovery`` (sequential_delay, parallel_delay, subflow_delay with a
``/test/delay`` component): the component server ``delay_server.py`` records every execution's
start and end in a file; a real ``stepflow-gateway serve`` subprocess with a real store file runs
the flows; the test watches the record file, SIGKILLs the server at the moment it wants, starts a
new server on the same config and working directory, waits for the runs and checks the results
and, from the record file and the journal at each kill, what ran how often
(``recovery_support.check_executions``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from recovery_support import (
    STORES,
    TRANSPORTS,
    Kill,
    Record,
    Store,
    assert_no_orphans,
    check_executions,
    crash,
    delay,
    ended,
    gateway_config,
    kill_leftovers,
    sequential_flow,
    sequential_result,
    started,
    started_before,
    store_flow,
    submit,
    success,
    wait_durable,
    wait_runs,
)

pytestmark = pytest.mark.slow

DATA = {"order": 42, "tags": ["a", "b"]}


@pytest.fixture
def record(tmp_path: Path):
    rec = Record(tmp_path / "record.jsonl")
    yield rec
    kill_leftovers(rec)


# --- kill points in one sequential run -------------------------------------------------------------


def test_kill_right_after_submission(start_server, store: Store, record: Record, tmp_path: Path) -> None:
    """SIGKILL as soon as ``POST /runs`` (wait: false) answered: the run id the caller holds
    survives; the restarted server runs it from the start."""
    config = gateway_config(store, record.path)
    server = start_server(config)
    fid = store_flow(server, sequential_flow([0.3, 0.3]))
    rid = submit(server, fid, [{"data": DATA}])
    kill = crash(server, record, store)

    again = start_server(config, workdir=tmp_path)
    runs = wait_runs(again, [rid])
    assert runs[rid] == {"status": "completed", "results": [success(sequential_result(2, DATA))]}
    ex = check_executions(record, [kill], {(rid, "s1"), (rid, "s2")})
    assert ex.count((rid, "s2")) == 1
    assert_no_orphans([kill])


# every transport on SQLite; the stdio one on the other stores
STORE_TRANSPORTS = [("sqlite", t) for t in TRANSPORTS] + [
    (s, "stepflow-stdio") for s in STORES if s != "sqlite"
]


@pytest.mark.parametrize(("store", "transport"), STORE_TRANSPORTS, indirect=["store"])
def test_kill_during_a_step(
    start_server, store: Store, record: Record, tmp_path: Path, transport: str
) -> None:
    """SIGKILL while s2 runs: s1 is not called again, s2 runs once more (attempt 2), s3 once."""
    config = gateway_config(store, record.path, transport)
    server = start_server(config)
    fid = store_flow(server, sequential_flow([0.2, 1.5, 0.2]))
    rid = submit(server, fid, [{"data": DATA}])
    record.wait_for(started("s2"), "s2 to start", server=server)
    kill = crash(server, record, store)
    # s2 was called, so s1's result had been made durable first (the barrier before every call)
    assert (rid, "s1") in kill.durable, f"s1 ended before s2 started, but its result is not journaled: {kill}"
    assert (rid, "s2") not in kill.durable

    again = start_server(config, workdir=tmp_path)
    runs = wait_runs(again, [rid])
    assert runs[rid] == {"status": "completed", "results": [success(sequential_result(3, DATA))]}

    label_only = transport == "mcp" and not any(ln.idem for ln in record.lines())
    ex = check_executions(record, [kill], {(rid, s) for s in ("s1", "s2", "s3")}, label_only=label_only)
    s1, s2, s3 = (((None if label_only else rid), s) for s in ("s1", "s2", "s3"))
    assert (ex.count(s1), ex.count(s2), ex.count(s3)) == (1, 2, 1), record.dump()
    if transport != "mcp":
        assert ex.attempts(s2) == [1, 2]
    else:
        idems = {ln.idem for ln in ex.starts[s2]}
        if idems != {None}:  # the gateway sends an idempotency key: the same for both tries
            assert len(idems) == 1 and None not in idems, idems
            assert idems.pop() == f"{rid}/0/s2"
    assert_no_orphans([kill])


def test_kill_between_steps(start_server, store: Store, record: Record, tmp_path: Path) -> None:
    """SIGKILL the moment s1's call has answered (its result may or may not be journaled yet)."""
    config = gateway_config(store, record.path)
    server = start_server(config)
    fid = store_flow(server, sequential_flow([0.3, 0.3, 0.3]))
    rid = submit(server, fid, [{"data": DATA}])
    record.wait_for(ended("s1"), "s1 to end", server=server, poll=0.002)
    kill = crash(server, record, store)

    again = start_server(config, workdir=tmp_path)
    runs = wait_runs(again, [rid])
    assert runs[rid] == {"status": "completed", "results": [success(sequential_result(3, DATA))]}
    ex = check_executions(record, [kill], {(rid, s) for s in ("s1", "s2", "s3")})
    # journaled: s1 ran once; not yet journaled (the crash came before s2's barrier): twice
    assert ex.count((rid, "s1")) == (1 if (rid, "s1") in kill.durable else 2)
    assert ex.count((rid, "s3")) == 1
    assert_no_orphans([kill])


# --- parallel steps, map, sub-flow ---------------------------------------------------------------


PARALLEL_FLOW = {
    # upstream's parallel_delay with shorter delays: a and b end long before c and d
    "name": "parallel_delay",
    "steps": [
        delay("a", 0.2, {"$input": "data"}),
        delay("b", 0.4, {"$input": "data"}),
        delay("c", 2.5, {"$input": "data"}),
        delay("d", 2.7, {"$input": "data"}),
        delay(
            "aggregate",
            0.2,
            {x: {"$step": x, "path": "step_label"} for x in ("a", "b", "c", "d")},
        ),
    ],
    "output": {"result": {"$step": "aggregate", "path": "payload"}},
}


def test_kill_during_parallel_steps(start_server, store: Store, record: Record, tmp_path: Path) -> None:
    """a and b have ended (for a while) when c and d are killed: a and b must not run again."""
    config = gateway_config(store, record.path)
    server = start_server(config)
    fid = store_flow(server, PARALLEL_FLOW)
    rid = submit(server, fid, [{"data": DATA}])
    record.wait_for(lambda ls: ended("a")(ls) and ended("b")(ls), "a and b to end", server=server)
    journaled = wait_durable(store, {(rid, "a"), (rid, "b")}, timeout=1.0)
    lines = record.lines()
    assert not ended("c")(lines) and not ended("d")(lines), "c or d ended already: the kill came too late"
    kill = crash(server, record, store)

    again = start_server(config, workdir=tmp_path)
    runs = wait_runs(again, [rid])
    expected = {"result": {"a": "a", "b": "b", "c": "c", "d": "d"}}
    assert runs[rid] == {"status": "completed", "results": [success(expected)]}
    ex = check_executions(record, [kill], {(rid, s) for s in ("a", "b", "c", "d", "aggregate")})
    assert ex.attempts((rid, "c")) == [1, 2] and ex.attempts((rid, "d")) == [1, 2]
    assert ex.count((rid, "aggregate")) == 1
    assert_no_orphans([kill])
    assert journaled and ex.count((rid, "a")) == 1 and ex.count((rid, "b")) == 1, (
        "steps a and b had ended about a second before the kill, yet their results were not in the "
        f"journal (journaled at the kill: {sorted(k[1] for k in kill.durable)}) and they ran again "
        f"(a: {ex.count((rid, 'a'))}x, b: {ex.count((rid, 'b'))}x): a finished step's events stay in "
        "the run's TreeJournal buffer until some later barrier publishes them"
    )


MAP_ITEMS = [
    {"label": "m0", "seconds": 0.3, "value": 0},
    {"label": "m1", "seconds": 0.6, "value": 1},
    {"label": "m2", "seconds": 2.5, "value": 2},
    {"label": "m3", "seconds": 2.7, "value": 3},
    {"label": "m4", "seconds": 2.9, "value": 4},
]
MAP_FLOW = {
    "name": "map_delay",
    "steps": [
        {
            "id": "fan",
            "component": "/builtin/map",
            "input": {
                "workflow": {
                    "$literal": {
                        "name": "one_item",
                        "steps": [
                            delay(
                                "work", {"$input": "seconds"}, {"$input": "value"}, label={"$input": "label"}
                            )
                        ],
                        "output": {"$step": "work"},
                    }
                },
                "items": {"$input": "items"},
            },
        }
    ],
    "output": {"$step": "fan"},
}


def test_kill_during_a_map(start_server, store: Store, record: Record, tmp_path: Path) -> None:
    """``/builtin/map`` over 5 items; SIGKILL once 2 have ended: the map's child run resumes under
    its own (derived) id, and the 2 finished items are not run again."""
    config = gateway_config(store, record.path)
    server = start_server(config)
    fid = store_flow(server, MAP_FLOW)
    rid = submit(server, fid, [{"items": MAP_ITEMS}])
    lines = record.wait_for(
        lambda ls: ended("m0")(ls) and ended("m1")(ls), "2 map items to end", server=server
    )
    child = {ln.run_id for ln in lines if ln.ev == "start"}
    assert len(child) == 1 and rid not in child, child
    child_id = child.pop()
    journaled = wait_durable(store, {(child_id, "m0"), (child_id, "m1")}, timeout=1.0)
    assert not any(ended(f"m{i}")(record.lines()) for i in (2, 3, 4)), "the kill came too late"
    kill = crash(server, record, store)

    again = start_server(config, workdir=tmp_path)
    runs = wait_runs(again, [rid])
    results = [success({"step_label": it["label"], "payload": it["value"]}) for it in MAP_ITEMS]
    expected = {"results": results, "successful": 5, "failed": 0}
    assert runs[rid] == {"status": "completed", "results": [success(expected)]}
    # the resumed map found its child run again: every item ran in the same child run
    ex = check_executions(
        record,
        [kill],
        {(child_id, it["label"]) for it in MAP_ITEMS},
        label_of=lambda item, step: MAP_ITEMS[item]["label"] if step == "work" else step,
    )
    for label in ("m2", "m3", "m4"):
        assert ex.attempts((child_id, label)) == [1, 2], record.dump()
    assert_no_orphans([kill])
    assert journaled and ex.count((child_id, "m0")) == 1 and ex.count((child_id, "m1")) == 1, (
        "map items m0 and m1 had ended about a second before the kill, yet their results were not in "
        f"the journal (journaled at the kill: {sorted(k[1] for k in kill.durable)}) and they ran again "
        f"(m0: {ex.count((child_id, 'm0'))}x, m1: {ex.count((child_id, 'm1'))}x)"
    )


SUBFLOW_FLOW = {
    # upstream's subflow_delay with shorter delays
    "name": "subflow_delay",
    "steps": [
        {
            "id": "store_subflow",
            "component": "/builtin/put_blob",
            "input": {
                "blob_type": "flow",
                "data": {
                    "$literal": {
                        "name": "inner_flow",
                        "steps": [delay("inner_delay", 1.5, {"$input": ""})],
                        "output": {"$step": "inner_delay"},
                    }
                },
            },
        },
        {
            "id": "run_subflow",
            "component": "/builtin/eval",
            "input": {"flow_id": {"$step": "store_subflow", "path": "blob_id"}, "input": {"$input": "data"}},
        },
        delay("final_step", 0.2, {"$step": "run_subflow", "path": "result"}),
    ],
    "output": {
        "inner": {"$step": "run_subflow", "path": "result"},
        "final": {"$step": "final_step", "path": "payload"},
    },
}


def test_kill_during_a_subflow(start_server, store: Store, record: Record, tmp_path: Path) -> None:
    """SIGKILL while the ``/builtin/eval`` sub-flow's step runs: it resumes in the same child run
    (attempt 2); the outer flow then finishes once."""
    config = gateway_config(store, record.path)
    server = start_server(config)
    fid = store_flow(server, SUBFLOW_FLOW)
    rid = submit(server, fid, [{"data": DATA}])
    lines = record.wait_for(started("inner_delay"), "the sub-flow's step to start", server=server)
    child_id = next(ln.run_id for ln in lines if ln.label == "inner_delay")
    assert child_id and child_id != rid
    kill = crash(server, record, store)

    again = start_server(config, workdir=tmp_path)
    runs = wait_runs(again, [rid])
    inner = success({"step_label": "inner_delay", "payload": DATA})
    assert runs[rid] == {"status": "completed", "results": [success({"inner": inner, "final": inner})]}
    ex = check_executions(record, [kill], {(child_id, "inner_delay"), (rid, "final_step")})
    assert ex.attempts((child_id, "inner_delay")) == [1, 2]
    assert ex.count((rid, "final_step")) == 1
    assert_no_orphans([kill])


# --- many runs, many kills -----------------------------------------------------------------------


BATCH = 100
ONE_STEP = {
    "name": "one_step",
    "steps": [delay("work", {"$input": "seconds"}, {"$input": "n"})],
    "output": {"$step": "work"},
}


def test_kill_during_a_batch_of_runs(start_server, store: Store, record: Record, tmp_path: Path) -> None:
    """100 runs of one short step; SIGKILL when about half have ended: after the restart all 100
    end with their own result; a run whose step was journaled is not run again."""
    config = gateway_config(store, record.path)
    server = start_server(config)
    fid = store_flow(server, ONE_STEP)
    import httpx2

    with httpx2.Client(base_url=server.api, timeout=30) as c:
        rids = [submit(server, fid, [{"n": n, "seconds": 0.5 + n * 0.03}], client=c) for n in range(BATCH)]
    record.wait_for(
        lambda ls: len(record.events("end", ls)) >= BATCH // 2, "half the runs to end", server=server
    )
    kill = crash(server, record, store)
    done_at_kill = {k for k in kill.durable if k[1] == "work"}
    assert BATCH // 4 < len(done_at_kill) < BATCH, f"{len(done_at_kill)} runs journaled at the kill"

    again = start_server(config, workdir=tmp_path)
    runs = wait_runs(again, rids)
    for n, rid in enumerate(rids):
        assert runs[rid] == {
            "status": "completed",
            "results": [success({"step_label": "work", "payload": n})],
        }
    ex = check_executions(record, [kill], {(rid, "work") for rid in rids})
    # exactly the runs whose call had started but whose result was not journaled ran twice
    in_flight = started_before(kill, record) - kill.durable
    assert {rid for rid in rids if ex.count((rid, "work")) > 1} == {k[0] for k in in_flight}
    assert all(ex.attempts(k) == [1, 2] for k in in_flight)
    assert_no_orphans([kill])


def test_five_kills_in_one_run(start_server, store: Store, record: Record, tmp_path: Path) -> None:
    """One run of 6 sequential 0.5 s steps survives 5 SIGKILLs at different points."""
    config = gateway_config(store, record.path)
    server = start_server(config)
    fid = store_flow(server, sequential_flow([0.5] * 6, name="six_steps"))
    rid = submit(server, fid, [{"data": DATA}])
    kills: list[Kill] = []

    def kill_when(predicate: Any, what: str, poll: float | None = None) -> None:
        nonlocal server
        if predicate is not None:
            record.wait_for(predicate(), what, server=server, poll=poll)
        kills.append(crash(server, record, store))
        server = start_server(config, workdir=tmp_path)

    # (each predicate looks at the component servers of the gateway running now)
    kill_when(lambda: started("s1", server.proc.pid), "s1 to start")  # 1: during s1
    kill_when(lambda: ended("s2", server.proc.pid), "s2 to end", poll=0.002)  # 2: between s2 and s3
    kill_when(lambda: started("s3", server.proc.pid), "s3 to start")  # 3: during s3
    kill_when(None, "")  # 4: as soon as the restarted server answers (recovery just began)
    kill_when(lambda: started("s5", server.proc.pid), "s5 to start")  # 5: during s5
    runs = wait_runs(server, [rid])
    assert runs[rid] == {"status": "completed", "results": [success(sequential_result(6, DATA))]}

    ex = check_executions(record, kills, {(rid, f"s{i}") for i in range(1, 7)})
    assert ex.attempts((rid, "s1")) == [1, 2]
    # Kill 2 came right after s2 answered: before s2's result was journaled (s2 runs again), or
    # after (s3 may have started already). Kills 2-4 then each caught s3 or found nothing in flight;
    # check_executions checked that each try of s3 matches a kill that interrupted one.
    assert ex.attempts((rid, "s2")) in ([1], [1, 2])
    assert 2 <= ex.count((rid, "s3")) <= 4
    assert ex.attempts((rid, "s4")) == [1]
    assert ex.attempts((rid, "s5")) == [1, 2]
    assert ex.attempts((rid, "s6")) == [1]
    assert_no_orphans(kills)


# --- nested runs started through callbacks --------------------------------------------------------


INNER = {
    "name": "inner",
    "steps": [delay("inner", {"$input": "seconds"}, {"$input": "label"}, label={"$input": "label"})],
    "output": {"$step": "inner"},
}
OUTER = {
    "name": "outer",
    "steps": [
        {
            "id": "outer",
            "component": "/test/nested",
            "input": {
                "flow_id": {"$input": "flow_id"},
                "input": {"label": {"$input": "label"}, "seconds": 1.0},
                "pause": {"$input": "pause"},
            },
        }
    ],
    "output": {"$step": "outer"},
}


def test_kill_during_nested_runs_of_a_batch(
    start_server, store: Store, record: Record, tmp_path: Path
) -> None:
    """Three items of one run each start a nested run from a component (``runs/submit``). After the
    SIGKILL the items call back in the opposite order: each must still get its own sub-run back."""
    config = gateway_config(store, record.path)
    server = start_server(config)
    inner_id = store_flow(server, INNER)
    fid = store_flow(server, OUTER)
    # attempt 1 calls back in item order, attempt 2 (after the crash) in the reverse order
    items = [{"flow_id": inner_id, "label": f"n{i}", "pause": [0.2 * i, 0.2 * (2 - i)]} for i in range(3)]
    rid = submit(server, fid, items)
    record.wait_for(lambda ls: all(started(f"n{i}")(ls) for i in range(3)), "3 nested runs", server=server)
    kill = crash(server, record, store)

    again = start_server(config, workdir=tmp_path)
    runs = wait_runs(again, [rid])
    got = [r["result"]["payload"] if r and r.get("outcome") == "success" else r for r in runs[rid]["results"]]
    assert got == ["n0", "n1", "n2"], (
        f"after the restart, items got the results of other items' nested runs: {got}. The StepFlow "
        "plugin finds a callback's execution context by (run_id, step_id) only (plugin.py "
        "_find_context / _inflight), so all items of a batch share one: nested-run ids are derived "
        "from the wrong item and in callback order, and a resumed item finds another item's child."
    )
    lines = record.lines()
    for i in range(3):  # each inner step ran once before the kill and once after it
        assert len([ln for ln in lines if ln.ev == "start" and ln.label == f"n{i}"]) == 2, record.dump()
    assert_no_orphans([kill])


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
def test_runs_past_max_startup_recovery_resume_in_the_background(
    start_server, store: Store, record: Record, tmp_path: Path
) -> None:
    """``recovery.maxStartupRecovery`` bounds the work done before the server is ready, not how
    many runs come back: with a limit of 2, all 5 interrupted runs finish after the restart."""
    config = gateway_config(store, record.path) + "recovery: {maxStartupRecovery: 2}\n"
    server = start_server(config)
    fid = store_flow(server, sequential_flow([1.5]))
    rids = [submit(server, fid, [{"data": i}]) for i in range(5)]
    record.wait_for(lambda lines: len(record.events("start", lines)) >= 5, "5 steps started", server=server)
    kill = crash(server, record, store)

    again = start_server(config, workdir=tmp_path)
    runs = wait_runs(again, rids)
    for i, rid in enumerate(rids):
        assert runs[rid] == {"status": "completed", "results": [success(sequential_result(1, i))]}
    assert_no_orphans([kill])
