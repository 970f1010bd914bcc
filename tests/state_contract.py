"""What every ``StateStore`` must do alike, checked against each store by its own test module."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stepflow_gateway.state.base import RunFilter, RunRecord

COMPLETED_AT = "2026-01-10T12:00:01.000000Z"


async def check_run_listing(store: Any, run: Callable[..., RunRecord]) -> None:
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
