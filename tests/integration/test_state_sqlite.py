"""SqliteStore against real SQLite files: persistence across reopen, one-transaction completion,
filters, databaseUrl forms and the errors a user can meet."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import SimpleNamespace

import anyio
import pytest
from state_contract import check_error_codes_roundtrip, check_run_listing, contract_cases

from stepflow_gateway.core.result import FlowResult
from stepflow_gateway.errors import StateStoreError
from stepflow_gateway.state.base import ItemRecord, RunFilter, RunRecord, StepRecord
from stepflow_gateway.state.open import open_store
from stepflow_gateway.state.sqlite import SqliteStore, SqliteTarget, parse_database_url

pytestmark = pytest.mark.anyio

T0 = "2026-01-10T12:00:00.000000Z"
T1 = "2026-01-10T12:00:01.500000Z"


def run(
    run_id: str,
    *,
    parent: str | None = None,
    flow_name: str | None = "demo",
    flow_id: str = "f1",
    inputs: list[object] | None = None,
) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        flow_id=flow_id,
        flow_name=flow_name,
        status="running",
        created_at=T0,
        inputs=[{"payload": {"n": 1}}] if inputs is None else inputs,
        parent_run_id=parent,
    )


def store_at(path: Path, mode: str = "rwc", **kw: bool) -> SqliteStore:
    return SqliteStore(SqliteTarget(path, mode), **kw)  # type: ignore[arg-type]


async def test_everything_survives_reopen(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    flow = {"name": "blob-demo", "steps": [], "output": {"$input": "$.x"}}
    items = [
        ItemRecord(0, "completed", FlowResult.success({"out": [1, "é", None]}), T1),
        ItemRecord(1, "failed", FlowResult.failed(500, 'step "get" failed', {"stack": [{"error": "x"}]}), T1),
        ItemRecord(2, "completed", FlowResult.skipped("nothing to do"), T1),
    ]
    steps = [
        StepRecord(
            0, 0, "put", "/builtin/put_blob", "completed", FlowResult.success({"blob_id": "ab"}), T0, T1
        ),
        StepRecord(0, 1, "get", "/builtin/get_blob", "blocked"),
        StepRecord(1, 0, "put", "/builtin/put_blob", "failed", FlowResult.failed(7, "no", None), T0, T1),
    ]
    with anyio.fail_after(30):
        async with store_at(db) as store:
            await store.put_blob("flow-id", flow, "flow")
            await store.put_blob("data-id", [1, {"b": 2, "a": 1}], "data")
            first = run("r1", inputs=[{"x": 1}, {"x": 2}, {"x": 3}])
            first.overrides = {"steps": {"get": {"value": {"onError": {"action": "useDefault"}}}}}
            first.variables = {"api": "http://127.0.0.1:9"}
            await store.create_run(first)
            await store.complete_run("r1", "failed", T1, items, steps)
            await store.create_run(run("r2", parent="r1"))  # left running

        assert db.is_file()
        async with store_at(db, "rw") as store:
            assert await store.get_blob("flow-id") == (flow, "flow")
            got_blob = await store.get_blob("data-id")
            assert got_blob == ([1, {"b": 2, "a": 1}], "data")
            assert list(got_blob[0][1]) == ["b", "a"]  # type: ignore[index]
            r1 = await store.get_run("r1")
            assert r1 is not None
            assert (r1.status, r1.completed_at, r1.root_run_id, r1.parent_run_id) == (
                "failed",
                T1,
                "r1",
                None,
            )
            assert r1.inputs == [{"x": 1}, {"x": 2}, {"x": 3}]
            assert r1.overrides == {"steps": {"get": {"value": {"onError": {"action": "useDefault"}}}}}
            assert r1.variables == {"api": "http://127.0.0.1:9"}
            assert r1.items == items
            assert await store.get_steps("r1") == steps
            r2 = await store.get_run("r2")
            assert r2 is not None
            assert (r2.status, r2.root_run_id, r2.parent_run_id, r2.overrides) == (
                "running",
                "r1",
                "r1",
                None,
            )
            assert [(i.item_index, i.status) for i in r2.items] == [(0, "running")]
            assert await store.runs_of_flow_active("f1") is True
            assert [r.run_id for r in await store.list_runs(RunFilter(max_depth=0))] == ["r1"]
            assert await store.delete_run("r1") is True
            assert await store.get_steps("r1") == []
            assert await store.delete_blob("data-id") is True
            assert await store.delete_blob("data-id") is False

        async with store_at(db, "ro") as store:
            assert await store.get_run("r1") is None
            assert await store.get_blob("data-id") is None
            assert [r.run_id for r in await store.list_runs(RunFilter())] == ["r2"]
            with pytest.raises(StateStoreError, match="readonly"):
                await store.put_blob("z", 1, "data")


async def test_file_is_wal_and_schema_tables_exist(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    async with store_at(db):
        pass
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"blobs", "runs", "items", "steps"} <= tables
        columns = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
        assert "depth" in columns
    finally:
        conn.close()


async def test_complete_run_is_one_transaction(tmp_path: Path) -> None:
    async with store_at(tmp_path / "t.db") as store:
        await store.create_run(run("r1"))
        good_steps = [StepRecord(0, 0, "a", "/c", "completed", FlowResult.success(1))]
        bad_items = [ItemRecord(0, "completed", FlowResult.success({"not json": {1, 2}}), T1)]
        with pytest.raises(StateStoreError, match="not a JSON value"):
            await store.complete_run("r1", "completed", T1, bad_items, good_steps)
        got = await store.get_run("r1")
        assert got is not None and got.status == "running" and got.completed_at is None
        assert await store.get_steps("r1") == []
        # the connection is usable afterwards, and a good completion lands whole
        await store.complete_run(
            "r1", "completed", T1, [ItemRecord(0, "completed", FlowResult.success(1), T1)], good_steps
        )
        got = await store.get_run("r1")
        assert got is not None and got.status == "completed"
        assert await store.get_steps("r1") == good_steps
        # Writes are queued (group commit): one that cannot apply (an unknown run, a duplicate id)
        # is dropped with a warning and the rest of its batch still commits.
        await store.complete_run("ghost", "completed", T1, [], [])
        await store.create_run(run("r1"))
        await store.create_run(run("r2"))
        await store.flush()
        assert await store.get_run("ghost") is None
        got = await store.get_run("r1")
        assert got is not None and got.status == "completed"
        assert (await store.get_run("r2")) is not None


@pytest.mark.parametrize(
    "check",
    contract_cases(),
)
async def test_contract(check: object, tmp_path: Path) -> None:
    with anyio.fail_after(30):
        async with store_at(tmp_path / "contract.db") as store:
            await check(store)  # type: ignore[operator]


async def test_list_runs_every_filter(tmp_path: Path) -> None:
    async with store_at(tmp_path / "l.db") as store:
        await check_run_listing(store, run)
        listed = await store.list_runs(RunFilter(status="completed"))
        assert [(i.item_index, i.status) for i in listed[0].items] == [(0, "completed")]
        assert await store.runs_of_flow_active("f2") is False


async def test_concurrent_writers_share_one_connection(tmp_path: Path) -> None:
    async with store_at(tmp_path / "c.db") as store:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for n in range(50):
                    tg.start_soon(store.put_blob, f"b{n}", {"n": n}, "data")
        for n in range(50):
            assert await store.get_blob(f"b{n}") == ({"n": n}, "data")


def test_parse_database_url_forms(tmp_path: Path) -> None:
    assert parse_database_url("sqlite::memory:") == SqliteTarget(None, "memory")
    assert parse_database_url("sqlite:state/x.db") == SqliteTarget(Path("state/x.db"), "rw")
    assert parse_database_url("sqlite:state/x.db?mode=rwc") == SqliteTarget(Path("state/x.db"), "rwc")
    assert parse_database_url("sqlite://rel.db?mode=ro") == SqliteTarget(Path("rel.db"), "ro")
    assert parse_database_url("sqlite:///abs/x.db") == SqliteTarget(Path("/abs/x.db"), "rw")
    assert parse_database_url("sqlite:x.db?mode=memory") == SqliteTarget(None, "memory")
    with pytest.raises(StateStoreError, match="unknown mode 'rwx'"):
        parse_database_url("sqlite:x.db?mode=rwx")
    with pytest.raises(StateStoreError, match="not a SQLite URL"):
        parse_database_url("postgres://localhost/db")
    with pytest.raises(StateStoreError, match="has no file path"):
        parse_database_url("sqlite:")


async def test_missing_file_without_rwc_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.db"
    store = SqliteStore.from_url(f"sqlite:{missing}")
    with pytest.raises(StateStoreError) as info:
        await store.open()
    assert str(missing) in str(info.value) and "mode=rwc" in str(info.value)
    assert not missing.exists()
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(StateStoreError, match="directory .* cannot be created"):
        await SqliteStore.from_url(f"sqlite:{blocker}/sub/x.db?mode=rwc").open()
    nested = tmp_path / "no" / "such" / "dir" / "x.db"
    async with SqliteStore.from_url(f"sqlite:{nested}?mode=rwc") as created:
        await created.put_blob("n", [1], "data")
    assert nested.is_file()
    with pytest.raises(StateStoreError, match="is not open"):
        await store.get_blob("x")


async def test_auto_migrate_false_on_empty_file(tmp_path: Path) -> None:
    db = tmp_path / "empty.db"
    sqlite3.connect(db).close()
    with pytest.raises(StateStoreError, match="no gateway schema .* autoMigrate is false"):
        await SqliteStore.from_url(f"sqlite:{db}", auto_migrate=False).open()
    async with SqliteStore.from_url(f"sqlite://{db}") as store:  # autoMigrate default: creates it
        await store.put_blob("a", 1, "data")
    async with SqliteStore.from_url(f"sqlite:{db}", auto_migrate=False) as store:
        assert await store.get_blob("a") == (1, "data")


async def test_memory_database_url() -> None:
    async with SqliteStore.from_url("sqlite::memory:") as store:
        await store.create_run(run("m1"))
        got = await store.get_run("m1")
        assert got is not None and got.run_id == "m1"
        assert store.describe() == {"type": "sqlite", "path": None, "mode": "memory"}


async def test_open_store_sqlite_default_creates_state_db(tmp_path: Path) -> None:
    data_dir = tmp_path / ".stepflow-gateway"
    store = open_store(None, default="sqlite", data_dir=data_dir)
    assert isinstance(store, SqliteStore)
    async with store:
        await store.put_blob("k", {"v": True}, "data")
    assert (data_dir / "state.db").is_file()
    cfg = SimpleNamespace(
        type="sqlite", database_url=f"sqlite:{data_dir / 'state.db'}", auto_migrate=False, max_connections=10
    )
    async with open_store(cfg, default="memory", data_dir=tmp_path / "unused") as again:  # type: ignore[attr-defined]
        assert await again.get_blob("k") == ({"v": True}, "data")


async def test_error_codes_keep_their_json_kind_across_reopen(tmp_path: Path) -> None:
    db = tmp_path / "codes.db"
    with anyio.fail_after(30):
        async with store_at(db) as store:
            await check_error_codes_roundtrip(store, run)
        async with store_at(db, "ro") as store:  # read back from the file, not a cache
            got = await store.get_run("codes")
            assert got is not None
            assert [i.result.to_json()["error"]["code"] for i in got.items] == ["COMPONENT_FAILED", 500]


async def test_migrates_every_earlier_version_keeping_its_data(tmp_path: Path) -> None:
    """A database at each earlier schema version, with data, opens at the current one: data kept,
    new tables and columns usable."""
    from stepflow_gateway.core.journal import STEP_FINISHED, JournalEvent
    from stepflow_gateway.state.sqlite import MIGRATIONS, SCHEMA_VERSION

    for start in range(1, SCHEMA_VERSION):
        db = tmp_path / f"v{start}.db"
        with sqlite3.connect(db, isolation_level=None) as conn:
            for version, script in MIGRATIONS:
                if version <= start:
                    conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version={version};\nCOMMIT;")
            conn.execute(
                "INSERT INTO runs (run_id, flow_id, flow_name, status, created_at, inputs) "
                "VALUES ('old', 'f', 'n', 'completed', ?, '[1]')",
                (T1,),
            )
            conn.execute("INSERT INTO items (run_id, item_index, status) VALUES ('old', 0, 'completed')")
            conn.execute("INSERT INTO blobs (blob_id, blob_type, data) VALUES ('b', 'data', '{\"x\": 1}')")
        conn.close()
        async with store_at(db) as store:
            got = await store.get_run("old")
            assert got is not None and got.status == "completed" and got.inputs == [1]
            assert await store.get_blob("b") == ({"x": 1}, "data")
            await store.put_record("k", {"v": 2})
            store.append([JournalEvent(1, "old", "old", STEP_FINISHED, 0, "s", 1, {"outcome": "success"})])
            await store.flush()
            assert await store.get_record("k") == {"v": 2}
            assert [e.kind for e in await store.read_journal("old")] == [STEP_FINISHED]
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        conn.close()


async def test_a_newer_database_is_refused(tmp_path: Path) -> None:
    from stepflow_gateway.state.sqlite import SCHEMA_VERSION

    db = tmp_path / "newer.db"
    async with store_at(db):
        pass
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(StateStoreError) as info:
        async with store_at(db):
            pass
    message = str(info.value)
    assert str(db) in message and f"schema version {SCHEMA_VERSION + 1}" in message and "newer" in message


async def test_the_wal_file_stays_bounded_under_a_writer_that_never_pauses(tmp_path: Path) -> None:
    # Regression: checkpoints in a thread beside the writer never completed, and the WAL grew by
    # ~70 KB per run without end (5.9 GB after 82k runs).
    db = tmp_path / "busy.db"
    async with store_at(db) as store:
        for i in range(3000):
            await store.create_run(run(f"r{i}"))
            await store.complete_run(f"r{i}", "completed", T1, [ItemRecord(0, "completed", None, T1)], [])
            await store.flush()
        wal = db.with_name(db.name + "-wal").stat().st_size
    assert wal < 16 * 1024 * 1024, f"WAL at {wal} bytes after 3000 commits"
