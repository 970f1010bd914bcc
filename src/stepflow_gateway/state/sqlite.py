"""SQLite ``StateStore`` (the default of ``serve``): blobs, records, the journal, runs, items and
steps in one file.

* Writes (``create_run``, ``append``, ``complete_run``, ``put_record``, ``put_blob``) are queued in
  call order and not waited for; everything queued during one pass of the event loop is committed
  in one transaction by a callback at its end (group commit, ``_Committer``), on the loop thread, so
  a write costs no thread hop. ``flush()`` waits for the commit of everything queued before it.
  Reads wait for earlier writes, then run in a worker thread on a second connection (WAL: readers
  and the writer never block each other). ``synchronous=NORMAL``: a commit survives the process
  being killed (it is in the OS's page cache); a power cut may lose the last few. WAL checkpoints
  are SQLite's own (every ~1000 pages, by the committing connection), which keeps the WAL file
  bounded: a checkpoint in another thread, beside a writer that never pauses, never finishes one
  and lets the file grow without end.
* A batch that cannot be written (disk full, database locked past the busy timeout) stays queued
  and is tried again with backoff; ``flush()`` raises ``StateStoreError`` meanwhile, naming the file.
* JSON values are stored as compact text; journal values over ``INLINE_LIMIT`` bytes go to the
  content-addressed blobs table once and the journal row references them.
* ``databaseUrl`` forms (config.md §3): ``sqlite:<path>[?mode=ro|rw|rwc|memory]``,
  ``sqlite://<path>[?…]`` and ``sqlite::memory:``. Without ``mode=rwc`` the file must exist;
  with it, the file and its parent directories are created.
* The schema is versioned (``PRAGMA user_version``); ``MIGRATIONS`` bring any earlier version up
  to ``SCHEMA_VERSION`` when ``auto_migrate``; a newer database is refused.

sqlite3 errors are turned into ``StateStoreError`` here and nowhere else.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qs, quote

import anyio
import anyio.to_thread

from ..core.journal import JournalEvent
from ..core.result import FlowResult
from ..errors import RunNotFound, StateStoreError
from ..logging import get_logger
from ..types import JsonValue
from . import _rows
from ._rows import SCHEMA_VERSION, journal_value, loads_result, run_record
from .base import ItemRecord, RunFilter, RunRecord, StepRecord, StoreLifecycle
from .memory import check_paging, dumps_json, dumps_record, merge_completion, prepare_new_run

__all__ = ["SCHEMA_VERSION", "SqliteStore", "SqliteTarget", "parse_database_url"]

log = get_logger(__name__)

WRITE_BUSY_MS = 200
"""How long a commit (on the event loop) waits for a lock another process holds before the batch
is left queued and tried again later."""
Mode = Literal["ro", "rw", "rwc", "memory"]
_MODES: tuple[Mode, ...] = ("ro", "rw", "rwc", "memory")
_T = TypeVar("_T")

_DIALECT = {  # the column types of this dialect in the shared schema (state/_rows.py)
    "serial": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "bigint": "INTEGER",
    "real": "REAL",
    "keyed": " WITHOUT ROWID",
}
_SCHEMA_V1 = _rows.SCHEMA_V1.format(**_DIALECT)
_SCHEMA_V2 = (
    _rows.SCHEMA_V2_TABLES.format(**_DIALECT)
    + """
ALTER TABLE runs ADD COLUMN max_concurrency INTEGER;
ALTER TABLE steps ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
DROP INDEX IF EXISTS runs_status;
DROP INDEX IF EXISTS runs_flow_status;
DROP INDEX IF EXISTS runs_parent;
CREATE INDEX IF NOT EXISTS runs_status_seq ON runs (status, seq);
CREATE INDEX IF NOT EXISTS runs_active_flow ON runs (flow_id) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS runs_parent ON runs (parent_run_id) WHERE parent_run_id IS NOT NULL;
"""
)
MIGRATIONS: tuple[tuple[int, str], ...] = ((1, _SCHEMA_V1), (2, _SCHEMA_V2))
"""``(version, script)``: each brings the schema from ``version - 1`` to ``version``."""

_JOURNAL_SELECT = _rows.JOURNAL_SELECT.format(mark="?")
_RUN_COLUMNS = (
    "run_id, flow_id, flow_name, status, created_at, completed_at, root_run_id, parent_run_id, "
    "inputs, overrides, variables, max_concurrency"
)


# --- databaseUrl ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SqliteTarget:
    """Where a SQLite store lives: ``path`` (``None`` = in memory) and the open ``mode``."""

    path: Path | None
    mode: Mode


def parse_database_url(url: str) -> SqliteTarget:
    """Parse a ``databaseUrl`` (config.md §3). Raises ``StateStoreError`` naming the URL."""
    if not url.startswith("sqlite:"):
        raise StateStoreError(f"databaseUrl '{url}' is not a SQLite URL; expected 'sqlite:<path>[?mode=…]'")
    rest = url[len("sqlite:") :]
    if rest.startswith("//"):
        rest = rest[2:]
    target, _, query = rest.partition("?")
    params = parse_qs(query, keep_blank_values=True) if query else {}
    mode_values = params.get("mode", [])
    if len(mode_values) > 1:
        raise StateStoreError(f"databaseUrl '{url}' gives 'mode' more than once")
    mode_text = mode_values[0] if mode_values else "rw"
    if mode_text not in _MODES:
        raise StateStoreError(
            f"databaseUrl '{url}': unknown mode '{mode_text}'; expected one of ro, rw, rwc, memory"
        )
    mode: Mode = mode_text
    if target == ":memory:" or mode == "memory":
        return SqliteTarget(None, "memory")
    if not target:
        raise StateStoreError(
            f"databaseUrl '{url}' has no file path; expected 'sqlite:<path>' or 'sqlite::memory:'"
        )
    return SqliteTarget(Path(target), mode)


# --- the store ------------------------------------------------------------------------------------


def _result_text(result: FlowResult | None, what: str) -> str | None:
    return None if result is None else dumps_record(result.to_json(), what=what)


def _chunks(values: list[str], size: int = 500) -> Iterable[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


@dataclass(slots=True)
class _Op:
    """One queued write: ``fn(conn)``, and the journal events it carries (for ``on_commit``)."""

    fn: Callable[[sqlite3.Connection], Any]
    events: list[JournalEvent] | None = None


class _Committer:
    """Group commit on the event loop: writes queued during one pass of the loop are committed
    together by one callback at its end. No thread hop, so a lone run pays one commit and nothing
    else; a busy server pays one per loop pass, however many runs wrote in it. The connection's
    busy timeout is short, so a database locked by another process blocks the loop only briefly:
    the batch stays queued and is tried again with backoff."""

    def __init__(self, conn: sqlite3.Connection, where: str, on_commit: Callable[[list[JournalEvent]], None]):
        self.conn = conn
        self.where = where
        self._on_commit = on_commit
        self._loop = asyncio.get_running_loop()
        self._ops: list[_Op] = []
        self._scheduled: asyncio.Handle | asyncio.TimerHandle | None = None
        self._backoff = 0.0
        self.queued = 0
        """Writes queued so far."""
        self.committed = 0
        """Writes committed so far (in queue order: ``committed >= n`` means the first n are)."""
        self.failure: StateStoreError | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def submit(self, op: _Op) -> None:
        self.queued += 1
        self._ops.append(op)
        if self._scheduled is None:
            self._scheduled = self._loop.call_soon(self.commit)

    async def flush(self) -> None:
        target = self.queued
        if self.committed >= target:
            return
        if self.failure is not None and self._scheduled is not None:  # retrying: try now
            self._scheduled.cancel()
            self._scheduled = self._loop.call_soon(self.commit)
        future: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append((target, future))
        await future

    def commit(self) -> None:
        """Write everything queued in one transaction (also called at close)."""
        self._scheduled = None
        ops, self._ops = self._ops, []
        if not ops:
            return
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in ops:
                try:
                    op.fn(conn)
                except (sqlite3.IntegrityError, StateStoreError, RunNotFound) as exc:
                    # One bad write (a duplicate id, a record of an unknown run) is dropped with a
                    # log line; the rest of the batch still commits.
                    log.warning("state store dropped a write", error=str(exc))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            _rollback(conn)
            self._ops[:0] = ops  # kept, in order, for the next try
            self.failure = error = StateStoreError(f"{self.where}: cannot write ({exc})")
            self._backoff = min(_rows.RETRY_MAX_S, self._backoff * 2 or 0.05)
            if self._scheduled is None:
                self._scheduled = self._loop.call_later(self._backoff, self.commit)
            waiters, self._waiters = self._waiters, []
            for _target, future in waiters:
                if not future.done():
                    future.set_exception(error)
            return
        self.failure = None
        self._backoff = 0.0
        self.committed += len(ops)
        if self._waiters:
            keep = []
            for target, future in self._waiters:
                if target > self.committed:
                    keep.append((target, future))
                elif not future.done():
                    future.set_result(None)
            self._waiters = keep
        events = [ev for op in ops if op.events for ev in op.events]
        if events:
            try:
                self._on_commit(events)
            except Exception:  # a listener's bug must not stop the store
                log.exception("journal commit listener failed")

    def close(self) -> int:
        """Commit what is queued (one last try); returns how many writes could not be."""
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        self.commit()
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        return len(self._ops)


class SqliteStore(StoreLifecycle):
    """A ``StateStore`` in one SQLite database. Use ``async with`` or ``open()``/``close()``."""

    durable = True

    def __init__(
        self,
        target: SqliteTarget,
        *,
        auto_migrate: bool = True,
        busy_timeout: float = 5.0,
        url: str | None = None,
    ) -> None:
        self.target = target
        self.auto_migrate = auto_migrate
        self.busy_timeout = busy_timeout
        self.url = url or (
            "sqlite::memory:" if target.path is None else f"sqlite:{target.path}?mode={target.mode}"
        )
        self.on_commit: Callable[[list[JournalEvent]], None] | None = None
        self._writer: _Committer | None = None
        self._reader: sqlite3.Connection | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        if target.path is None:
            self.durable = False

    @classmethod
    def from_url(cls, url: str, *, auto_migrate: bool = True) -> SqliteStore:
        return cls(parse_database_url(url), auto_migrate=auto_migrate, url=url)

    @property
    def _where(self) -> str:
        return (
            "in-memory SQLite database"
            if self.target.path is None
            else f"SQLite database '{self.target.path}'"
        )

    def describe(self) -> dict[str, Any]:
        path = None if self.target.path is None else str(self.target.path.absolute())
        return {"type": "sqlite", "path": path, "mode": self.target.mode}

    # lifecycle ---------------------------------------------------------------------------------
    async def open(self) -> None:
        if self._writer is not None:
            return
        self._limiter = anyio.CapacityLimiter(1)
        conn = await anyio.to_thread.run_sync(self._connect)
        # Reads run in a worker thread on a connection of their own (WAL: they never block the
        # writer, and see what it committed); an in-memory database has one connection for both.
        reader = conn
        if self.target.path is not None:
            try:
                reader = await anyio.to_thread.run_sync(self._connect_reader)
            except BaseException:
                conn.close()
                raise
        conn.execute(f"PRAGMA busy_timeout={WRITE_BUSY_MS}")
        self._reader = reader
        self._writer = _Committer(conn, self._where, self._committed)
        log.debug("state store opened", **self.describe())

    def _connect_reader(self) -> sqlite3.Connection:
        assert self.target.path is not None
        mode = "ro" if self.target.mode == "ro" else "rw"
        uri = f"file:{quote(str(self.target.path.absolute()))}?mode={mode}"
        try:
            conn = sqlite3.connect(
                uri, uri=True, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
        except sqlite3.Error as exc:
            raise StateStoreError(f"cannot open {self._where} (databaseUrl '{self.url}'): {exc}") from exc
        return conn

    def _committed(self, events: list[JournalEvent]) -> None:
        if self.on_commit is not None:
            self.on_commit(events)

    def _connect(self) -> sqlite3.Connection:
        path, mode = self.target.path, self.target.mode
        if path is None:
            uri = "file::memory:"
        else:
            if mode != "rwc" and not path.is_file():
                raise StateStoreError(
                    f"{self._where} does not exist (databaseUrl '{self.url}'); create it or add '?mode=rwc'"
                )
            if mode == "rwc":
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StateStoreError(
                        f"cannot create {self._where}: directory '{path.parent}' cannot be created "
                        f"({exc.strerror or exc}; databaseUrl '{self.url}')"
                    ) from exc
            uri = f"file:{quote(str(path.absolute()))}?mode={mode}"
        try:
            conn = sqlite3.connect(
                uri, uri=True, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StateStoreError(f"cannot open {self._where} (databaseUrl '{self.url}'): {exc}") from exc
        try:
            if path is not None and mode != "ro":
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            self._migrate(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise StateStoreError(f"cannot use {self._where} (databaseUrl '{self.url}'): {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise _rows.schema_too_new(self._where, version)
        marks = ", ".join("?" * len(_rows.TABLES))
        present = {
            row[0]
            for row in conn.execute(
                f"SELECT name FROM sqlite_master WHERE type='table' AND name IN ({marks})", _rows.TABLES
            )
        }
        if version == SCHEMA_VERSION and present == set(_rows.TABLES):
            return
        if not self.auto_migrate or self.target.mode == "ro":
            why = "the store is read-only" if self.target.mode == "ro" else "autoMigrate is false"
            raise _rows.not_migrated(self._where, version, present, why)
        for target_version, script in MIGRATIONS:
            if target_version <= version:
                continue
            log.info("migrating state store schema", path=str(self.target.path), version=target_version)
            conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version={target_version};\nCOMMIT;")

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        left = writer.close()
        if left:
            log.error(
                "state store closed with writes it could not commit", writes=left, path=str(self.target.path)
            )
        reader, self._reader = self._reader, None
        with anyio.CancelScope(shield=True):
            if reader is not None and reader is not writer.conn:
                await anyio.to_thread.run_sync(reader.close, limiter=self._limiter)
            writer.conn.close()

    def _require(self) -> _Committer:
        writer = self._writer
        if writer is None:
            raise StateStoreError(f"{self._where} is not open")
        return writer

    def _write(
        self, fn: Callable[[sqlite3.Connection], Any], events: list[JournalEvent] | None = None
    ) -> None:
        self._require().submit(_Op(fn, events))

    async def _read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        writer = self._require()
        if writer.committed < writer.queued and writer.failure is None:
            try:
                await writer.flush()  # reads see every earlier write
            except StateStoreError:
                pass  # the store cannot write now: answer from what is committed
        conn = self._reader
        assert conn is not None

        def call() -> _T:
            try:
                return fn(conn)
            except sqlite3.Error as exc:
                _rollback(conn)
                raise StateStoreError(f"{self._where}: {exc}") from exc
            except BaseException:
                _rollback(conn)
                raise

        if conn is writer.conn:  # in memory: the one connection, on the loop (it never waits)
            return call()
        return await anyio.to_thread.run_sync(call, limiter=self._limiter)

    async def flush(self) -> None:
        await self._require().flush()

    @property
    def pending_writes(self) -> int:
        writer = self._writer
        return 0 if writer is None else writer.queued - writer.committed

    # blobs -------------------------------------------------------------------------------------
    async def put_blob(self, blob_id: str, data: JsonValue, blob_type: str) -> None:
        text = dumps_json(data, what=f"blob {blob_id}")

        def put(conn: sqlite3.Connection) -> None:
            # Content-addressed: a second put keeps the data; a blob that is also a flow stays one.
            conn.execute(
                "INSERT INTO blobs (blob_id, blob_type, data) VALUES (?, ?, ?) "
                "ON CONFLICT (blob_id) DO UPDATE SET blob_type = 'flow' WHERE excluded.blob_type = 'flow'",
                (blob_id, blob_type, text),
            )

        self._write(put)
        await self.flush()

    async def get_blob(self, blob_id: str) -> tuple[JsonValue, str] | None:
        def get(conn: sqlite3.Connection) -> tuple[str, str] | None:
            row: tuple[str, str] | None = conn.execute(
                "SELECT data, blob_type FROM blobs WHERE blob_id = ?", (blob_id,)
            ).fetchone()
            return row

        row = await self._read(get)
        return None if row is None else (json.loads(row[0]), row[1])

    async def delete_blob(self, blob_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM blobs WHERE blob_id = ?", (blob_id,)).rowcount > 0

        await self.flush()
        return await self._read(_in_transaction(delete))

    # records -----------------------------------------------------------------------------------
    async def put_record(self, key: str, value: JsonValue) -> None:
        text = dumps_json(value, what=f"record {key}")
        now = time.time()

        def put(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO records (key, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (key, text, now),
            )

        self._write(put)
        await self.flush()

    async def get_record(self, key: str) -> JsonValue | None:
        def get(conn: sqlite3.Connection) -> tuple[str] | None:
            row: tuple[str] | None = conn.execute(
                "SELECT value FROM records WHERE key = ?", (key,)
            ).fetchone()
            return row

        row = await self._read(get)
        return None if row is None else json.loads(row[0])

    # journal -----------------------------------------------------------------------------------
    def append(self, events: list[JournalEvent]) -> None:
        rows = [_journal_row(ev) for ev in events]

        def write(conn: sqlite3.Connection) -> None:
            blobs = [(ref, text) for *_, ref, _at, text in rows if ref is not None]
            if blobs:
                conn.executemany(
                    "INSERT OR IGNORE INTO blobs (blob_id, blob_type, data) VALUES (?, 'journal', ?)", blobs
                )
            conn.executemany(
                "INSERT OR REPLACE INTO journal (root_run_id, seq, run_id, kind, item, step, attempt, data, "
                "blob_ref, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [row[:10] for row in rows],
            )

        self._write(write, events)

    async def read_journal(self, root_run_id: str, since: int = 0) -> list[JournalEvent]:
        def read(conn: sqlite3.Connection) -> list[JournalEvent]:
            rows = conn.execute(
                _JOURNAL_SELECT,
                (root_run_id, since),
            ).fetchall()
            return _rows.journal_events(root_run_id, rows)

        return await self._read(read)

    async def unfinished_runs(self, limit: int | None = None) -> list[RunRecord]:
        def read(conn: sqlite3.Connection) -> list[RunRecord]:
            rows = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE status = 'running' AND parent_run_id IS NULL "
                "ORDER BY seq LIMIT ?",
                (-1 if limit is None else limit,),
            ).fetchall()
            items = _select_items(conn, [row[0] for row in rows])
            return [run_record(row, items.get(row[0], [])) for row in rows]

        return await self._read(read)

    # runs --------------------------------------------------------------------------------------
    async def create_run(self, run: RunRecord) -> None:
        inputs = dumps_record(run.inputs, what=f"inputs of run {run.run_id}")
        overrides = None if run.overrides is None else dumps_json(run.overrides, what="run overrides")
        variables = None if run.variables is None else dumps_json(run.variables, what="run variables")

        def create(conn: sqlite3.Connection) -> None:
            parent = None
            if run.parent_run_id is not None:
                parent = conn.execute(
                    "SELECT depth, root_run_id FROM runs WHERE run_id = ?", (run.parent_run_id,)
                ).fetchone()
            record, depth = prepare_new_run(run, parent)
            conn.execute(
                f"INSERT INTO runs ({_RUN_COLUMNS}, depth) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    record.run_id,
                    record.flow_id,
                    record.flow_name,
                    record.status,
                    record.created_at,
                    record.completed_at,
                    record.root_run_id,
                    record.parent_run_id,
                    inputs,
                    overrides,
                    variables,
                    record.max_concurrency,
                    depth,
                ),
            )
            conn.executemany(
                "INSERT INTO items (run_id, item_index, status, result, completed_at) VALUES (?, ?, ?, ?, ?)",
                [
                    (
                        run.run_id,
                        it.item_index,
                        it.status,
                        _result_text(it.result, "item result"),
                        it.completed_at,
                    )
                    for it in record.items
                ],
            )

        self._write(create)

    async def complete_run(
        self,
        run_id: str,
        status: str,
        completed_at: str,
        items: list[ItemRecord],
        steps: Sequence[StepRecord],
    ) -> None:
        step_rows = [
            (
                run_id,
                s.item_index,
                s.step_index,
                s.step_id,
                s.component,
                s.status,
                _result_text(s.result, f"result of step '{s.step_id}'"),
                s.started_at,
                s.completed_at,
                s.attempt,
            )
            for s in steps
        ]
        # encoded here: a value that is not JSON is the caller's error, raised here
        item_rows = [
            (run_id, it.item_index, it.status, _result_text(it.result, "item result"), it.completed_at)
            for it in items
        ]

        def complete(conn: sqlite3.Connection) -> None:
            updated = conn.execute(
                "UPDATE runs SET status = ?, completed_at = ? WHERE run_id = ?",
                (status, completed_at, run_id),
            ).rowcount
            if not updated:
                raise RunNotFound(f"Execution '{run_id}' not found")
            if items and all(it.item_index == i and it.status != "running" for i, it in enumerate(items)):
                rows = item_rows  # the usual case: every item, in order, finished
                conn.execute(
                    "UPDATE items SET status = ?, completed_at = COALESCE(completed_at, ?) "
                    "WHERE run_id = ? AND status = 'running' AND item_index >= ?",
                    (status, completed_at, run_id, len(items)),
                )
            else:
                existing = _select_items(conn, [run_id]).get(run_id, [])
                rows = [
                    (
                        run_id,
                        it.item_index,
                        it.status,
                        _result_text(it.result, "item result"),
                        it.completed_at,
                    )
                    for it in merge_completion(existing, status, completed_at, items)
                ]
            conn.executemany(
                "INSERT OR REPLACE INTO items (run_id, item_index, status, result, completed_at) "
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )
            conn.executemany(
                "INSERT OR REPLACE INTO steps (run_id, item_index, step_index, step_id, component, status, "
                "result, started_at, completed_at, attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                step_rows,
            )

        self._write(complete)

    async def get_run(self, run_id: str) -> RunRecord | None:
        def get(conn: sqlite3.Connection) -> RunRecord | None:
            row = conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                return None
            return run_record(row, _select_items(conn, [run_id]).get(run_id, []))

        return await self._read(get)

    async def list_runs(self, flt: RunFilter) -> list[RunRecord]:
        check_paging(flt)
        clauses, params = _rows.filter_clauses(flt, "?")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        params += [-1 if flt.limit is None else flt.limit, flt.offset]
        sql = f"SELECT {_RUN_COLUMNS} FROM runs {where} ORDER BY seq DESC LIMIT ? OFFSET ?"

        def list_(conn: sqlite3.Connection) -> list[RunRecord]:
            rows = conn.execute(sql, params).fetchall()
            items = _select_items(conn, [row[0] for row in rows])
            return [run_record(row, items.get(row[0], [])) for row in rows]

        return await self._read(list_)

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        def get(conn: sqlite3.Connection) -> list[StepRecord]:
            rows = conn.execute(
                "SELECT item_index, step_index, step_id, component, status, result, started_at, "
                "completed_at, attempt FROM steps WHERE run_id = ? ORDER BY item_index, step_index",
                (run_id,),
            ).fetchall()
            return [
                StepRecord(r[0], r[1], r[2], r[3], r[4], loads_result(r[5]), r[6], r[7], r[8]) for r in rows
            ]

        return await self._read(get)

    async def delete_run(self, run_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            root = conn.execute("SELECT root_run_id FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            found = conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,)).rowcount > 0
            conn.execute("DELETE FROM items WHERE run_id = ?", (run_id,))
            conn.execute("DELETE FROM steps WHERE run_id = ?", (run_id,))
            if root is not None and root[0] in (None, run_id):
                conn.execute("DELETE FROM journal WHERE root_run_id = ?", (run_id,))
            return found

        await self.flush()
        return await self._read(_in_transaction(delete))

    async def runs_of_flow_active(self, flow_id: str) -> bool:
        def active(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT 1 FROM runs WHERE flow_id = ? AND status = 'running' LIMIT 1", (flow_id,)
            ).fetchone()
            return row is not None

        return await self._read(active)


def _in_transaction(fn: Callable[[sqlite3.Connection], _T]) -> Callable[[sqlite3.Connection], _T]:
    """A read-side call that writes: in a transaction of its own (it answers, so it is not batched)."""

    def call(conn: sqlite3.Connection) -> _T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            value = fn(conn)
        except BaseException:
            _rollback(conn)
            raise
        conn.execute("COMMIT")
        return value

    return call


def _journal_row(ev: JournalEvent) -> tuple[Any, ...]:
    """``(root, seq, run, kind, item, step, attempt, data, blob_ref, at, blob_text)``."""
    text, ref = journal_value(ev, dumps_record)
    inline, blob = (text, None) if ref is None else (None, text)
    return (
        ev.root_run_id,
        ev.seq,
        ev.run_id,
        ev.kind,
        ev.item,
        ev.step,
        ev.attempt,
        inline,
        ref,
        ev.at,
        blob,
    )


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.rollback()
        except sqlite3.Error:
            log.warning("state store rollback failed", exc_info=True)


def _select_items(conn: sqlite3.Connection, run_ids: list[str]) -> dict[str, list[ItemRecord]]:
    out: dict[str, list[ItemRecord]] = {}
    for chunk in _chunks(run_ids):
        marks = ", ".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT run_id, item_index, status, result, completed_at FROM items "
            f"WHERE run_id IN ({marks}) ORDER BY run_id, item_index",
            chunk,
        )
        for run_id, index, status, result, completed_at in rows:
            out.setdefault(run_id, []).append(ItemRecord(index, status, loads_result(result), completed_at))
    return out
