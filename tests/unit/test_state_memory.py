"""MemoryStore: the StateStore contract, copy isolation, and its run and blob bounds."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import anyio
import pytest
from state_contract import check_error_codes_roundtrip, check_run_listing, contract_cases
from structlog.testing import capture_logs

from stepflow_gateway.core.result import FlowResult
from stepflow_gateway.errors import ConfigError, RunNotFound, StateStoreError
from stepflow_gateway.state.base import ItemRecord, RunFilter, RunRecord, StepRecord
from stepflow_gateway.state.memory import MemoryStore
from stepflow_gateway.state.open import open_store
from stepflow_gateway.state.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

T0 = "2026-01-10T12:00:00.000000Z"
T1 = "2026-01-10T12:00:01.000000Z"


def run(
    run_id: str,
    *,
    flow_id: str = "f1",
    flow_name: str | None = "demo",
    parent: str | None = None,
    inputs: list[object] | None = None,
    status: str = "running",
) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        flow_id=flow_id,
        flow_name=flow_name,
        status=status,
        created_at=T0,
        inputs=[{"x": 1}] if inputs is None else inputs,
        parent_run_id=parent,
    )


async def test_blobs_roundtrip_copy_and_delete() -> None:
    async with MemoryStore() as store:
        data = {"b": [1, 2, {"c": None}], "a": "é"}
        await store.put_blob("id1", data, "data")
        got = await store.get_blob("id1")
        assert got == (data, "data")
        assert got is not None
        got[0]["b"].append(99)  # the caller's copy only
        assert await store.get_blob("id1") == (data, "data")
        assert list((await store.get_blob("id1"))[0]) == ["b", "a"]  # type: ignore[index]
        assert await store.get_blob("missing") is None
        assert await store.delete_blob("id1") is True
        assert await store.delete_blob("id1") is False
        assert await store.get_blob("id1") is None
        assert store.blob_bytes == 0


async def test_blob_put_twice_keeps_data_and_upgrades_to_flow() -> None:
    async with MemoryStore() as store:
        await store.put_blob("x", {"v": 1}, "data")
        await store.put_blob("x", {"v": 1}, "flow")
        await store.put_blob("x", {"v": 1}, "data")
        assert await store.get_blob("x") == ({"v": 1}, "flow")


async def test_non_json_blob_is_rejected_clearly() -> None:
    async with MemoryStore() as store:
        with pytest.raises(StateStoreError, match="cannot store blob bad: not a JSON value"):
            await store.put_blob("bad", {"s": {1, 2}}, "data")
        with pytest.raises(StateStoreError, match="not a JSON value"):
            await store.put_blob("nan", float("nan"), "data")
        assert await store.get_blob("bad") is None


async def test_create_get_complete_and_steps() -> None:
    async with MemoryStore() as store:
        await store.create_run(run("r1", inputs=[{"n": 1}, {"n": 2}]))
        got = await store.get_run("r1")
        assert got is not None
        assert got.root_run_id == "r1"
        assert got.status == "running"
        assert [(i.item_index, i.status, i.result) for i in got.items] == [
            (0, "running", None),
            (1, "running", None),
        ]
        assert await store.runs_of_flow_active("f1") is True

        steps = [
            StepRecord(1, 0, "a", "/builtin/eval", "completed", FlowResult.success({"v": 2}), T0, T1),
            StepRecord(0, 1, "b", "/mock/x", "blocked"),
            StepRecord(0, 0, "a", "/builtin/eval", "completed", FlowResult.success({"v": 1}), T0, T1),
        ]
        items = [
            ItemRecord(0, "completed", FlowResult.success(1), T1),
            ItemRecord(1, "failed", FlowResult.failed(500, 'step "a" failed', {"stack": []}), T1),
        ]
        await store.complete_run("r1", "failed", T1, items, steps)
        got = await store.get_run("r1")
        assert got is not None
        assert (got.status, got.completed_at) == ("failed", T1)
        assert got.items == items
        assert await store.get_steps("r1") == sorted(steps, key=lambda s: (s.item_index, s.step_index))
        assert await store.runs_of_flow_active("f1") is False
        assert await store.get_steps("nope") == []

        with pytest.raises(RunNotFound, match="Execution 'nope' not found"):
            await store.complete_run("nope", "completed", T1, [], [])
        with pytest.raises(StateStoreError, match="run 'r1' already exists"):
            await store.create_run(run("r1"))


async def test_completion_without_items_finishes_running_items() -> None:
    async with MemoryStore() as store:
        await store.create_run(run("r1", inputs=[1, 2, 3]))
        await store.complete_run(
            "r1", "cancelled", T1, [ItemRecord(0, "completed", FlowResult.success(0), T1)], []
        )
        got = await store.get_run("r1")
        assert got is not None
        assert [(i.item_index, i.status, i.completed_at) for i in got.items] == [
            (0, "completed", T1),
            (1, "cancelled", T1),
            (2, "cancelled", T1),
        ]


async def test_returned_records_are_copies() -> None:
    async with MemoryStore() as store:
        original = run("r1")
        await store.create_run(original)
        original.inputs.append("later")
        got = await store.get_run("r1")
        assert got is not None
        assert got.inputs == [{"x": 1}]
        got.items.clear()
        got.status = "completed"
        again = await store.get_run("r1")
        assert again is not None and again.status == "running" and len(again.items) == 1


@pytest.mark.parametrize(
    "check",
    contract_cases(),
)
async def test_contract(check: object) -> None:
    with anyio.fail_after(30):
        async with MemoryStore() as store:
            await check(store)  # type: ignore[operator]


async def test_list_runs_filters_depth_and_paging() -> None:
    async with MemoryStore() as store:
        await check_run_listing(store, run)
        grandchild = await store.get_run("grandchild")
        assert grandchild is not None and grandchild.root_run_id == "root"
        with pytest.raises(StateStoreError, match="must be >= 0"):
            await store.list_runs(RunFilter(offset=-1))


async def test_delete_run() -> None:
    async with MemoryStore() as store:
        await store.create_run(run("r1"))
        await store.complete_run("r1", "completed", T1, [], [StepRecord(0, 0, "s", "/c", "completed")])
        await store.create_run(run("r2"))
        assert await store.delete_run("r1") is True
        assert await store.delete_run("r1") is False
        assert await store.get_run("r1") is None
        assert await store.get_steps("r1") == []
        assert await store.runs_of_flow_active("f1") is True
        assert await store.delete_run("r2") is True
        assert await store.runs_of_flow_active("f1") is False


async def test_bound_keeps_10k_finished_runs_and_all_running_ones() -> None:
    total = 10_050
    with anyio.fail_after(60):
        async with MemoryStore() as store:
            await store.create_run(run("still-running"))
            for n in range(total):
                rid = f"r{n}"
                await store.create_run(run(rid))
                await store.complete_run(
                    rid,
                    "completed",
                    T1,
                    [ItemRecord(0, "completed", FlowResult.success(n), T1)],
                    [StepRecord(0, 0, "s", "/c", "completed", FlowResult.success(n))],
                )
            kept = await store.list_runs(RunFilter(status="completed"))
            assert len(kept) == 10_000
            assert kept[0].run_id == f"r{total - 1}" and kept[-1].run_id == "r50"
            assert await store.get_run("r49") is None
            assert await store.get_steps("r49") == []
            assert await store.get_steps("r50") != []
            assert await store.get_run("still-running") is not None
            assert len(await store.list_runs(RunFilter())) == 10_001


async def test_small_run_bound_evicts_oldest_finished_first() -> None:
    async with MemoryStore(max_finished_runs=2) as store:
        for rid in ("a", "b", "c"):
            await store.create_run(run(rid))
        await store.complete_run("b", "completed", T1, [], [])
        await store.complete_run("a", "completed", T1, [], [])
        await store.complete_run("c", "completed", T1, [], [])  # b finished first -> evicted
        assert [r.run_id for r in await store.list_runs(RunFilter())] == ["c", "a"]


async def test_blob_cap_evicts_oldest_data_blobs_but_never_flows() -> None:
    async with MemoryStore(max_blob_bytes=100) as store:
        await store.put_blob("flow1", {"name": "f" * 20}, "flow")  # ~30 bytes, kept
        await store.put_blob("d1", "a" * 30, "data")
        await store.put_blob("d2", "b" * 30, "data")
        with capture_logs() as logs:
            await store.put_blob("d3", "c" * 30, "data")
        assert await store.get_blob("d1") is None
        assert await store.get_blob("flow1") is not None
        assert await store.get_blob("d2") is not None and await store.get_blob("d3") is not None
        assert store.blob_bytes <= 100
        evictions = [e for e in logs if "evicted the oldest blobs" in e["event"]]
        assert evictions and evictions[0]["evicted"] == 1 and evictions[0]["log_level"] == "warning"


async def test_open_store_choices(tmp_path: Path) -> None:
    assert isinstance(open_store(None, default="memory", data_dir=tmp_path), MemoryStore)
    cfg = SimpleNamespace(type="inMemory", database_url=None, auto_migrate=True, max_connections=10)
    assert isinstance(open_store(cfg, default="sqlite", data_dir=tmp_path), MemoryStore)
    sqlite_store = open_store(
        SimpleNamespace(type="sqlite", database_url="sqlite::memory:", auto_migrate=True, max_connections=10),
        default="memory",
        data_dir=tmp_path,
    )
    assert isinstance(sqlite_store, SqliteStore) and sqlite_store.describe()["path"] is None
    pg = open_store(
        SimpleNamespace(
            type="postgres",
            database_url="postgres://gw:secret@db:6543/x",
            auto_migrate=False,
            max_connections=3,
        ),
        default="memory",
        data_dir=tmp_path,
    )
    assert type(pg).__name__ == "PostgresStore" and pg.describe() == {
        "type": "postgres",
        "host": "db",
        "port": "6543",
        "database": "x",
        "maxConnections": 3,
    }
    with pytest.raises(ConfigError, match="state store 'postgres' needs a databaseUrl"):
        open_store(
            SimpleNamespace(type="postgres", database_url=None, auto_migrate=True, max_connections=10),
            default="memory",
            data_dir=tmp_path,
        )
    with pytest.raises(ConfigError, match="unknown state store type 'redis'"):
        open_store(SimpleNamespace(type="redis"), default="memory", data_dir=tmp_path)


async def test_finished_runs_are_bounded_by_their_step_records_too() -> None:
    def steps_of(n: int) -> list[StepRecord]:
        return [StepRecord(0, i, f"s{i}", "/c", "completed", FlowResult("success", i)) for i in range(n)]

    async with MemoryStore(max_finished_runs=100, max_finished_steps=25) as store:
        for k in range(6):
            rid = f"00000000-0000-4000-8000-00000000000{k}"
            await store.create_run(RunRecord(rid, "f", "flow", "running", "t", [None]))
            await store.complete_run(rid, "completed", "t", [ItemRecord(0, "completed")], steps_of(10))
        kept = [r.run_id[-1] for r in await store.list_runs(RunFilter())]
        assert kept == ["5", "4"]  # 20 step records <= 25; a third run would make 30
        assert len(await store.get_steps("00000000-0000-4000-8000-000000000005")) == 10
        # a run bigger than the whole bound is still kept while it is the newest
        big = "00000000-0000-4000-8000-000000000009"
        await store.create_run(RunRecord(big, "f", "flow", "running", "t", [None]))
        await store.complete_run(big, "completed", "t", [ItemRecord(0, "completed")], steps_of(40))
        assert [r.run_id for r in await store.list_runs(RunFilter())] == [big]
        assert await store.delete_run(big)
        assert await store.list_runs(RunFilter()) == []


async def test_max_finished_runs_zero_keeps_no_finished_run() -> None:
    async with MemoryStore(max_finished_runs=0) as store:
        rid = "00000000-0000-4000-8000-000000000001"
        await store.create_run(RunRecord(rid, "f", "flow", "running", "t", [None]))
        assert await store.get_run(rid) is not None  # running runs are never evicted
        await store.complete_run(rid, "completed", "t", [ItemRecord(0, "completed")], [])
        assert await store.get_run(rid) is None


async def test_error_codes_keep_their_json_kind() -> None:
    async with MemoryStore() as store:
        await check_error_codes_roundtrip(store, run)
