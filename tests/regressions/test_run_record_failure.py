"""A run whose end cannot be recorded (the SQLite file is locked by another process's transaction)
still releases its waiters and leaves the live table: the error surfaces, nothing hangs or leaks.

The run's only step reports ``step_started`` to a listener, which takes an exclusive lock on the
database from a second connection, so ``create_run`` succeeded and ``complete_run`` meets the lock.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from stepflow_gateway.config.load import default_config
from stepflow_gateway.errors import StateStoreError
from stepflow_gateway.gateway import Gateway
from stepflow_gateway.state.base import RunFilter
from stepflow_gateway.state.sqlite import SqliteStore, SqliteTarget

pytestmark = pytest.mark.anyio

FLOW = {
    "name": "n",
    "steps": [{"id": "m", "component": "/builtin/create_messages", "input": {"user_prompt": "x"}}],
    "output": {"$step": "m"},
}


async def test_a_run_whose_record_fails_releases_waiters(tmp_path: Path, monkeypatch) -> None:
    # The end of a run waits (bounded) for a store that is briefly unavailable; keep that short.
    monkeypatch.setattr("stepflow_gateway.engine.journal.STORE_WAIT_S", 1.0)
    db = tmp_path / "state.db"
    store = SqliteStore(SqliteTarget(db, "rwc"), busy_timeout=0.2)
    locker = sqlite3.connect(db, isolation_level=None, timeout=0.1)

    def lock(event) -> None:
        if event.kind == "step_started" and not locker.in_transaction:
            locker.execute("BEGIN EXCLUSIVE")

    with anyio.fail_after(30):
        async with Gateway(default_config(tmp_path), store=store, mode="serve") as gw:
            with pytest.raises(StateStoreError) as failed:
                await gw.submit(FLOW, [None], listener=lock)
            assert "locked" in str(failed.value)
            assert gw.live == {}  # no handle left behind for readers or shutdown to wait on
            assert gw.store.pending_writes > 0  # what could not be written stays queued, not lost
            locker.execute("ROLLBACK")
            # the store works again and the next run is recorded normally
            handle = await gw.submit(FLOW, [None])
            assert handle.done.is_set() and handle.status == "completed"
            rec = await gw.store.get_run(handle.run_id)
            assert rec is not None and rec.status == "completed"
            # and the first run's queued record was written too, once the lock went away
            assert gw.store.pending_writes == 0
            assert [r.status for r in await gw.store.list_runs(RunFilter())] == ["completed", "completed"]
    locker.close()
