"""PostgresStore against a real PostgreSQL server (``tests/postgres.py``): the shared contract,
persistence across reopen, versioned migrations, bad URLs, and the server going away mid-run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import anyio
import psycopg
import pytest
from postgres import PgServer, require_postgres
from state_contract import contract_cases, event, new_run

from stepflow_gateway.core.journal import STEP_FINISHED, STEP_STARTED
from stepflow_gateway.core.result import FlowResult
from stepflow_gateway.errors import StateStoreError
from stepflow_gateway.state.base import ItemRecord, RunFilter, StepRecord
from stepflow_gateway.state.open import open_store
from stepflow_gateway.state.postgres import SCHEMA_VERSION, PostgresStore, parse_database_url

pytestmark = pytest.mark.anyio

T1 = "2026-01-10T12:00:01.000000Z"


def schema_version(url: str) -> int:
    with psycopg.connect(url, connect_timeout=10) as conn:
        row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
        assert row is not None
        return int(row[0])


def execute(url: str, sql: str) -> None:
    with psycopg.connect(url, connect_timeout=10, autocommit=True) as conn:
        conn.execute(sql)


@pytest.mark.parametrize("check", contract_cases())
async def test_contract(check: Any, pg_database: str) -> None:
    with anyio.fail_after(60):
        async with PostgresStore(pg_database) as store:
            assert store.durable is True
            await check(store)
            await store.flush()
            assert store.pending_writes == 0


async def test_everything_survives_reopen(pg_database: str) -> None:
    flow = {"name": "demo", "steps": [], "output": {"$input": "$.x"}}
    with anyio.fail_after(60):
        async with PostgresStore(pg_database, max_connections=2) as store:
            await store.put_blob("flow-id", flow, "flow")
            await store.put_record("catalogue", {"tools": ["t1"]})
            run = new_run("r1", inputs=[{"x": 1}, {"x": 2}], max_concurrency=4)
            await store.create_run(run)
            await store.create_run(new_run("c1", parent="r1"))
            store.append([event(1, "r1", STEP_STARTED, item=0, step="a", attempt=1)])
            store.append(
                [event(2, "r1", STEP_FINISHED, item=0, step="a", attempt=1, data={"outcome": "success"})]
            )
            await store.complete_run(
                "c1",
                "completed",
                T1,
                [ItemRecord(0, "completed", FlowResult.success(1), T1)],
                [StepRecord(0, 0, "a", "/mock/a", "completed", FlowResult.success(1), T1, T1)],
            )
            # closing commits whatever is still queued

        async with PostgresStore(pg_database) as store:
            assert await store.get_blob("flow-id") == (flow, "flow")
            assert await store.get_record("catalogue") == {"tools": ["t1"]}
            got = await store.get_run("r1")
            assert got is not None and got.max_concurrency == 4 and len(got.items) == 2
            assert [r.run_id for r in await store.unfinished_runs()] == ["r1"]
            assert [e.seq for e in await store.read_journal("r1")] == [1, 2]
            child = await store.get_run("c1")
            assert child is not None and (child.status, child.root_run_id) == ("completed", "r1")
            assert (await store.get_steps("c1"))[0].result == FlowResult.success(1)
    assert schema_version(pg_database) == SCHEMA_VERSION


_V1_BY_HAND = """
CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now());
INSERT INTO schema_version (version) VALUES (1);
CREATE TABLE blobs (blob_id TEXT PRIMARY KEY, blob_type TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE runs (
    seq BIGSERIAL PRIMARY KEY, run_id TEXT NOT NULL UNIQUE, flow_id TEXT NOT NULL, flow_name TEXT,
    status TEXT NOT NULL, created_at TEXT NOT NULL, completed_at TEXT, root_run_id TEXT,
    parent_run_id TEXT, depth INTEGER NOT NULL DEFAULT 0, inputs TEXT NOT NULL, overrides TEXT,
    variables TEXT
);
CREATE TABLE items (
    run_id TEXT NOT NULL, item_index INTEGER NOT NULL, status TEXT NOT NULL, result TEXT,
    completed_at TEXT, PRIMARY KEY (run_id, item_index)
);
CREATE TABLE steps (
    run_id TEXT NOT NULL, item_index INTEGER NOT NULL, step_index INTEGER NOT NULL,
    step_id TEXT NOT NULL, component TEXT NOT NULL, status TEXT NOT NULL, result TEXT,
    started_at TEXT, completed_at TEXT, PRIMARY KEY (run_id, item_index, step_index)
);
INSERT INTO blobs VALUES ('b1', 'data', '{"k":[1,2]}');
INSERT INTO runs (run_id, flow_id, flow_name, status, created_at, root_run_id, inputs)
    VALUES ('old', 'f1', 'demo', 'running', '2026-01-01T00:00:00.000000Z', 'old', '[{"x":1}]');
INSERT INTO items VALUES ('old', 0, 'running', NULL, NULL);
INSERT INTO steps VALUES ('old', 0, 0, 'a', '/mock/a', 'completed', '{"outcome":"success","result":5}',
    '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:01.000000Z');
"""


async def test_migrates_a_version_1_database_keeping_its_data(pg_database: str) -> None:
    execute(pg_database, _V1_BY_HAND)
    with pytest.raises(
        StateStoreError, match="schema version 1, older than this gateway's 2 and autoMigrate"
    ):
        async with PostgresStore(pg_database, auto_migrate=False):
            pass
    with anyio.fail_after(60):
        async with PostgresStore(pg_database) as store:
            assert await store.get_blob("b1") == ({"k": [1, 2]}, "data")
            old = await store.get_run("old")
            assert old is not None and old.max_concurrency is None and old.inputs == [{"x": 1}]
            assert old.items == [ItemRecord(0, "running")]
            assert (await store.get_steps("old"))[0].result == FlowResult.success(5)
            assert [r.run_id for r in await store.unfinished_runs()] == ["old"]
            await store.put_record("k", {"v": 1})
            store.append([event(1, "old", STEP_STARTED, item=0, step="b", attempt=1)])
            await store.flush()
            assert len(await store.read_journal("old")) == 1
    assert schema_version(pg_database) == 2
    with psycopg.connect(pg_database, connect_timeout=10) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")]
    assert versions == [1, 2]
    async with PostgresStore(pg_database, auto_migrate=False) as store:  # current now: fine
        assert await store.get_record("k") == {"v": 1}


async def test_a_newer_schema_is_refused(pg_database: str) -> None:
    execute(
        pg_database,
        "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ DEFAULT now());"
        "INSERT INTO schema_version (version) VALUES (1), (7);",
    )
    port = parse_database_url(pg_database)["port"]
    with pytest.raises(StateStoreError) as info:
        async with PostgresStore(pg_database):
            pass
    msg = str(info.value)
    assert f"127.0.0.1:{port}/" in msg
    assert "has schema version 7, newer than this gateway's 2" in msg
    assert "use a newer stepflow-gateway" in msg


async def test_auto_migrate_false_on_an_empty_database(pg_database: str) -> None:
    with pytest.raises(StateStoreError) as info:
        async with PostgresStore(pg_database, auto_migrate=False):
            pass
    msg = str(info.value)
    assert "has no gateway schema (missing tables: blobs, runs, items, steps, records, journal)" in msg
    assert "autoMigrate is false; open it once with autoMigrate: true" in msg
    with psycopg.connect(pg_database, connect_timeout=10) as conn:  # nothing was created
        assert conn.execute("SELECT to_regclass('schema_version')").fetchone() == (None,)


async def test_gateways_starting_together_migrate_once(pg_database: str) -> None:
    stores = [PostgresStore(pg_database, max_connections=1) for _ in range(4)]
    with anyio.fail_after(60):
        await asyncio.gather(*(s.open() for s in stores))
        try:
            await stores[0].create_run(new_run("r1"))
            await stores[0].flush()
            assert (await stores[3].get_run("r1")) is not None
        finally:
            await asyncio.gather(*(s.close() for s in stores))
    with psycopg.connect(pg_database, connect_timeout=10) as conn:
        assert [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")] == [1, 2]


async def test_bad_writes_are_dropped_and_the_rest_commits(pg_database: str) -> None:
    async with PostgresStore(pg_database) as store:
        await store.create_run(new_run("r1"))
        await store.create_run(new_run("r1", flow_id="again"))  # a duplicate id: dropped
        await store.complete_run("ghost", "completed", T1, [], [])  # unknown run: dropped
        await store.create_run(new_run("bad\x00id"))  # PostgreSQL text refuses NUL: dropped
        await store.create_run(new_run("huge", max_concurrency=2**40))  # the server refuses it: dropped
        await store.create_run(new_run("r2"))
        await store.flush()
        assert [r.run_id for r in await store.list_runs(RunFilter())] == ["r2", "r1"]
        assert (await store.get_run("r1")).flow_id == "f1"  # type: ignore[union-attr]
        assert store.pending_writes == 0


async def test_database_urls_and_connection_errors_never_show_the_password(free_port: Any) -> None:
    for bad, match in (
        ("sqlite:x.db", "is not a PostgreSQL URL"),
        ("postgresql://u:hunter2@h:5432/db?nonsense=1", "is not a valid PostgreSQL URL"),
    ):
        with pytest.raises(StateStoreError, match=match) as info:
            PostgresStore(bad)
        assert "hunter2" not in str(info.value)
    assert parse_database_url("postgres://u@h:1/d") == {"user": "u", "host": "h", "port": "1", "dbname": "d"}
    port = free_port()  # nothing listens there
    store = PostgresStore(f"postgresql://gw:hunter2@127.0.0.1:{port}/stepflow", connect_timeout=2)
    assert store.describe() == {
        "type": "postgres",
        "host": "127.0.0.1",
        "port": str(port),
        "database": "stepflow",
        "maxConnections": 5,
    }
    started = time.monotonic()
    with pytest.raises(StateStoreError) as info:
        await store.open()
    assert time.monotonic() - started < 15
    msg = str(info.value)
    assert f"cannot connect to PostgreSQL database 127.0.0.1:{port}/stepflow" in msg
    assert "hunter2" not in msg
    with pytest.raises(StateStoreError, match="is not open"):
        await store.get_run("x")


async def test_open_store_builds_a_postgres_store(pg_url: str, tmp_path: Any) -> None:
    cfg = SimpleNamespace(type="postgres", database_url=pg_url, auto_migrate=True, max_connections=2)
    store = open_store(cfg, default="memory", data_dir=tmp_path)
    assert isinstance(store, PostgresStore) and store.max_connections == 2
    async with store:
        await store.put_record("open_store", True)
        assert await store.get_record("open_store") is True


@pytest.fixture
def own_server() -> Iterator[PgServer]:
    """A server of this test's own, so stopping it does not disturb the session's."""
    with PgServer(require_postgres()) as server:
        yield server


async def test_server_stopped_mid_run_then_back(own_server: PgServer) -> None:
    url = own_server.create_database("restart")
    committed: list[int] = []
    with anyio.fail_after(120):
        async with PostgresStore(url, connect_timeout=2, statement_timeout=5) as store:
            store.on_commit = lambda events: committed.extend(e.seq for e in events)
            await store.create_run(new_run("r1"))
            store.append([event(1, "r1", STEP_STARTED, item=0, step="a", attempt=1)])
            await store.flush()

            own_server.stop()  # immediate: like a crash of the database server
            # Writes keep being accepted while it is down (queued, in order).
            store.append([event(2, "r1", STEP_FINISHED, item=0, step="a", attempt=1, data={"v": 2})])
            await store.create_run(new_run("r2"))
            store.append([event(3, "r1", STEP_STARTED, item=0, step="b", attempt=1)])
            started = time.monotonic()
            with pytest.raises(StateStoreError) as info:
                await store.flush()
            assert time.monotonic() - started < 20  # bounded by the connect timeout
            msg = str(info.value)
            assert (
                f"PostgreSQL database 127.0.0.1:{own_server.port}/restart: cannot write 3 queued writes"
                in msg
            )
            assert "they stay queued and are tried again" in msg
            with pytest.raises(StateStoreError, match="cannot write"):
                await store.get_run("r1")  # a read waits for the writes before it
            with pytest.raises(StateStoreError):
                await store.flush()  # still down: still an error, still queued
            assert store.pending_writes == 3 and committed == [1]

            own_server.start()  # same port
            deadline = time.monotonic() + 30
            # The writer tries again by itself (polled: the store has no event for it).
            while store.pending_writes and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            assert store.pending_writes == 0
            await store.flush()
            assert committed == [1, 2, 3]
            assert [e.seq for e in await store.read_journal("r1")] == [1, 2, 3]
            assert [r.run_id for r in await store.unfinished_runs()] == ["r1", "r2"]
            # And it keeps working: a new write after the outage.
            store.append([event(4, "r1", STEP_FINISHED, item=0, step="b", attempt=1, data=None)])
            await store.flush()
            assert committed == [1, 2, 3, 4]

            # Closing while the server is down gives up after one more try instead of hanging.
            own_server.stop()
            store.append([event(5, "r1", STEP_STARTED, item=0, step="c", attempt=1)])
            started = time.monotonic()
        assert time.monotonic() - started < 20
        assert committed == [1, 2, 3, 4]
