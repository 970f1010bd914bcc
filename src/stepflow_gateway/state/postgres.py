"""PostgreSQL ``StateStore``: blobs, records, the journal, runs, items and steps in one database.

* psycopg 3 (async) with a ``psycopg_pool.AsyncConnectionPool`` of at most ``max_connections``
  connections (``maxConnections``); autocommit connections, so a read holds no transaction.
* Writes (``create_run``, ``append``, ``complete_run``, ``put_record``, ``put_blob``) are queued
  in call order; one background task commits everything queued in one transaction per batch
  (group commit: a busy server pays one commit for many steps). ``flush()`` waits for the commit
  of everything queued before it; ``put_blob``/``put_record`` and the deletes flush first, and
  every read waits for the writes queued before it, so reads see every earlier write.
* A batch that cannot be written (the server is down or restarting, a statement timed out) stays
  queued, in order, and is tried again with backoff (at most ``RETRY_MAX_S`` apart; a ``flush()``
  tries at once); meanwhile ``flush()`` and reads raise ``StateStoreError`` naming the server
  (``host:port/database``, never the password). One bad write (a duplicate run id, a completion of
  an unknown run, a value PostgreSQL refuses) is dropped with a warning; the rest of its batch
  commits. Every write is idempotent, so a batch whose commit was cut off can be tried again.
* Every wait is bounded: ``connect_timeout`` (connecting, and waiting for a pooled connection),
  ``statement_timeout`` on the server, and a client-side bound on every operation.
* JSON values are stored as compact text (key order kept); journal values over ``INLINE_LIMIT``
  bytes go to the content-addressed blobs table once and the journal row references them.
* The schema is versioned in table ``schema_version``; ``MIGRATIONS`` bring any earlier version up
  to ``SCHEMA_VERSION``, one transaction per step, under an advisory lock (several gateways may
  start at once) when ``auto_migrate``; a database newer than this code is refused.

``databaseUrl``: ``postgresql://[user[:password]@]host[:port]/database[?param=value…]`` (or
``postgres://…``), any libpq parameter allowed. psycopg errors are turned into ``StateStoreError``
here and nowhere else.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import anyio
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ..core.journal import JournalEvent
from ..core.result import FlowResult
from ..errors import StateStoreError
from ..logging import get_logger
from ..types import JsonValue
from . import _rows
from ._rows import INLINE_LIMIT, SCHEMA_VERSION, journal_value, loads_result, run_record
from .base import ItemRecord, RunFilter, RunRecord, StepRecord, StoreLifecycle
from .memory import check_paging, dumps_json, prepare_new_run

if TYPE_CHECKING:
    from psycopg import AsyncConnection

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "INLINE_LIMIT",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "PostgresStore",
    "parse_database_url",
]

log = get_logger(__name__)

MAX_BATCH = 1000
"""Most queued writes committed in one transaction."""
DEFAULT_MAX_CONNECTIONS = 5
_LOCK_KEY = 0x5354_4550_464C_4F57  # "STEPFLOW": the advisory lock migrations hold
_PIPELINE = psycopg.Pipeline.is_supported()
"""libpq >= 14: a batch's statements are sent without waiting for each result."""
_T = TypeVar("_T")

_DIALECT = {"serial": "BIGSERIAL PRIMARY KEY", "bigint": "BIGINT", "real": "DOUBLE PRECISION", "keyed": ""}
_SCHEMA_V1 = _rows.SCHEMA_V1.format(**_DIALECT)
_SCHEMA_V2 = (
    _rows.SCHEMA_V2_TABLES.format(**_DIALECT)
    + """
ALTER TABLE runs ADD COLUMN IF NOT EXISTS max_concurrency INTEGER;
ALTER TABLE steps ADD COLUMN IF NOT EXISTS attempt INTEGER NOT NULL DEFAULT 0;
CREATE INDEX IF NOT EXISTS runs_unfinished ON runs (seq) WHERE status = 'running' AND parent_run_id IS NULL;
"""
)
MIGRATIONS: tuple[tuple[int, str], ...] = ((1, _SCHEMA_V1), (2, _SCHEMA_V2))
"""``(version, script)``: each brings the schema from ``version - 1`` to ``version``."""
_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version    INTEGER PRIMARY KEY,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""

_JOURNAL_SELECT = _rows.JOURNAL_SELECT.format(mark="%s")
_RUN_SELECT = (
    "SELECT r.run_id, r.flow_id, r.flow_name, r.status, r.created_at, r.completed_at, r.root_run_id, "
    "r.parent_run_id, r.inputs, r.overrides, r.variables, r.max_concurrency, "
    "(SELECT json_agg(json_build_array(i.item_index, i.status, i.result, i.completed_at) "
    "ORDER BY i.item_index) FROM items i WHERE i.run_id = r.run_id) FROM runs r"
)
# Every write is one statement (arrays unnested server-side), so a batch pipelines: its statements
# go out together and the batch costs about one round trip plus its commit.
_CREATE_RUN = """
WITH parent AS (SELECT depth, root_run_id FROM runs WHERE run_id = %(parent)s::text),
new AS (
    INSERT INTO runs (run_id, flow_id, flow_name, status, created_at, completed_at, root_run_id,
                      parent_run_id, inputs, overrides, variables, max_concurrency, depth)
    SELECT %(run_id)s::text, %(flow_id)s::text, %(flow_name)s::text, %(status)s::text,
           %(created_at)s::text, %(completed_at)s::text,
           COALESCE(%(root)s::text, (SELECT root_run_id FROM parent), %(parent)s::text),
           %(parent)s::text, %(inputs)s::text, %(overrides)s::text, %(variables)s::text,
           %(max_concurrency)s::integer, COALESCE((SELECT depth + 1 FROM parent), %(depth)s::integer)
    ON CONFLICT (run_id) DO NOTHING
    RETURNING run_id
),
its_items AS (
    INSERT INTO items (run_id, item_index, status, result, completed_at)
    SELECT new.run_id, i.item_index, i.status, i.result, i.completed_at
    FROM new, unnest(%(index)s::integer[], %(item_status)s::text[], %(result)s::text[],
                     %(done)s::text[]) AS i (item_index, status, result, completed_at)
)
SELECT run_id FROM new
"""
_COMPLETE_RUN = "UPDATE runs SET status = %s, completed_at = %s WHERE run_id = %s"
_UPSERT_ITEMS = """
INSERT INTO items (run_id, item_index, status, result, completed_at)
SELECT %(run_id)s::text, i.item_index, i.status, i.result, i.completed_at
FROM unnest(%(index)s::integer[], %(status)s::text[], %(result)s::text[], %(done)s::text[])
     AS i (item_index, status, result, completed_at)
WHERE EXISTS (SELECT 1 FROM runs WHERE run_id = %(run_id)s::text)
ON CONFLICT (run_id, item_index) DO UPDATE SET status = excluded.status, result = excluded.result,
    completed_at = excluded.completed_at
"""
_SETTLE_ITEMS = (
    "UPDATE items SET status = %s, completed_at = COALESCE(completed_at, %s) "
    "WHERE run_id = %s AND status = 'running'"
)
"""Items still running take the run's final status (``state/memory.merge_completion``)."""
_UPSERT_STEPS = """
INSERT INTO steps (run_id, item_index, step_index, step_id, component, status, result, started_at,
                   completed_at, attempt)
SELECT %(run_id)s::text, s.* FROM unnest(%(item)s::integer[], %(index)s::integer[], %(step_id)s::text[],
    %(component)s::text[], %(status)s::text[], %(result)s::text[], %(started)s::text[],
    %(done)s::text[], %(attempt)s::integer[]) AS s
WHERE EXISTS (SELECT 1 FROM runs WHERE run_id = %(run_id)s::text)
ON CONFLICT (run_id, item_index, step_index) DO UPDATE SET step_id = excluded.step_id,
    component = excluded.component, status = excluded.status, result = excluded.result,
    started_at = excluded.started_at, completed_at = excluded.completed_at, attempt = excluded.attempt
"""
_APPEND = """
WITH large AS (
    INSERT INTO blobs (blob_id, blob_type, data)
    SELECT b.blob_id, 'journal', b.data
    FROM unnest(%(blob_id)s::text[], %(blob)s::text[]) AS b (blob_id, data)
    ON CONFLICT (blob_id) DO NOTHING
)
INSERT INTO journal (root_run_id, seq, run_id, kind, item, step, attempt, data, blob_ref, at)
SELECT * FROM unnest(%(root)s::text[], %(seq)s::bigint[], %(run_id)s::text[], %(kind)s::text[],
    %(item)s::integer[], %(step)s::text[], %(attempt)s::integer[], %(data)s::text[],
    %(ref)s::text[], %(at)s::double precision[])
ON CONFLICT (root_run_id, seq) DO UPDATE SET run_id = excluded.run_id, kind = excluded.kind,
    item = excluded.item, step = excluded.step, attempt = excluded.attempt, data = excluded.data,
    blob_ref = excluded.blob_ref, at = excluded.at
"""


# --- databaseUrl ----------------------------------------------------------------------------------


def _redact(url: str) -> str:
    """``url`` without its password (for messages)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":***"
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[-1]}"))


def parse_database_url(url: str) -> dict[str, str]:
    """The libpq parameters of a ``databaseUrl``. Raises ``StateStoreError`` naming the URL
    (its password left out)."""
    if not url.startswith(("postgresql://", "postgres://")):
        raise StateStoreError(
            f"databaseUrl '{_redact(url)}' is not a PostgreSQL URL; "
            "expected 'postgresql://user@host:port/database'"
        )
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise StateStoreError(f"databaseUrl '{_redact(url)}' is not a valid PostgreSQL URL: {exc}") from None
    return {k: str(v) for k, v in params.items() if v is not None}


def _describe_target(params: dict[str, str]) -> tuple[str, str, str]:
    host = params.get("host") or params.get("hostaddr") or "localhost"
    port = params.get("port") or "5432"
    database = params.get("dbname") or params.get("user") or "postgres"
    return host, port, database


# --- helpers --------------------------------------------------------------------------------------


def _message(exc: BaseException) -> str:
    """One line of a psycopg error (libpq's messages run over several lines)."""
    if isinstance(exc, PoolTimeout):
        return "no connection to the server could be made in time; is it running and reachable?"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _droppable(exc: BaseException) -> bool:
    """Whether ``exc`` is the fault of one write (dropped) rather than of the server (kept, retried)."""
    if isinstance(exc, psycopg.IntegrityError | psycopg.DataError):
        return True
    return not isinstance(exc, psycopg.Error | TimeoutError | OSError)


def _result_text(result: FlowResult | None, what: str) -> str | None:
    return None if result is None else dumps_json(result.to_json(), what=what)


def _run_record(row: tuple[Any, ...]) -> RunRecord:
    return run_record(row, [ItemRecord(i[0], i[1], loads_result(i[2]), i[3]) for i in row[12] or ()])


def _journal_row(ev: JournalEvent) -> tuple[tuple[Any, ...], tuple[str, str] | None]:
    """The journal row of ``ev`` and, for a large value, the ``(blob_id, text)`` it refers to."""
    text, ref = journal_value(ev, dumps_json)
    blob = None if ref is None or text is None else (ref, text)
    inline = None if blob else text
    row = (ev.root_run_id, ev.seq, ev.run_id, ev.kind, ev.item, ev.step, ev.attempt, inline, ref, ev.at)
    return row, blob


Verdict = Callable[[], "str | None"]
"""Read once the batch's statements have run: why the write was dropped, or ``None``."""
Write = Callable[["AsyncConnection[Any]"], Awaitable["Verdict | None"]]
"""One queued write: sends its statement(s) inside the batch's transaction (possibly pipelined, so
results are not there yet) and returns a verdict to read after them, or ``None``."""


@dataclass(slots=True)
class _Op:
    fn: Write
    what: str
    """What the write is, for the warning when it is dropped (``create run r1``)."""
    events: list[JournalEvent] | None = None


# --- the store ------------------------------------------------------------------------------------


class PostgresStore(StoreLifecycle):
    """A ``StateStore`` in one PostgreSQL database. Use ``async with`` or ``open()``/``close()``."""

    durable = True
    suspends = True

    def __init__(
        self,
        url: str,
        *,
        auto_migrate: bool = True,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        connect_timeout: float = 10.0,
        statement_timeout: float = 30.0,
        close_timeout: float = 15.0,
    ) -> None:
        if max_connections < 1:
            raise StateStoreError(f"maxConnections must be at least 1, got {max_connections}")
        self.url = url
        params = parse_database_url(url)
        host, port, database = _describe_target(params)
        self.host, self.port, self.database = host, port, database
        self.auto_migrate = auto_migrate
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.statement_timeout = statement_timeout
        self.close_timeout = close_timeout
        self._op_timeout = statement_timeout + connect_timeout + 5.0
        params.setdefault("connect_timeout", str(max(1, round(connect_timeout))))
        params.setdefault("application_name", "stepflow-gateway")
        self._conninfo = make_conninfo("", **params)
        self.on_commit: Callable[[list[JournalEvent]], None] | None = None
        self._pool: AsyncConnectionPool[Any] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._queue: list[_Op] = []
        self._queued = 0
        """Writes queued so far."""
        self._committed = 0
        """Writes committed so far (in queue order: ``committed >= n`` means the first n are)."""
        self._failure: StateStoreError | None = None
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._kick = asyncio.Event()
        self._closing = False

    @classmethod
    def from_url(
        cls, url: str, *, auto_migrate: bool = True, max_connections: int = DEFAULT_MAX_CONNECTIONS
    ) -> PostgresStore:
        return cls(url, auto_migrate=auto_migrate, max_connections=max_connections)

    @property
    def where(self) -> str:
        """``PostgreSQL database host:port/database`` (for messages; no credentials)."""
        return f"PostgreSQL database {self.host}:{self.port}/{self.database}"

    def describe(self) -> dict[str, Any]:
        return {
            "type": "postgres",
            "host": self.host,
            "port": self.port,
            "database": self.database,
            "maxConnections": self.max_connections,
        }

    @property
    def pending_writes(self) -> int:
        """Writes queued and not committed yet."""
        return self._queued - self._committed

    # lifecycle ---------------------------------------------------------------------------------
    async def open(self) -> None:
        if self._pool is not None:
            return
        await self._migrate()
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=self.max_connections,
            open=False,
            kwargs={"autocommit": True},
            configure=self._configure,
            timeout=self.connect_timeout,
            # Give up a reconnection after this long (the next request starts a new one at once),
            # so the pool's backoff never keeps a restarted server waiting for minutes.
            reconnect_timeout=max(2.0, self.connect_timeout),
            name=f"stepflow-state {self.host}:{self.port}/{self.database}",
        )
        try:
            await pool.open(wait=True, timeout=self.connect_timeout)
        except (psycopg.Error, OSError) as exc:
            await pool.close(timeout=self.connect_timeout)
            raise StateStoreError(f"cannot connect to {self.where}: {_message(exc)}") from None
        self._pool = pool
        self._closing = False
        self._queue, self._waiters, self._failure = [], [], None
        self._queued = self._committed = 0
        self._wake = asyncio.Event()
        self._kick = asyncio.Event()
        self._writer = asyncio.create_task(self._write_loop(), name="stepflow-state-postgres")
        log.debug("state store opened", **self.describe())

    async def _configure(self, conn: AsyncConnection[Any]) -> None:
        await conn.execute(
            "SELECT set_config('statement_timeout', %s, false), set_config('lock_timeout', %s, false)",
            (f"{int(self.statement_timeout * 1000)}", f"{int(self.statement_timeout * 1000)}"),
        )

    async def _connect(self) -> AsyncConnection[Any]:
        try:
            async with asyncio.timeout(self.connect_timeout + 5.0):
                conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            raise StateStoreError(f"cannot connect to {self.where}: {_message(exc)}") from None
        try:
            await self._configure(conn)
        except (psycopg.Error, OSError) as exc:
            await conn.close()
            raise StateStoreError(f"cannot use {self.where}: {_message(exc)}") from None
        return conn

    async def _migrate(self) -> None:
        conn = await self._connect()
        try:
            async with asyncio.timeout(self._op_timeout * (len(MIGRATIONS) + 1)):
                while await self._migrate_step(conn):
                    pass
        except (psycopg.Error, OSError, TimeoutError) as exc:
            raise StateStoreError(f"cannot prepare the schema of {self.where}: {_message(exc)}") from None
        finally:
            await conn.close()

    async def _migrate_step(self, conn: AsyncConnection[Any]) -> bool:
        """Bring the schema one version up; ``False`` once it is current."""
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            version = await _schema_version(conn)
            if version > SCHEMA_VERSION:
                raise _rows.schema_too_new(self.where, version)
            if version == SCHEMA_VERSION:
                return False
            if not self.auto_migrate:
                present = await _present_tables(conn) if version == 0 else set()
                raise _rows.not_migrated(self.where, version, present, "autoMigrate is false")
            target, script = MIGRATIONS[version]
            log.info("migrating state store schema", database=self.where, version=target)
            await conn.execute(_VERSION_TABLE)
            await conn.execute(script)
            await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (target,))
            return True

    async def close(self) -> None:
        """Commit what is queued (bounded by ``close_timeout``), then close the pool. Shielded
        from cancellation, so a cancelled shutdown still closes the store."""
        pool, writer = self._pool, self._writer
        if pool is None:
            return
        self._closing = True
        self._wake.set()
        self._kick.set()
        with anyio.CancelScope(shield=True):
            try:
                if writer is not None:
                    done, _ = await asyncio.wait({writer}, timeout=self.close_timeout)
                    if not done:
                        log.error(
                            "state store writer did not finish in time; queued writes are lost",
                            database=self.where,
                            writes=self.pending_writes,
                        )
                        writer.cancel()
                        await asyncio.wait({writer}, timeout=1.0)
            finally:
                self._pool = self._writer = None
                failure = StateStoreError(f"{self.where} is closed")
                for _target, future in self._waiters:
                    if not future.done():
                        future.set_exception(failure)
                self._waiters = []
                try:
                    await pool.close(timeout=self.connect_timeout)
                except (psycopg.Error, OSError) as exc:
                    log.warning(
                        "state store pool did not close cleanly", database=self.where, error=_message(exc)
                    )

    def _require(self) -> AsyncConnectionPool[Any]:
        pool = self._pool
        if pool is None:
            raise StateStoreError(f"{self.where} is not open")
        return pool

    # the write queue ---------------------------------------------------------------------------
    def _submit(self, op: _Op) -> None:
        self._require()
        if self._closing:
            raise StateStoreError(f"{self.where} is closing")
        self._queue.append(op)
        self._queued += 1
        self._wake.set()

    async def flush(self) -> None:
        self._require()
        target = self._queued
        if self._committed >= target:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((target, future))
        if self._failure is not None:
            self._kick.set()  # a batch is waiting to be tried again: try now
        await future

    async def _write_loop(self) -> None:
        backoff = 0.0
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if backoff and not self._closing:
                try:
                    async with asyncio.timeout(backoff):
                        await self._kick.wait()
                except TimeoutError:
                    pass
            batch = self._queue[:MAX_BATCH]
            try:
                error = await self._write(batch)
            except Exception as exc:  # a bug here must not stop the store
                log.exception("state store writer failed", database=self.where)
                error = StateStoreError(f"{self.where}: cannot write ({_message(exc)})")
            if error is None:
                backoff = 0.0
                del self._queue[: len(batch)]
                self._committed += len(batch)
                if self._failure is not None:
                    log.info("state store writes again", database=self.where)
                    self._failure = None
                self._resolve()
                events = [ev for op in batch if op.events for ev in op.events]
                if events and self.on_commit is not None:
                    try:
                        self.on_commit(events)
                    except Exception:  # a listener's bug must not stop the store
                        log.exception("journal commit listener failed")
                continue
            if self._failure is None:
                log.warning("state store cannot write; retrying", database=self.where, error=str(error))
            self._failure = error
            self._kick.clear()
            waiters, self._waiters = self._waiters, []
            for _target, future in waiters:
                if not future.done():
                    future.set_exception(error)
            if self._closing:
                log.error(
                    "state store closed with writes it could not commit",
                    database=self.where,
                    error=str(error),
                    writes=len(self._queue),
                )
                return
            backoff = min(_rows.RETRY_MAX_S, backoff * 2 or 0.05)

    def _resolve(self) -> None:
        if not self._waiters:
            return
        keep = []
        for target, future in self._waiters:
            if target <= self._committed:
                if not future.done():
                    future.set_result(None)
            else:
                keep.append((target, future))
        self._waiters = keep

    async def _write(self, batch: list[_Op]) -> StateStoreError | None:
        """Commit ``batch`` in one transaction; the error that kept it from committing, if any."""
        pool = self._require()
        for attempt in (1, 2):
            try:
                async with asyncio.timeout(self._op_timeout):
                    try:
                        dropped = await self._transaction(pool, batch, careful=False)
                    except Exception as exc:
                        if not _droppable(exc):
                            raise
                        # One write is bad: do it again, each write under a savepoint of its own.
                        dropped = await self._transaction(pool, batch, careful=True)
            except (psycopg.Error, OSError, TimeoutError) as exc:
                if attempt == 1 and await self._recheck(pool, exc):
                    continue
                n = len(batch)
                return StateStoreError(
                    f"{self.where}: cannot write {n} queued write{'s' if n != 1 else ''} ({_message(exc)}); "
                    "they stay queued and are tried again"
                )
            for why in dropped:
                log.warning("state store dropped a write", database=self.where, error=why)
            return None
        raise AssertionError("unreachable")

    async def _transaction(
        self, pool: AsyncConnectionPool[Any], batch: list[_Op], *, careful: bool
    ) -> list[str]:
        """Run ``batch`` in one transaction: pipelined, or (``careful``) each write under a
        savepoint of its own, a bad one dropped. Returns why writes were dropped."""
        verdicts: list[Verdict] = []
        dropped: list[str] = []
        async with pool.connection(timeout=self.connect_timeout) as conn, conn.transaction():
            if not careful:
                if _PIPELINE:
                    async with conn.pipeline():
                        for op in batch:
                            verdict = await op.fn(conn)
                            if verdict is not None:
                                verdicts.append(verdict)
                else:
                    for op in batch:
                        verdict = await op.fn(conn)
                        if verdict is not None:
                            verdicts.append(verdict)
            else:
                for op in batch:
                    try:
                        async with conn.transaction():  # a savepoint
                            verdict = await op.fn(conn)
                    except Exception as exc:
                        if not _droppable(exc):
                            raise
                        dropped.append(f"{op.what}: {_message(exc)}")
                        continue
                    if verdict is not None:
                        verdicts.append(verdict)
            for verdict in verdicts:
                why = verdict()
                if why is not None:
                    dropped.append(why)
        return dropped

    async def _recheck(self, pool: AsyncConnectionPool[Any], exc: BaseException) -> bool:
        """After a connection failed: drop the pool's dead connections (a restarted server leaves
        them behind) and say whether to try once more at once."""
        if isinstance(exc, PoolTimeout | TimeoutError) or not isinstance(exc, psycopg.OperationalError):
            return False
        try:
            async with asyncio.timeout(self.connect_timeout + 5.0):
                await pool.check()
        except (psycopg.Error, OSError, TimeoutError):
            return False
        return True

    async def _read(self, fn: Callable[[AsyncConnection[Any]], Awaitable[_T]], *, what: str = "read") -> _T:
        """``fn`` on a pooled connection, after every write queued before it is committed."""
        pool = self._require()
        if self._committed < self._queued:
            await self.flush()
        for attempt in (1, 2):
            try:
                async with asyncio.timeout(self._op_timeout):
                    async with pool.connection(timeout=self.connect_timeout) as conn:
                        return await fn(conn)
            except (psycopg.Error, OSError, TimeoutError) as exc:
                if attempt == 1 and await self._recheck(pool, exc):
                    continue
                raise StateStoreError(f"{self.where}: cannot {what} ({_message(exc)})") from None
        raise AssertionError("unreachable")

    # blobs -------------------------------------------------------------------------------------
    async def put_blob(self, blob_id: str, data: JsonValue, blob_type: str) -> None:
        text = dumps_json(data, what=f"blob {blob_id}")

        async def put(conn: AsyncConnection[Any]) -> None:
            # Content-addressed: a second put keeps the data; a blob that is also a flow stays one.
            await conn.execute(
                "INSERT INTO blobs (blob_id, blob_type, data) VALUES (%s, %s, %s) "
                "ON CONFLICT (blob_id) DO UPDATE SET blob_type = 'flow' WHERE excluded.blob_type = 'flow'",
                (blob_id, blob_type, text),
            )
            return None

        self._submit(_Op(put, f"put blob {blob_id}"))
        await self.flush()

    async def get_blob(self, blob_id: str) -> tuple[JsonValue, str] | None:
        async def get(conn: AsyncConnection[Any]) -> tuple[str, str] | None:
            cur = await conn.execute("SELECT data, blob_type FROM blobs WHERE blob_id = %s", (blob_id,))
            return await cur.fetchone()

        row = await self._read(get, what=f"read blob {blob_id}")
        return None if row is None else (json.loads(row[0]), row[1])

    async def delete_blob(self, blob_id: str) -> bool:
        async def delete(conn: AsyncConnection[Any]) -> bool:
            cur = await conn.execute("DELETE FROM blobs WHERE blob_id = %s", (blob_id,))
            return cur.rowcount > 0

        await self.flush()
        return await self._read(delete, what=f"delete blob {blob_id}")

    # records -----------------------------------------------------------------------------------
    async def put_record(self, key: str, value: JsonValue) -> None:
        text = dumps_json(value, what=f"record {key}")
        now = time.time()

        async def put(conn: AsyncConnection[Any]) -> None:
            await conn.execute(
                "INSERT INTO records (key, value, updated_at) VALUES (%s, %s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                (key, text, now),
            )
            return None

        self._submit(_Op(put, f"put record {key}"))
        await self.flush()

    async def get_record(self, key: str) -> JsonValue | None:
        async def get(conn: AsyncConnection[Any]) -> tuple[str] | None:
            cur = await conn.execute("SELECT value FROM records WHERE key = %s", (key,))
            return await cur.fetchone()

        row = await self._read(get, what=f"read record {key}")
        return None if row is None else json.loads(row[0])

    # journal -----------------------------------------------------------------------------------
    def append(self, events: list[JournalEvent]) -> None:
        if not events:
            return
        by_seq: dict[tuple[str, int], tuple[Any, ...]] = {}
        blobs: dict[str, str] = {}
        for ev in events:
            row, blob = _journal_row(ev)
            by_seq[(ev.root_run_id, ev.seq)] = row  # one row per (root, seq): the last wins
            if blob is not None:
                blobs[blob[0]] = blob[1]
        names = ("root", "seq", "run_id", "kind", "item", "step", "attempt", "data", "ref", "at")
        params: dict[str, list[Any]] = {
            name: list(col) for name, col in zip(names, zip(*by_seq.values(), strict=True), strict=True)
        }
        params["blob_id"], params["blob"] = list(blobs), list(blobs.values())

        async def write(conn: AsyncConnection[Any]) -> None:
            await conn.execute(_APPEND, params)
            return None

        self._submit(
            _Op(
                write,
                f"append {len(events)} journal events of run tree {events[0].root_run_id}",
                list(events),
            )
        )

    async def read_journal(self, root_run_id: str, since: int = 0) -> list[JournalEvent]:
        async def read(conn: AsyncConnection[Any]) -> list[tuple[Any, ...]]:
            cur = await conn.execute(
                _JOURNAL_SELECT,
                (root_run_id, since),
            )
            return await cur.fetchall()

        rows = await self._read(read, what=f"read the journal of run {root_run_id}")
        return _rows.journal_events(root_run_id, rows)

    async def unfinished_runs(self, limit: int | None = None) -> list[RunRecord]:
        async def read(conn: AsyncConnection[Any]) -> list[tuple[Any, ...]]:
            cur = await conn.execute(
                f"{_RUN_SELECT} WHERE r.status = 'running' AND r.parent_run_id IS NULL "
                "ORDER BY r.seq LIMIT %s",
                (limit,),
            )
            return await cur.fetchall()

        return [_run_record(row) for row in await self._read(read, what="list unfinished runs")]

    # runs --------------------------------------------------------------------------------------
    async def create_run(self, run: RunRecord) -> None:
        inputs = dumps_json(run.inputs, what=f"inputs of run {run.run_id}")
        overrides = None if run.overrides is None else dumps_json(run.overrides, what="run overrides")
        variables = None if run.variables is None else dumps_json(run.variables, what="run variables")
        # The parent's depth and root are read in the same statement (the parent may be in this batch).
        record, depth = prepare_new_run(run, None)
        items = record.items
        params = {
            "run_id": record.run_id,
            "flow_id": record.flow_id,
            "flow_name": record.flow_name,
            "status": record.status,
            "created_at": record.created_at,
            "completed_at": record.completed_at,
            "root": record.root_run_id if run.parent_run_id is None else run.root_run_id,
            "parent": record.parent_run_id,
            "inputs": inputs,
            "overrides": overrides,
            "variables": variables,
            "max_concurrency": record.max_concurrency,
            "depth": depth,
            "index": [it.item_index for it in items],
            "item_status": [it.status for it in items],
            "result": [_result_text(it.result, "item result") for it in items],
            "done": [it.completed_at for it in items],
        }
        duplicate = f"run '{run.run_id}' already exists"

        async def create(conn: AsyncConnection[Any]) -> Verdict:
            cur = await conn.execute(_CREATE_RUN, params)
            return lambda: duplicate if cur.rowcount == 0 else None

        self._submit(_Op(create, f"create run {run.run_id}"))

    async def complete_run(
        self,
        run_id: str,
        status: str,
        completed_at: str,
        items: list[ItemRecord],
        steps: Iterable[StepRecord],
    ) -> None:
        # Given items still running take the final status here; stored ones in _SETTLE_ITEMS.
        given = {it.item_index: it for it in items}  # one row per index: the last wins
        settled = [
            ItemRecord(it.item_index, status, it.result, it.completed_at or completed_at)
            if it.status == "running"
            else it
            for it in given.values()
        ]
        item_params = {
            "run_id": run_id,
            "index": [it.item_index for it in settled],
            "status": [it.status for it in settled],
            "result": [_result_text(it.result, "item result") for it in settled],
            "done": [it.completed_at for it in settled],
        }
        by_key = {(s.item_index, s.step_index): s for s in steps}
        step_list = list(by_key.values())
        step_params = {
            "run_id": run_id,
            "item": [s.item_index for s in step_list],
            "index": [s.step_index for s in step_list],
            "step_id": [s.step_id for s in step_list],
            "component": [s.component for s in step_list],
            "status": [s.status for s in step_list],
            "result": [_result_text(s.result, f"result of step '{s.step_id}'") for s in step_list],
            "started": [s.started_at for s in step_list],
            "done": [s.completed_at for s in step_list],
            "attempt": [s.attempt for s in step_list],
        }
        missing = f"Execution '{run_id}' not found"

        async def complete(conn: AsyncConnection[Any]) -> Verdict:
            cur = await conn.execute(_COMPLETE_RUN, (status, completed_at, run_id))
            if settled:
                await conn.execute(_UPSERT_ITEMS, item_params)
            await conn.execute(_SETTLE_ITEMS, (status, completed_at, run_id))
            if step_list:
                await conn.execute(_UPSERT_STEPS, step_params)
            return lambda: missing if cur.rowcount == 0 else None

        self._submit(_Op(complete, f"complete run {run_id}"))

    async def get_run(self, run_id: str) -> RunRecord | None:
        async def get(conn: AsyncConnection[Any]) -> tuple[Any, ...] | None:
            cur = await conn.execute(f"{_RUN_SELECT} WHERE r.run_id = %s", (run_id,))
            return await cur.fetchone()

        row = await self._read(get, what=f"read run {run_id}")
        return None if row is None else _run_record(row)

    async def list_runs(self, flt: RunFilter) -> list[RunRecord]:
        check_paging(flt)
        clauses, params = _rows.filter_clauses(flt, "%s", "r.")
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        params += [flt.limit, flt.offset]
        sql = f"{_RUN_SELECT}{where} ORDER BY r.seq DESC LIMIT %s OFFSET %s"

        async def list_(conn: AsyncConnection[Any]) -> list[tuple[Any, ...]]:
            cur = await conn.execute(sql, params)
            return await cur.fetchall()

        return [_run_record(row) for row in await self._read(list_, what="list runs")]

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        async def get(conn: AsyncConnection[Any]) -> list[tuple[Any, ...]]:
            cur = await conn.execute(
                "SELECT item_index, step_index, step_id, component, status, result, started_at, "
                "completed_at, attempt FROM steps WHERE run_id = %s ORDER BY item_index, step_index",
                (run_id,),
            )
            return await cur.fetchall()

        rows = await self._read(get, what=f"read the steps of run {run_id}")
        return [StepRecord(r[0], r[1], r[2], r[3], r[4], loads_result(r[5]), r[6], r[7], r[8]) for r in rows]

    async def delete_run(self, run_id: str) -> bool:
        async def delete(conn: AsyncConnection[Any]) -> bool:
            async with conn.transaction():
                cur = await conn.execute(
                    "DELETE FROM runs WHERE run_id = %s RETURNING root_run_id", (run_id,)
                )
                row = await cur.fetchone()
                await conn.execute("DELETE FROM items WHERE run_id = %s", (run_id,))
                await conn.execute("DELETE FROM steps WHERE run_id = %s", (run_id,))
                if row is not None and row[0] in (None, run_id):
                    await conn.execute("DELETE FROM journal WHERE root_run_id = %s", (run_id,))
            return row is not None

        await self.flush()
        return await self._read(delete, what=f"delete run {run_id}")

    async def runs_of_flow_active(self, flow_id: str) -> bool:
        async def active(conn: AsyncConnection[Any]) -> bool:
            cur = await conn.execute(
                "SELECT 1 FROM runs WHERE flow_id = %s AND status = 'running' LIMIT 1", (flow_id,)
            )
            return await cur.fetchone() is not None

        return await self._read(active, what=f"read the runs of flow {flow_id}")


async def _schema_version(conn: AsyncConnection[Any]) -> int:
    cur = await conn.execute("SELECT to_regclass('schema_version') IS NOT NULL")
    row = await cur.fetchone()
    if row is None or not row[0]:
        return 0
    cur = await conn.execute("SELECT COALESCE(max(version), 0) FROM schema_version")
    row = await cur.fetchone()
    return int(row[0]) if row is not None else 0


async def _present_tables(conn: AsyncConnection[Any]) -> set[str]:
    cur = await conn.execute(
        "SELECT c.relname FROM pg_class c WHERE c.relkind = 'r' AND c.relname = ANY(%s) "
        "AND pg_table_is_visible(c.oid)",
        (list(_rows.TABLES),),
    )
    return {row[0] for row in await cur.fetchall()}
