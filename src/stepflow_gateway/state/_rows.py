"""What the SQL stores (``state/sqlite``, ``state/postgres``) share: the schema's version and
tables, the rule for large journal values, and the decoding of stored rows."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

from ..core.journal import JournalEvent
from ..core.result import FlowResult
from ..errors import StateStoreError
from ..jsonutil import blob_id as content_id
from ..types import JsonValue
from .base import ItemRecord, RunFilter, RunRecord

__all__ = [
    "INLINE_LIMIT",
    "RETRY_MAX_S",
    "SCHEMA_VERSION",
    "SCHEMA_V1",
    "SCHEMA_V2_TABLES",
    "TABLES",
    "filter_clauses",
    "JOURNAL_SELECT",
    "journal_events",
    "journal_value",
    "loads_json",
    "loads_result",
    "not_migrated",
    "run_record",
    "schema_too_new",
]

SCHEMA_VERSION = 2
INLINE_LIMIT = 64 * 1024
"""Journal values whose JSON is longer than this are stored as blobs (once) and referenced."""
RETRY_MAX_S = 5.0
"""Longest pause between tries of a batch that could not be written."""
TABLES = ("blobs", "runs", "items", "steps", "records", "journal")
"""The tables of the current schema."""
SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS blobs (
    blob_id   TEXT PRIMARY KEY,
    blob_type TEXT NOT NULL,
    data      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    seq           {serial},
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
){keyed};
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
){keyed};
"""
"""Version 1 of the schema, to be ``str.format``-ed with the dialect's column types: ``serial``
(an auto-numbered key), and ``keyed``, what follows a table with a composite key."""
SCHEMA_V2_TABLES = """
CREATE TABLE IF NOT EXISTS records (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    root_run_id TEXT NOT NULL,
    seq         {bigint} NOT NULL,
    run_id      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    item        INTEGER NOT NULL,
    step        TEXT,
    attempt     INTEGER NOT NULL,
    data        TEXT,
    blob_ref    TEXT,
    at          {real} NOT NULL,
    PRIMARY KEY (root_run_id, seq)
){keyed};
"""
"""The tables version 2 adds (``str.format``: ``bigint``, ``real`` and ``keyed`` as above)."""


def schema_too_new(where: str, version: int) -> StateStoreError:
    """The error for a database whose schema is newer than this code's."""
    return StateStoreError(
        f"{where} has schema version {version}, newer than this gateway's {SCHEMA_VERSION}; "
        "use a newer stepflow-gateway or another database"
    )


def not_migrated(where: str, version: int, present: Collection[str], why: str) -> StateStoreError:
    """The error for a database that needs a migration it may not have (``why``)."""
    if version == 0:
        missing = ", ".join(t for t in TABLES if t not in present) or "none"
        what = f"has no gateway schema (missing tables: {missing})"
    else:
        what = f"has schema version {version}, older than this gateway's {SCHEMA_VERSION}"
    return StateStoreError(f"{where} {what} and {why}; open it once with autoMigrate: true")


def journal_value(ev: JournalEvent, dumps: Callable[..., str]) -> tuple[str | None, str | None]:
    """``(text, blob_ref)`` of ``ev``'s value: its JSON ``text`` inline, or, over ``INLINE_LIMIT``,
    the ``blob_ref`` its text is stored under (``text`` is then that blob's)."""
    data = ev.data
    if isinstance(data, FlowResult):
        data = data.to_json()
    if data is None:
        return None, None
    text = dumps(data, what=f"journal event {ev.kind} of run {ev.run_id}")
    return (text, None) if len(text) <= INLINE_LIMIT else (text, content_id(data))


def loads_json(text: str | None) -> JsonValue:
    return None if text is None else json.loads(text)


def loads_result(text: str | None) -> FlowResult | None:
    return None if text is None else FlowResult.from_json(json.loads(text))


def run_record(row: Sequence[Any], items: list[ItemRecord]) -> RunRecord:
    """The run of a row of ``run_id, flow_id, flow_name, status, created_at, completed_at,
    root_run_id, parent_run_id, inputs, overrides, variables, max_concurrency``."""
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
        overrides=loads_json(row[9]),
        variables=loads_json(row[10]),
        items=items,
        max_concurrency=row[11],
    )


def filter_clauses(flt: RunFilter, mark: str, table: str = "") -> tuple[list[str], list[Any]]:
    """The ``WHERE`` conditions of ``flt`` on the runs table (``table``: its alias and a dot) and
    their parameters, ``mark`` being the driver's placeholder."""
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("status", flt.status),
        ("flow_name", flt.flow_name),
        ("root_run_id", flt.root_run_id),
        ("parent_run_id", flt.parent_run_id),
    ):
        if value is not None:
            clauses.append(f"{table}{column} = {mark}")
            params.append(value)
    if flt.max_depth is not None:
        clauses.append(f"{table}depth <= {mark}")
        params.append(flt.max_depth)
    return clauses, params


JOURNAL_SELECT = (
    "SELECT j.seq, j.run_id, j.kind, j.item, j.step, j.attempt, j.data, b.data, j.at "
    "FROM journal j LEFT JOIN blobs b ON b.blob_id = j.blob_ref "
    "WHERE j.root_run_id = {mark} AND j.seq > {mark} ORDER BY j.seq"
)
"""The journal of a root run after a ``seq`` (``str.format``: ``mark``, the driver's placeholder);
its rows are read by ``journal_events``."""


def journal_events(root_run_id: str, rows: Iterable[Sequence[Any]]) -> list[JournalEvent]:
    """The events of rows of ``JOURNAL_SELECT``."""
    return [
        JournalEvent(
            seq,
            root_run_id,
            run_id,
            kind,
            item,
            step,
            attempt,
            loads_json(data if ref is None else ref),
            at,
        )
        for seq, run_id, kind, item, step, attempt, data, ref, at in rows
    ]
