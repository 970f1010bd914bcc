"""The ``StateStore`` seam: what the engine and the server persist, and the records they read back.

Design: a run's live state is held by its executor in memory. What survives a crash is the
*journal* (``core.journal``): the run record at creation, then one event per step start, step end,
item end and run end, appended without waiting and committed in batches (group commit). The
executor waits for a ``flush()`` barrier before every component call that does I/O, so a step's
result is durable before anything that depends on it has effects. ``complete_run`` writes the
run's final status, items and step records (the read model behind ``GET /runs``).

Writes are ordered: a store applies ``create_run``, ``append``, ``complete_run`` and
``put_record`` in the order they were called, and reads see every write made before them.
Blobs (including stored flows, ``blob_type='flow'``) are content-addressed and never change;
mutable documents (the MCP tool catalogue) are *records* (``put_record``), never blobs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Self

from ..core.journal import JournalEvent
from ..core.result import FlowResult
from ..types import JsonValue

__all__ = ["ItemRecord", "RunRecord", "RunFilter", "StateStore", "StepRecord", "StoreLifecycle"]


@dataclass(slots=True)
class StepRecord:
    """The final state of one step of one item."""

    item_index: int
    step_index: int
    step_id: str
    component: str
    status: str
    """``blocked`` | ``runnable`` | ``running`` | ``completed`` | ``skipped`` | ``failed``."""
    result: FlowResult | None = None
    started_at: str | None = None
    completed_at: str | None = None
    attempt: int = 0
    """The number of the step's last try (1 for a step that ran once; 0 if it never started)."""


@dataclass(slots=True)
class ItemRecord:
    item_index: int
    status: str
    """``running`` | ``completed`` | ``failed`` | ``cancelled``."""
    result: FlowResult | None = None
    completed_at: str | None = None

    def copy(self) -> ItemRecord:
        """A copy (results are immutable and shared); ``dataclasses.replace`` costs 10x more."""
        return ItemRecord(self.item_index, self.status, self.result, self.completed_at)


@dataclass(slots=True)
class RunRecord:
    run_id: str
    flow_id: str
    flow_name: str | None
    status: str
    """``running`` | ``completed`` | ``failed`` | ``cancelled`` | ``recoveryFailed``."""
    created_at: str
    inputs: list[JsonValue]
    completed_at: str | None = None
    root_run_id: str | None = None
    parent_run_id: str | None = None
    overrides: JsonValue = None
    variables: JsonValue = None
    items: list[ItemRecord] = field(default_factory=list)
    max_concurrency: int | None = None

    def copy(self, root_run_id: str | None = None, items: list[ItemRecord] | None = None) -> RunRecord:
        """A copy whose lists the holder may change alone (``root_run_id``/``items`` replaced if given)."""
        return RunRecord(
            self.run_id,
            self.flow_id,
            self.flow_name,
            self.status,
            self.created_at,
            list(self.inputs),
            self.completed_at,
            self.root_run_id if root_run_id is None else root_run_id,
            self.parent_run_id,
            self.overrides,
            self.variables,
            [i.copy() for i in self.items] if items is None else items,
            self.max_concurrency,
        )


@dataclass(slots=True)
class RunFilter:
    status: str | None = None
    flow_name: str | None = None
    root_run_id: str | None = None
    parent_run_id: str | None = None
    max_depth: int | None = None
    """0 = top-level runs only."""
    limit: int | None = None
    offset: int = 0


class StoreLifecycle:
    """``async with store:`` opens the store and closes it (the implementations' ``open``/``close``)."""

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class StateStore(Protocol):
    """Async store. Implementations: ``memory.MemoryStore``, ``sqlite.SqliteStore``,
    ``postgres.PostgresStore``.

    A store whose coroutines never suspend says so with a class attribute ``suspends = False``;
    callers then skip shielding its writes from cancellation. ``durable`` is true for stores that
    outlive the process (recovery reads them at start)."""

    durable: bool

    on_commit: Any
    """``None`` or a callable ``(events: list[JournalEvent]) -> None`` the store calls, on the
    event loop, with each batch of journal events once it is committed (live event streams)."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    # blobs -------------------------------------------------------------------------------
    async def put_blob(self, blob_id: str, data: JsonValue, blob_type: str) -> None: ...

    async def get_blob(self, blob_id: str) -> tuple[JsonValue, str] | None:
        """``(data, blob_type)`` or ``None``."""
        ...

    async def delete_blob(self, blob_id: str) -> bool: ...

    # records (mutable documents by key) ----------------------------------------------------
    async def put_record(self, key: str, value: JsonValue) -> None:
        """Create or replace the record ``key``."""
        ...

    async def get_record(self, key: str) -> JsonValue | None: ...

    # journal -------------------------------------------------------------------------------
    def append(self, events: list[JournalEvent]) -> None:
        """Queue journal events (their ``seq`` already set); committed by the next batch. Never waits."""
        ...

    async def flush(self) -> None:
        """Wait until every write queued so far is committed. Raises ``StateStoreError`` if the
        batch could not be written (it stays queued and is tried again by the next flush)."""
        ...

    async def read_journal(self, root_run_id: str, since: int = 0) -> list[JournalEvent]:
        """The events of a run tree with ``seq > since``, in sequence order."""
        ...

    async def unfinished_runs(self, limit: int | None = None) -> list[RunRecord]:
        """Top-level runs still ``running`` (interrupted by a crash or a stop), oldest first."""
        ...

    # runs --------------------------------------------------------------------------------
    async def create_run(self, run: RunRecord) -> None:
        """Record a new run (queued like ``append``: durable after the next ``flush``)."""
        ...

    async def complete_run(
        self,
        run_id: str,
        status: str,
        completed_at: str,
        items: list[ItemRecord],
        steps: Sequence[StepRecord],
    ) -> None: ...

    async def get_run(self, run_id: str) -> RunRecord | None: ...

    async def list_runs(self, flt: RunFilter) -> list[RunRecord]:
        """Newest first."""
        ...

    async def get_steps(self, run_id: str) -> list[StepRecord]: ...

    async def delete_run(self, run_id: str) -> bool: ...

    async def runs_of_flow_active(self, flow_id: str) -> bool:
        """True if a run of this flow is still ``running``."""
        ...

    def describe(self) -> dict[str, Any]:
        """A short description for logs (``{"type": "sqlite", "path": ...}``)."""
        ...
