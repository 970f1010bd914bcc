"""What every ``StateStore`` must do alike, checked against each store by its own test module.

Each ``check_*`` takes an open, empty store. ``contract_cases()`` lists them as pytest params for
``@pytest.mark.parametrize("check", contract_cases(...))``; a store module marks the checks it
cannot pass yet as ``xfail`` (strict: they must be unmarked once they pass).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import pytest

from stepflow_gateway.core.journal import (
    ITEM_FINISHED,
    RUN_CREATED,
    RUN_FINISHED,
    STEP_FINISHED,
    STEP_STARTED,
    JournalEvent,
    replay,
)
from stepflow_gateway.core.result import FlowResult
from stepflow_gateway.state.base import ItemRecord, RunFilter, RunRecord, StepRecord

T0 = "2026-01-10T12:00:00.000000Z"
COMPLETED_AT = "2026-01-10T12:00:01.000000Z"

Check = Callable[[Any], Awaitable[None]]


def new_run(
    run_id: str,
    *,
    parent: str | None = None,
    flow_name: str | None = "demo",
    flow_id: str = "f1",
    inputs: list[Any] | None = None,
    max_concurrency: int | None = None,
) -> RunRecord:
    """A ``running`` record, as the engine creates it."""
    return RunRecord(
        run_id=run_id,
        flow_id=flow_id,
        flow_name=flow_name,
        status="running",
        created_at=T0,
        inputs=[{"x": 1}] if inputs is None else inputs,
        parent_run_id=parent,
        max_concurrency=max_concurrency,
    )


def event(seq: int, root: str, kind: str, **kw: Any) -> JournalEvent:
    kw.setdefault("run_id", root)
    kw.setdefault("at", 1_768_046_400.0 + seq / 1000)
    return JournalEvent(seq=seq, root_run_id=root, kind=kind, **kw)


async def check_run_listing(store: Any, run: Callable[..., RunRecord] = new_run) -> None:
    """``list_runs``: newest first, every filter, depth, paging. ``run`` builds a running record."""
    await store.create_run(run("root", flow_name="outer"))
    await store.create_run(run("child", flow_name="inner", parent="root"))
    await store.create_run(run("grandchild", flow_name="inner", parent="child"))
    await store.create_run(run("other", flow_name="outer", flow_id="f2"))
    await store.complete_run("other", "completed", COMPLETED_AT, [], [])

    async def ids(**kw: object) -> list[str]:
        return [r.run_id for r in await store.list_runs(RunFilter(**kw))]  # type: ignore[arg-type]

    assert await ids() == ["other", "grandchild", "child", "root"]
    assert await ids(max_depth=0) == ["other", "root"]
    assert await ids(max_depth=1) == ["other", "child", "root"]
    assert await ids(root_run_id="root") == ["grandchild", "child", "root"]
    assert await ids(parent_run_id="child") == ["grandchild"]
    assert await ids(flow_name="inner") == ["grandchild", "child"]
    assert await ids(status="completed") == ["other"]
    assert await ids(status="running", flow_name="outer") == ["root"]
    assert await ids(limit=2) == ["other", "grandchild"]
    assert await ids(limit=2, offset=1) == ["grandchild", "child"]
    assert await ids(offset=3) == ["root"]
    assert await ids(offset=10) == []
    assert await ids(limit=0) == []


async def check_runs_roundtrip(store: Any) -> None:
    """A run, its children, completion (items merged, steps kept), reads of earlier writes, delete."""
    first = new_run("r1", inputs=[{"x": 1}, {"x": 2}])
    first.overrides = {"steps": {"get": {"value": {"onError": {"action": "useDefault"}}}}}
    first.variables = {"b": 1, "a": "é"}
    await store.create_run(first)
    got = await store.get_run("r1")  # no flush: a read sees every earlier write
    assert got is not None
    assert (got.status, got.root_run_id, got.parent_run_id) == ("running", "r1", None)
    assert got.inputs == [{"x": 1}, {"x": 2}] and got.overrides == first.overrides
    assert list(got.variables) == ["b", "a"]
    assert got.items == [ItemRecord(0, "running"), ItemRecord(1, "running")]
    assert await store.runs_of_flow_active("f1") is True

    await store.create_run(new_run("c1", parent="r1", flow_id="f2"))
    await store.create_run(new_run("g1", parent="c1", flow_id="f2"))
    assert (await store.get_run("g1")).root_run_id == "r1"

    steps = [
        StepRecord(1, 1, "b", "/mock/b", "failed", FlowResult.failed(7, "no", None), T0, COMPLETED_AT),
        StepRecord(0, 0, "a", "/mock/a", "completed", FlowResult.success({"v": [1, None]}), T0, COMPLETED_AT),
        StepRecord(1, 0, "a", "/mock/a", "completed", FlowResult.success(2), T0, COMPLETED_AT),
    ]
    items = [ItemRecord(1, "failed", FlowResult.failed(500, 'step "b" failed', {"step": "b"}), COMPLETED_AT)]
    await store.complete_run("r1", "failed", COMPLETED_AT, items, steps)
    got = await store.get_run("r1")
    assert got is not None
    assert (got.status, got.completed_at) == ("failed", COMPLETED_AT)
    assert got.items == [ItemRecord(0, "failed", None, COMPLETED_AT), items[0]]
    assert await store.runs_of_flow_active("f1") is False
    assert await store.runs_of_flow_active("f2") is True
    assert await store.get_steps("r1") == sorted(steps, key=lambda s: (s.item_index, s.step_index))
    assert await store.get_steps("nope") == []
    assert await store.get_run("nope") is None

    assert await store.delete_run("g1") is True
    assert await store.delete_run("g1") is False
    assert await store.get_run("g1") is None
    assert [r.run_id for r in await store.list_runs(RunFilter())] == ["c1", "r1"]


async def check_max_concurrency_kept(store: Any) -> None:
    await store.create_run(new_run("r1", max_concurrency=3))
    await store.create_run(new_run("r2"))
    assert (await store.get_run("r1")).max_concurrency == 3
    assert (await store.get_run("r2")).max_concurrency is None


async def check_blobs(store: Any) -> None:
    """Content-addressed blobs: round trip with key order, first data kept, 'flow' sticks, delete."""
    data = {"b": [1, 2, {"c": None}], "a": "é"}
    await store.put_blob("id1", data, "data")
    got = await store.get_blob("id1")
    assert got == (data, "data") and list(got[0]) == ["b", "a"]
    await store.put_blob("id1", data, "flow")  # the same content, now also a stored flow
    await store.put_blob("id1", data, "data")
    assert await store.get_blob("id1") == (data, "flow")
    assert await store.get_blob("missing") is None
    assert await store.delete_blob("id1") is True
    assert await store.delete_blob("id1") is False
    assert await store.get_blob("id1") is None


async def check_records_overwrite(store: Any) -> None:
    """``put_record`` replaces (the MCP catalogue bug: written with put_blob it never changed)."""
    assert await store.get_record("mcp/catalogue") is None
    await store.put_record("mcp/catalogue", {"tools": ["a"], "version": 1})
    await store.put_record("mcp/catalogue", {"tools": ["a", "b"], "version": 2})
    assert await store.get_record("mcp/catalogue") == {"tools": ["a", "b"], "version": 2}
    await store.put_record("other", [1, "two", None])
    await store.put_record("mcp/catalogue", {"z": 1, "a": 2})
    got = await store.get_record("mcp/catalogue")
    assert got == {"z": 1, "a": 2} and list(got) == ["z", "a"]
    assert await store.get_record("other") == [1, "two", None]


def _journal(root: str = "root") -> list[JournalEvent]:
    ok = FlowResult.success({"out": [1, "é"]}).to_json()
    return [
        event(1, root, RUN_CREATED, data={"flowId": "f1", "parentRunId": None, "itemCount": 1}),
        event(2, root, STEP_STARTED, item=0, step="a", attempt=1),
        event(
            3, root, RUN_CREATED, run_id="child", data={"flowId": "f2", "parentRunId": root, "itemCount": 1}
        ),
        event(4, root, STEP_FINISHED, item=0, step="a", attempt=1, data=ok),
        event(5, root, ITEM_FINISHED, item=0, data=ok),
        event(6, root, RUN_FINISHED, data={"status": "completed"}),
    ]


async def check_journal_order_and_since(store: Any) -> None:
    """Events come back in sequence order, exactly as appended; ``since`` resumes after a seq."""
    events = _journal()
    await store.create_run(new_run("root"))
    store.append(events[:2])
    store.append([events[3], events[2]])  # appended out of order: read back by seq
    store.append(events[4:])
    await store.flush()
    assert await store.read_journal("root") == events
    assert await store.read_journal("root", since=3) == events[3:]
    assert await store.read_journal("root", since=6) == []
    assert await store.read_journal("other") == []
    store.append([event(7, "root", STEP_STARTED, item=0, step="b", attempt=2)])
    assert [e.seq for e in await store.read_journal("root", since=5)] == [6, 7]  # no flush needed
    state = replay("root", await store.read_journal("root"))
    assert state.finished_status == "completed" and state.last_seq == 7
    assert state.items[0] == FlowResult.success({"out": [1, "é"]})


async def check_large_journal_values(store: Any) -> None:
    """Values over 64 KiB of JSON (stored aside by SQL stores) read back equal, twice over."""
    big = {"z": "x" * 70_000, "a": list(range(5_000)), "nested": {"é": [None, True, 1.5]}}
    result = FlowResult.success(big).to_json()
    events = [
        event(1, "big", STEP_FINISHED, item=0, step="a", attempt=1, data=result),
        event(2, "big", STEP_FINISHED, item=1, step="a", attempt=1, data=result),  # the same value
        event(3, "big", ITEM_FINISHED, item=0, data={"small": 1}),
    ]
    store.append(events)
    await store.flush()
    got = await store.read_journal("big")
    assert got == events
    assert list(got[0].data["result"]) == ["z", "a", "nested"]


async def check_unfinished_runs(store: Any) -> None:
    """Top-level runs still ``running``, oldest first (children and finished runs left out)."""
    for run_id in ("a", "b"):
        await store.create_run(new_run(run_id))
    await store.create_run(new_run("a-child", parent="a"))
    await store.create_run(new_run("done"))
    await store.complete_run("done", "completed", COMPLETED_AT, [], [])
    await store.create_run(new_run("d"))
    assert [r.run_id for r in await store.unfinished_runs()] == ["a", "b", "d"]
    assert [r.run_id for r in await store.unfinished_runs(limit=2)] == ["a", "b"]
    await store.complete_run("b", "cancelled", COMPLETED_AT, [], [])
    got = await store.unfinished_runs()
    assert [r.run_id for r in got] == ["a", "d"]
    assert got[0].items == [ItemRecord(0, "running")] and got[0].inputs == [{"x": 1}]


async def check_on_commit(store: Any) -> None:
    """``on_commit`` gets every appended event once, in order, on the event loop, once committed."""
    batches: list[list[JournalEvent]] = []

    def listener(events: list[JournalEvent]) -> None:
        asyncio.get_running_loop()  # raises off the event loop
        batches.append(list(events))

    store.on_commit = listener
    events = _journal()
    store.append(events[:3])
    store.append(events[3:5])
    await store.flush()
    assert [e for batch in batches for e in batch] == events[:5]
    store.append(events[5:])
    await store.put_record("k", 1)  # a write without events: no empty batch
    await store.flush()
    assert [e for batch in batches for e in batch] == events
    assert all(batches)


async def check_delete_run_drops_its_journal(store: Any) -> None:
    await store.create_run(new_run("root"))
    await store.create_run(new_run("child", parent="root"))
    store.append(_journal("root"))
    await store.flush()
    assert await store.delete_run("child") is True
    assert len(await store.read_journal("root")) == 6  # a child's events are its root's
    assert await store.delete_run("root") is True
    assert await store.read_journal("root") == []


CHECKS: dict[str, Check] = {
    "run_listing": check_run_listing,
    "runs_roundtrip": check_runs_roundtrip,
    "max_concurrency_kept": check_max_concurrency_kept,
    "blobs": check_blobs,
    "records_overwrite": check_records_overwrite,
    "journal_order_and_since": check_journal_order_and_since,
    "large_journal_values": check_large_journal_values,
    "unfinished_runs": check_unfinished_runs,
    "on_commit": check_on_commit,
    "delete_run_drops_its_journal": check_delete_run_drops_its_journal,
}
JOURNAL_CHECKS = frozenset(
    {
        "records_overwrite",
        "journal_order_and_since",
        "large_journal_values",
        "unfinished_runs",
        "on_commit",
        "delete_run_drops_its_journal",
    }
)
"""The checks of the journal, records and recovery API (issue 12, ``state/base.py``)."""


def contract_cases(xfail: Iterable[str] = (), reason: str = "") -> list[Any]:
    """``CHECKS`` as pytest params (ids = their names); those in ``xfail`` marked strict xfail."""
    marked = set(xfail)
    unknown = marked - set(CHECKS)
    assert not unknown, f"unknown contract checks: {sorted(unknown)}"
    return [
        pytest.param(
            fn, id=name, marks=[pytest.mark.xfail(reason=reason, strict=True)] if name in marked else []
        )
        for name, fn in CHECKS.items()
    ]


async def check_error_codes_roundtrip(store: Any, run: Callable[..., RunRecord]) -> None:
    """Item and step results keep their error code's JSON kind: 0.9.0-era integers stay integers,
    upstream HEAD's ``TaskErrorCode`` names stay strings (upstream issue #773)."""
    from stepflow_gateway.core.result import FlowResult
    from stepflow_gateway.state.base import ItemRecord, StepRecord

    named = FlowResult.failed("COMPONENT_FAILED", "error", {"stack": [{"error": "x"}]})
    numeric = FlowResult.failed(500, 'step "s" failed')
    items = [
        ItemRecord(0, "failed", named, COMPLETED_AT),
        ItemRecord(1, "failed", numeric, COMPLETED_AT),
    ]
    steps = [
        StepRecord(0, 0, "s", "/mock/error", "failed", named, COMPLETED_AT, COMPLETED_AT),
        StepRecord(1, 0, "s", "/mock/error", "failed", numeric, COMPLETED_AT, COMPLETED_AT),
    ]
    await store.create_run(run("codes", inputs=[{"mode": "error"}, {"mode": "old"}]))
    await store.complete_run("codes", "failed", COMPLETED_AT, items, steps)
    got = await store.get_run("codes")
    assert got is not None
    assert [i.result for i in got.items] == [named, numeric]
    codes = [i.result.to_json()["error"]["code"] for i in got.items]
    assert codes == ["COMPONENT_FAILED", 500]
    assert [type(c) for c in codes] == [str, int]
    got_steps = await store.get_steps("codes")
    assert [s.result for s in got_steps] == [named, numeric]
    assert [type(s.result.error.code) for s in got_steps] == [str, int]
