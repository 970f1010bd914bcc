"""SQLite ``StateStore`` (the default of ``serve``): blobs, records, the journal, runs, items and
steps in one file.

* One ``sqlite3`` connection owned by one thread (``_Worker``). Every call becomes an operation
  on its queue, in call order. Writes (``create_run``, ``append``, ``complete_run``,
  ``put_record``, ``put_blob``, deletes) are not waited for: the thread commits everything queued
  in one transaction (group commit), then answers the reads of that batch. ``flush()`` waits for
  the commit of everything queued before it; reads wait for their answer, so they see every
  earlier write. WAL journal with ``synchronous=NORMAL``: a commit survives the process being
  killed (it is in the OS's page cache); a power cut may lose the last few.
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
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qs, quote

import anyio
import anyio.to_thread

from ..core.journal import JournalEvent
from ..core.result import FlowResult
from ..errors import RunNotFound, StateStoreError
from ..jsonutil import blob_id as content_id
from ..logging import get_logger
from ..types import JsonValue
from .base import ItemRecord, RunFilter, RunRecord, StepRecord
from .memory import check_paging, dumps_json, merge_completion, prepare_new_run

__all__ = ["SCHEMA_VERSION", "SqliteStore", "SqliteTarget", "parse_database_url"]

log = get_logger(__name__)

SCHEMA_VERSION = 2
INLINE_LIMIT = 64 * 1024
"""Journal values whose JSON is longer than this are stored as blobs (once) and referenced."""
RETRY_MAX_S = 5.0
"""Longest pause between tries of a batch that could not be written."""
Mode = Literal["ro", "rw", "rwc", "memory"]
_MODES: tuple[Mode, ...] = ("ro", "rw", "rwc", "memory")
_T = TypeVar("_T")

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS blobs (
    blob_id   TEXT PRIMARY KEY,
    blob_type TEXT NOT NULL,
    data      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id        TEXT NOT NULL UNIQUE,
    flow_id       TEXT NOT NULL,
    flow_name     TEXT,
    status        TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    completed_at  TEXT,
    root_run_id   TEXT,
    parent_run_id TEXT,
    depth         INTEGER NOT NULL DEFAULT 0,
    inputs        TEXT NOT NULL,
    overrides     TEXT,
    variables     TEXT
);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
CREATE INDEX IF NOT EXISTS runs_flow_status ON runs (flow_id, status);
CREATE INDEX IF NOT EXISTS runs_flow_name ON runs (flow_name);
CREATE INDEX IF NOT EXISTS runs_root ON runs (root_run_id);
CREATE INDEX IF NOT EXISTS runs_parent ON runs (parent_run_id);
CREATE TABLE IF NOT EXISTS items (
    run_id       TEXT NOT NULL,
    item_index   INTEGER NOT NULL,
    status       TEXT NOT NULL,
    result       TEXT,
    completed_at TEXT,
    PRIMARY KEY (run_id, item_index)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS steps (
    run_id       TEXT NOT NULL,
    item_index   INTEGER NOT NULL,
    step_index   INTEGER NOT NULL,
    step_id      TEXT NOT NULL,
    component    TEXT NOT NULL,
    status       TEXT NOT NULL,
    result       TEXT,
    started_at   TEXT,
    completed_at TEXT,
    PRIMARY KEY (run_id, item_index, step_index)
) WITHOUT ROWID;
"""
_SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS records (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    root_run_id TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    run_id      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    item        INTEGER NOT NULL,
    step        TEXT,
    attempt     INTEGER NOT NULL,
    data        TEXT,
    blob_ref    TEXT,
    at          REAL NOT NULL,
    PRIMARY KEY (root_run_id, seq)
) WITHOUT ROWID;
ALTER TABLE runs ADD COLUMN max_concurrency INTEGER;
CREATE INDEX IF NOT EXISTS runs_unfinished ON runs (status, parent_run_id, seq);
"""
MIGRATIONS: tuple[tuple[int, str], ...] = ((1, _SCHEMA_V1), (2, _SCHEMA_V2))
"""``(version, script)``: each brings the schema from ``version - 1`` to ``version``."""
_TABLES = ("blobs", "runs", "items", "steps", "records", "journal")

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
    mode: Mode = mode_text  # type: ignore[assignment]
    if target == ":memory:" or mode == "memory":
        return SqliteTarget(None, "memory")
    if not target:
        raise StateStoreError(
            f"databaseUrl '{url}' has no file path; expected 'sqlite:<path>' or 'sqlite::memory:'"
        )
    return SqliteTarget(Path(target), mode)


# --- the store ------------------------------------------------------------------------------------


def _loads(text: str | None) -> JsonValue:
    return None if text is None else json.loads(text)


def _result_text(result: FlowResult | None, what: str) -> str | None:
    return None if result is None else dumps_json(result.to_json(), what=what)


def _result(text: str | None) -> FlowResult | None:
    return None if text is None else FlowResult.from_json(json.loads(text))


def _chunks(values: list[str], size: int = 500) -> Iterable[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


@dataclass(slots=True)
class _Op:
    """One queued call: ``fn(conn)``; ``future`` is set for reads (their answer) and ``None`` for
    writes; ``events`` are the journal events a write carries (for ``on_commit``)."""

    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any] | None = None
    events: list[JournalEvent] | None = None


class _Worker:
    """The thread that owns the connection. Writes are committed in batches; see the module doc."""

    def __init__(self, conn: sqlite3.Connection, where: str, on_commit: Callable[[list[JournalEvent]], None]):
        self.conn = conn
        self.where = where
        self._on_commit = on_commit
        self._loop = asyncio.get_running_loop()
        self._cv = threading.Condition()
        self._queue: list[_Op] = []
        self._closing = False
        self._kick = False
        # Touched on the event loop only:
        self.queued = 0
        """Writes queued so far."""
        self.committed = 0
        """Writes committed so far (in queue order, so ``committed >= n`` means the first n are)."""
        self.failure: StateStoreError | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._thread = threading.Thread(target=self._main, name="stepflow-state-sqlite", daemon=True)
        self._thread.start()

    # -- event-loop side ---------------------------------------------------------------------
    def submit(self, op: _Op) -> None:
        if op.future is None:
            self.queued += 1
        with self._cv:
            if self._closing:
                raise StateStoreError(f"{self.where} is closed")
            self._queue.append(op)
            if len(self._queue) == 1:
                self._cv.notify()

    async def flush(self) -> None:
        target = self.queued
        if self.committed >= target:
            return
        future: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append((target, future))
        if self.failure is not None:  # a batch is waiting to be tried again: try now
            with self._cv:
                self._kick = True
                self._cv.notify()
        await future

    def _done(
        self,
        writes: int,
        events: list[JournalEvent],
        reads: list[tuple[_Op, Any, BaseException | None]],
        error: StateStoreError | None,
    ) -> None:
        if error is None:
            self.committed += writes
            self.failure = None
            if self._waiters:
                keep = []
                for target, future in self._waiters:
                    if target <= self.committed:
                        if not future.done():
                            future.set_result(None)
                    else:
                        keep.append((target, future))
                self._waiters = keep
            if events:
                try:
                    self._on_commit(events)
                except Exception:  # a listener's bug must not stop the store
                    log.exception("journal commit listener failed")
        else:
            self.failure = error
            waiters, self._waiters = self._waiters, []
            for _target, future in waiters:
                if not future.done():
                    future.set_exception(error)
        for op, value, exc in reads:
            future = op.future
            if future is None or future.done():
                continue
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(value)

    def close(self) -> None:
        """Ask the thread to finish what is queued and stop (call ``join`` after)."""
        with self._cv:
            self._closing = True
            self._cv.notify()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- the thread --------------------------------------------------------------------------
    def _main(self) -> None:
        backoff = 0.0
        while True:
            with self._cv:
                while not self._queue and not self._closing:
                    self._cv.wait()
                if backoff and not self._closing and not self._kick:
                    self._cv.wait(backoff)
                self._kick = False
                if not self._queue:
                    return
                batch, self._queue = self._queue, []
            writes = [op for op in batch if op.future is None]
            error = self._write(writes) if writes else None
            if error is not None:
                with self._cv:
                    self._queue[:0] = writes  # kept, in order, for the next try
                backoff = min(RETRY_MAX_S, backoff * 2 or 0.05)
                if self._closing:
                    backoff = 0.0
            else:
                backoff = 0.0
            reads = [self._read(op) for op in batch if op.future is not None]
            events = [ev for op in writes for ev in op.events or ()] if error is None else []
            try:
                self._loop.call_soon_threadsafe(self._done, 0 if error else len(writes), events, reads, error)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                return
            if error is not None and self._closing:
                log.error(
                    "state store closed with writes it could not commit", error=str(error), writes=len(writes)
                )
                return

    def _write(self, writes: list[_Op]) -> StateStoreError | None:
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in writes:
                try:
                    op.fn(conn)
                except (sqlite3.IntegrityError, StateStoreError, RunNotFound) as exc:
                    # One bad write (a duplicate id, a record of an unknown run) is dropped with a
                    # log line; the rest of the batch still commits.
                    log.warning("state store dropped a write", error=str(exc))
            conn.execute("COMMIT")
            return None
        except sqlite3.Error as exc:
            _rollback(conn)
            return StateStoreError(f"{self.where}: cannot write ({exc})")

    def _read(self, op: _Op) -> tuple[_Op, Any, BaseException | None]:
        try:
            return op, op.fn(self.conn), None
        except sqlite3.Error as exc:
            _rollback(self.conn)
            return op, None, StateStoreError(f"{self.where}: {exc}")
        except Exception as exc:
            _rollback(self.conn)
            return op, None, exc


class SqliteStore:
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
        self._worker: _Worker | None = None
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

    async def __aenter__(self) -> SqliteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # lifecycle ---------------------------------------------------------------------------------
    async def open(self) -> None:
        if self._worker is not None:
            return
        conn = await anyio.to_thread.run_sync(self._connect)
        self._worker = _Worker(conn, self._where, self._committed)
        log.debug("state store opened", **self.describe())

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
            raise StateStoreError(
                f"{self._where} has schema version {version}, newer than this gateway's {SCHEMA_VERSION}; "
                "use a newer stepflow-gateway or another database"
            )
        marks = ", ".join("?" * len(_TABLES))
        present = {
            row[0]
            for row in conn.execute(
                f"SELECT name FROM sqlite_master WHERE type='table' AND name IN ({marks})", _TABLES
            )
        }
        if version == SCHEMA_VERSION and present == set(_TABLES):
            return
        if not self.auto_migrate or self.target.mode == "ro":
            why = "the store is read-only" if self.target.mode == "ro" else "autoMigrate is false"
            if version == 0:
                missing = ", ".join(t for t in _TABLES if t not in present) or "none"
                what = f"has no gateway schema (missing tables: {missing})"
            else:
                what = f"has schema version {version}, older than this gateway's {SCHEMA_VERSION}"
            raise StateStoreError(f"{self._where} {what} and {why}; open it once with autoMigrate: true")
        for target_version, script in MIGRATIONS:
            if target_version <= version:
                continue
            log.info("migrating state store schema", path=str(self.target.path), version=target_version)
            conn.executescript(f"BEGIN;\n{script}\nPRAGMA user_version={target_version};\nCOMMIT;")

    async def close(self) -> None:
        worker, self._worker = self._worker, None
        if worker is None:
            return
        worker.close()
        with anyio.CancelScope(shield=True):
            stopped = await anyio.to_thread.run_sync(worker.join, 10.0)
            if stopped:
                await anyio.to_thread.run_sync(worker.conn.close)
            else:
                log.error("state store thread did not stop in 10 s", path=str(self.target.path))

    def _require(self) -> _Worker:
        worker = self._worker
        if worker is None:
            raise StateStoreError(f"{self._where} is not open")
        return worker

    def _write(
        self, fn: Callable[[sqlite3.Connection], Any], events: list[JournalEvent] | None = None
    ) -> None:
        self._require().submit(_Op(fn, None, events))

    async def _read(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        worker = self._require()
        future: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        worker.submit(_Op(fn, future))
        return await future

    async def flush(self) -> None:
        await self._require().flush()

    @property
    def pending_writes(self) -> int:
        worker = self._worker
        return 0 if worker is None else worker.queued - worker.committed

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
            return conn.execute("SELECT data, blob_type FROM blobs WHERE blob_id = ?", (blob_id,)).fetchone()

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
            return conn.execute("SELECT value FROM records WHERE key = ?", (key,)).fetchone()

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
                "SELECT j.seq, j.run_id, j.kind, j.item, j.step, j.attempt, j.data, b.data, j.at "
                "FROM journal j LEFT JOIN blobs b ON b.blob_id = j.blob_ref "
                "WHERE j.root_run_id = ? AND j.seq > ? ORDER BY j.seq",
                (root_run_id, since),
            ).fetchall()
            return [
                JournalEvent(
                    seq,
                    root_run_id,
                    run_id,
                    kind,
                    item,
                    step,
                    attempt,
                    _loads(data if ref is None else ref),
                    at,
                )
                for seq, run_id, kind, item, step, attempt, data, ref, at in rows
            ]

        return await self._read(read)

    async def unfinished_runs(self, limit: int | None = None) -> list[RunRecord]:
        def read(conn: sqlite3.Connection) -> list[RunRecord]:
            rows = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE status = 'running' AND parent_run_id IS NULL "
                "ORDER BY seq LIMIT ?",
                (-1 if limit is None else limit,),
            ).fetchall()
            items = _select_items(conn, [row[0] for row in rows])
            return [_run_record(row, items.get(row[0], [])) for row in rows]

        return await self._read(read)

    # runs --------------------------------------------------------------------------------------
    async def create_run(self, run: RunRecord) -> None:
        inputs = dumps_json(run.inputs, what=f"inputs of run {run.run_id}")
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
        self, run_id: str, status: str, completed_at: str, items: list[ItemRecord], steps: list[StepRecord]
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
            )
            for s in steps
        ]
        for it in items:  # a value that is not JSON is the caller's error, raised here
            _result_text(it.result, "item result")

        def complete(conn: sqlite3.Connection) -> None:
            updated = conn.execute(
                "UPDATE runs SET status = ?, completed_at = ? WHERE run_id = ?",
                (status, completed_at, run_id),
            ).rowcount
            if not updated:
                raise RunNotFound(f"Execution '{run_id}' not found")
            existing = _select_items(conn, [run_id]).get(run_id, [])
            merged = merge_completion(existing, status, completed_at, items)
            conn.executemany(
                "INSERT OR REPLACE INTO items (run_id, item_index, status, result, completed_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [
                    (
                        run_id,
                        it.item_index,
                        it.status,
                        _result_text(it.result, "item result"),
                        it.completed_at,
                    )
                    for it in merged
                ],
            )
            conn.executemany(
                "INSERT OR REPLACE INTO steps (run_id, item_index, step_index, step_id, component, status, "
                "result, started_at, completed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                step_rows,
            )

        self._write(complete)

    async def get_run(self, run_id: str) -> RunRecord | None:
        def get(conn: sqlite3.Connection) -> RunRecord | None:
            row = conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                return None
            return _run_record(row, _select_items(conn, [run_id]).get(run_id, []))

        return await self._read(get)

    async def list_runs(self, flt: RunFilter) -> list[RunRecord]:
        check_paging(flt)
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("status", flt.status),
            ("flow_name", flt.flow_name),
            ("root_run_id", flt.root_run_id),
            ("parent_run_id", flt.parent_run_id),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if flt.max_depth is not None:
            clauses.append("depth <= ?")
            params.append(flt.max_depth)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        params += [-1 if flt.limit is None else flt.limit, flt.offset]
        sql = f"SELECT {_RUN_COLUMNS} FROM runs {where} ORDER BY seq DESC LIMIT ? OFFSET ?"

        def list_(conn: sqlite3.Connection) -> list[RunRecord]:
            rows = conn.execute(sql, params).fetchall()
            items = _select_items(conn, [row[0] for row in rows])
            return [_run_record(row, items.get(row[0], [])) for row in rows]

        return await self._read(list_)

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        def get(conn: sqlite3.Connection) -> list[StepRecord]:
            rows = conn.execute(
                "SELECT item_index, step_index, step_id, component, status, result, started_at, completed_at "
                "FROM steps WHERE run_id = ? ORDER BY item_index, step_index",
                (run_id,),
            ).fetchall()
            return [StepRecord(r[0], r[1], r[2], r[3], r[4], _result(r[5]), r[6], r[7]) for r in rows]

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
    data = ev.data
    if isinstance(data, FlowResult):
        data = data.to_json()
    if data is None:
        return (
            ev.root_run_id,
            ev.seq,
            ev.run_id,
            ev.kind,
            ev.item,
            ev.step,
            ev.attempt,
            None,
            None,
            ev.at,
            None,
        )
    text = dumps_json(data, what=f"journal event {ev.kind} of run {ev.run_id}")
    if len(text) <= INLINE_LIMIT:
        return (
            ev.root_run_id,
            ev.seq,
            ev.run_id,
            ev.kind,
            ev.item,
            ev.step,
            ev.attempt,
            text,
            None,
            ev.at,
            None,
        )
    ref = content_id(data)
    return (ev.root_run_id, ev.seq, ev.run_id, ev.kind, ev.item, ev.step, ev.attempt, None, ref, ev.at, text)


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
            out.setdefault(run_id, []).append(ItemRecord(index, status, _result(result), completed_at))
    return out


def _run_record(row: tuple[Any, ...], items: list[ItemRecord]) -> RunRecord:
    return RunRecord(
        run_id=row[0],
        flow_id=row[1],
        flow_name=row[2],
        status=row[3],
        created_at=row[4],
        completed_at=row[5],
        root_run_id=row[6],
        parent_run_id=row[7],
        inputs=json.loads(row[8]),
        overrides=_loads(row[9]),
        variables=_loads(row[10]),
        items=items,
        max_concurrency=row[11],
    )
