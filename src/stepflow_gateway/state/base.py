"""The ``StateStore`` seam: what the engine and the server persist, and the records they read back.

Design: a run's live state is held by its executor in memory; the store is written at run
creation (``create_run``) and once when the run finishes (``complete_run``, items and step
records in one transaction). So a run costs two writes however many steps it has, which keeps
SQLite off the hot path. Blobs (including stored flows, ``blob_type='flow'``) are written as they
are put.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..core.result import FlowResult
from ..types import JsonValue

__all__ = ["ItemRecord", "RunRecord", "RunFilter", "StateStore", "StepRecord"]


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
    """``running`` | ``completed`` | ``failed`` | ``cancelled``."""
    created_at: str
    inputs: list[JsonValue]
    completed_at: str | None = None
    root_run_id: str | None = None
    parent_run_id: str | None = None
    overrides: JsonValue = None
    variables: JsonValue = None
    items: list[ItemRecord] = field(default_factory=list)

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


class StateStore(Protocol):
    """Async store. Implementations: ``memory.MemoryStore``, ``sqlite.SqliteStore``.

    A store whose coroutines never suspend says so with a class attribute ``suspends = False``;
    callers then skip shielding its writes from cancellation."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    # blobs -------------------------------------------------------------------------------
    async def put_blob(self, blob_id: str, data: JsonValue, blob_type: str) -> None: ...

    async def get_blob(self, blob_id: str) -> tuple[JsonValue, str] | None:
        """``(data, blob_type)`` or ``None``."""
        ...

    async def delete_blob(self, blob_id: str) -> bool: ...

    # runs --------------------------------------------------------------------------------
    async def create_run(self, run: RunRecord) -> None: ...

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
