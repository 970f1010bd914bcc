"""SQLite ``StateStore`` (the default of ``serve``): blobs, runs, items and steps in one file.

* One ``sqlite3`` connection, used from worker threads one call at a time
  (``anyio.to_thread.run_sync`` behind a ``CapacityLimiter(1)``); WAL journal,
  ``synchronous=NORMAL``, and a busy timeout that bounds every lock wait.
* JSON values are stored as compact text; ``FlowResult`` columns hold ``FlowResult.to_json()``.
* ``complete_run`` writes the run's status, its items and its steps in one transaction.
* ``databaseUrl`` forms (config.md §3): ``sqlite:<path>[?mode=ro|rw|rwc|memory]``,
  ``sqlite://<path>[?…]`` and ``sqlite::memory:``. Without ``mode=rwc`` the file must exist;
  with it, the file and its parent directories are created.
* The schema (``PRAGMA user_version`` = ``SCHEMA_VERSION``) is created when ``auto_migrate``.

sqlite3 errors are turned into ``StateStoreError`` here and nowhere else.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qs, quote

import anyio
import anyio.to_thread

from ..core.result import FlowResult
from ..errors import RunNotFound, StateStoreError
from ..logging import get_logger
from ..types import JsonValue
from .base import ItemRecord, RunFilter, RunRecord, StepRecord
from .memory import check_paging, dumps_json, merge_completion, prepare_new_run

__all__ = ["SCHEMA_VERSION", "SqliteStore", "SqliteTarget", "parse_database_url"]

log = get_logger(__name__)

SCHEMA_VERSION = 1
Mode = Literal["ro", "rw", "rwc", "memory"]
_MODES: tuple[Mode, ...] = ("ro", "rw", "rwc", "memory")
_T = TypeVar("_T")

_SCHEMA = """
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
_TABLES = ("blobs", "runs", "items", "steps")

_RUN_COLUMNS = (
    "run_id, flow_id, flow_name, status, created_at, completed_at, root_run_id, parent_run_id, "
    "inputs, overrides, variables"
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


def _loads(text: str | None) -> JsonValue:
    return None if text is None else json.loads(text)


def _result_text(result: FlowResult | None, what: str) -> str | None:
    return None if result is None else dumps_json(result.to_json(), what=what)


def _result(text: str | None) -> FlowResult | None:
    return None if text is None else FlowResult.from_json(json.loads(text))


def _chunks(values: list[str], size: int = 500) -> Iterable[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


class SqliteStore:
    """A ``StateStore`` in one SQLite database. Use ``async with`` or ``open()``/``close()``."""

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
        self._conn: sqlite3.Connection | None = None
        self._limiter: anyio.CapacityLimiter | None = None

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
        path = None if self.target.path is None else str(self.target.path)
        return {"type": "sqlite", "path": path, "mode": self.target.mode}

    async def __aenter__(self) -> SqliteStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # lifecycle ---------------------------------------------------------------------------------
    async def open(self) -> None:
        if self._conn is not None:
            return
        self._limiter = anyio.CapacityLimiter(1)
        self._conn = await anyio.to_thread.run_sync(self._connect, limiter=self._limiter)
        log.debug("state store opened", **self.describe())

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
                f"{self._where} has schema version {version}, newer than this gateway's {SCHEMA_VERSION}"
            )
        present = {
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name IN (?, ?, ?, ?)", _TABLES
            )
        }
        if version == SCHEMA_VERSION and present == set(_TABLES):
            return
        if not self.auto_migrate or self.target.mode == "ro":
            missing = ", ".join(t for t in _TABLES if t not in present) or "none"
            why = "the store is read-only" if self.target.mode == "ro" else "autoMigrate is false"
            raise StateStoreError(
                f"{self._where} has no gateway schema (missing tables: {missing}) and {why}; "
                "open it once with autoMigrate: true"
            )
        log.info("creating state store schema", path=str(self.target.path), version=SCHEMA_VERSION)
        conn.executescript(f"BEGIN;\n{_SCHEMA}\nPRAGMA user_version={SCHEMA_VERSION};\nCOMMIT;")

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        limiter = self._limiter
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(conn.close, limiter=limiter)

    async def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        conn = self._conn
        if conn is None:
            raise StateStoreError(f"{self._where} is not open")

        def call() -> _T:
            try:
                return fn(conn)
            except sqlite3.Error as exc:
                _rollback(conn)
                raise StateStoreError(f"{self._where}: {exc}") from exc
            except BaseException:
                _rollback(conn)
                raise

        return await anyio.to_thread.run_sync(call, limiter=self._limiter)

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

        await self._run(put)

    async def get_blob(self, blob_id: str) -> tuple[JsonValue, str] | None:
        def get(conn: sqlite3.Connection) -> tuple[str, str] | None:
            row: tuple[str, str] | None = conn.execute(
                "SELECT data, blob_type FROM blobs WHERE blob_id = ?", (blob_id,)
            ).fetchone()
            return row

        row = await self._run(get)
        return None if row is None else (json.loads(row[0]), row[1])

    async def delete_blob(self, blob_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            return conn.execute("DELETE FROM blobs WHERE blob_id = ?", (blob_id,)).rowcount > 0

        return await self._run(delete)

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
            item_rows = [
                (
                    run.run_id,
                    it.item_index,
                    it.status,
                    _result_text(it.result, "item result"),
                    it.completed_at,
                )
                for it in record.items
            ]
            conn.execute("BEGIN")
            try:
                conn.execute(
                    f"INSERT INTO runs ({_RUN_COLUMNS}, depth) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                        depth,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                conn.rollback()
                raise StateStoreError(f"run '{run.run_id}' already exists") from exc
            conn.executemany(
                "INSERT INTO items (run_id, item_index, status, result, completed_at) VALUES (?, ?, ?, ?, ?)",
                item_rows,
            )
            conn.execute("COMMIT")

        await self._run(create)

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
            )
            for s in steps
        ]

        def complete(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN")
            updated = conn.execute(
                "UPDATE runs SET status = ?, completed_at = ? WHERE run_id = ?",
                (status, completed_at, run_id),
            ).rowcount
            if not updated:
                conn.rollback()
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
            conn.execute("COMMIT")

        await self._run(complete)

    async def get_run(self, run_id: str) -> RunRecord | None:
        def get(conn: sqlite3.Connection) -> RunRecord | None:
            row = conn.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                return None
            return _run_record(row, _select_items(conn, [run_id]).get(run_id, []))

        return await self._run(get)

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

        return await self._run(list_)

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        def get(conn: sqlite3.Connection) -> list[StepRecord]:
            rows = conn.execute(
                "SELECT item_index, step_index, step_id, component, status, result, started_at, completed_at "
                "FROM steps WHERE run_id = ? ORDER BY item_index, step_index",
                (run_id,),
            ).fetchall()
            return [StepRecord(r[0], r[1], r[2], r[3], r[4], _result(r[5]), r[6], r[7]) for r in rows]

        return await self._run(get)

    async def delete_run(self, run_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            conn.execute("BEGIN")
            found = conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,)).rowcount > 0
            conn.execute("DELETE FROM items WHERE run_id = ?", (run_id,))
            conn.execute("DELETE FROM steps WHERE run_id = ?", (run_id,))
            conn.execute("COMMIT")
            return found

        return await self._run(delete)

    async def runs_of_flow_active(self, flow_id: str) -> bool:
        def active(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT 1 FROM runs WHERE flow_id = ? AND status = 'running' LIMIT 1", (flow_id,)
            ).fetchone()
            return row is not None

        return await self._run(active)


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
    )
