"""In-memory ``StateStore`` (the default of ``run`` and ``test``), bounded so a long-lived process
cannot grow without limit.

* Runs: at most ``max_finished_runs`` finished runs, holding at most ``max_finished_steps`` step
  records between them, are kept; when a run finishes beyond either bound, the oldest finished runs
  are evicted with their items and steps (the newest finished run always stays). Running runs are
  never evicted.
* Blobs are kept as compact JSON text (so readers get a fresh copy, and only JSON is accepted).
  Their total size is capped at ``max_blob_bytes``: past it the oldest non-flow blobs are evicted
  with a warning. Stored flows (``blob_type == "flow"``) are never evicted.

This module also holds the record rules both stores share (``prepare_new_run``,
``merge_completion``, ``run_matches``, ``dumps_json``): a top-level run's ``root_run_id`` is its
own id; a run created without items gets one ``running`` item per input; a run's depth is its
parent's depth plus one; a completed run's items and steps are upserted by index and any item
still ``running`` takes the run's final status.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..core.journal import JournalEvent
from ..errors import RunNotFound, StateStoreError
from ..logging import get_logger
from ..types import JsonValue
from .base import ItemRecord, RunFilter, RunRecord, StepRecord, StoreLifecycle

__all__ = ["DEFAULT_MAX_BLOB_BYTES", "DEFAULT_MAX_FINISHED_RUNS", "DEFAULT_MAX_FINISHED_STEPS", "MemoryStore"]

log = get_logger(__name__)

DEFAULT_MAX_FINISHED_RUNS = 10_000
DEFAULT_MAX_FINISHED_STEPS = 1_000_000
"""Step records kept over all finished runs: 10k runs of 100 steps, or 1k runs of 1000 (a step
record with its result is typically a few hundred bytes)."""
DEFAULT_MAX_BLOB_BYTES = 256 * 1024 * 1024

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


# --- record rules shared with sqlite.py ---------------------------------------------------------


def dumps_json(value: JsonValue, *, what: str) -> str:
    """Compact JSON text of ``value``; ``StateStoreError`` naming ``what`` if it is not JSON."""
    try:
        return _encoder.encode(value)
    except (TypeError, ValueError) as exc:
        raise StateStoreError(f"cannot store {what}: not a JSON value ({exc})") from exc


try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is a dependency
    _orjson = None  # type: ignore[assignment]


def _seq_of(ev: JournalEvent) -> int:
    return ev.seq


def dumps_record(value: JsonValue, *, what: str) -> str:
    """Compact JSON text of a run record's value (inputs, results, journal data), ~5x faster than
    ``dumps_json``. NaN and infinities become ``null``, as in REST answers; anything else that is
    not JSON is the ``StateStoreError`` of ``dumps_json``."""
    if _orjson is not None:
        try:
            return _orjson.dumps(value).decode()
        except TypeError:  # wide ints, non-string keys, non-JSON types: the exact encoder decides
            pass
    return dumps_json(value, what=what)


def prepare_new_run(run: RunRecord, parent: tuple[int, str | None] | None) -> tuple[RunRecord, int]:
    """The record to store for a new run and its depth.

    ``parent`` is ``(depth, root_run_id)`` of the parent run when the store knows it.
    """
    if run.parent_run_id is None:
        depth = 0
        root = run.root_run_id or run.run_id
    elif parent is not None:
        depth = parent[0] + 1
        root = run.root_run_id or parent[1] or run.parent_run_id
    else:
        depth = 1
        root = run.root_run_id or run.parent_run_id
    items = (
        [item.copy() for item in run.items]
        if run.items
        else [ItemRecord(index, "running") for index in range(len(run.inputs))]
    )
    return run.copy(root_run_id=root, items=items), depth


def merge_completion(
    existing: list[ItemRecord], status: str, completed_at: str, items: list[ItemRecord]
) -> list[ItemRecord]:
    """Items after completion: ``items`` replace those with the same index; any left ``running``
    take the run's final ``status`` and ``completed_at``. Ordered by index."""
    if len(items) == len(existing) and all(item.item_index == i for i, item in enumerate(items)):
        merged = [item.copy() for item in items]  # the usual case: every item, in order
    else:
        by_index = {item.item_index: item for item in existing}
        for item in items:
            by_index[item.item_index] = item.copy()
        merged = [by_index[index] for index in sorted(by_index)]
    for item in merged:
        if item.status == "running":
            item.status = status
            item.completed_at = item.completed_at or completed_at
    return merged


def run_matches(run: RunRecord, depth: int, flt: RunFilter) -> bool:
    """Whether a stored run passes every field of ``flt`` except paging."""
    if flt.status is not None and run.status != flt.status:
        return False
    if flt.flow_name is not None and run.flow_name != flt.flow_name:
        return False
    if flt.root_run_id is not None and run.root_run_id != flt.root_run_id:
        return False
    if flt.parent_run_id is not None and run.parent_run_id != flt.parent_run_id:
        return False
    return flt.max_depth is None or depth <= flt.max_depth


def check_paging(flt: RunFilter) -> None:
    """Reject a negative ``limit`` or ``offset``."""
    if flt.offset < 0 or (flt.limit is not None and flt.limit < 0):
        raise StateStoreError(
            f"invalid run listing: limit={flt.limit}, offset={flt.offset}; both must be >= 0"
        )


def copy_run(run: RunRecord) -> RunRecord:
    """A copy whose lists the caller may change without touching the store."""
    return run.copy()


# --- the store ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _RunEntry:
    record: RunRecord
    depth: int
    steps: dict[tuple[int, int], StepRecord] = field(default_factory=dict)
    pending: Any = None
    """Steps handed to ``complete_run`` as a lazy sequence (``gateway.StepLog``), merged on first read."""

    def step_count(self) -> int:
        """Step records held (a lazy sequence says how many it will build without building them)."""
        pending = self.pending
        if pending is None:
            return len(self.steps)
        hint = getattr(pending, "size_hint", None)
        return len(self.steps) + (hint() if hint is not None else len(pending))

    def step_map(self) -> dict[tuple[int, int], StepRecord]:
        if self.pending is not None:
            pending, self.pending = self.pending, None
            for step in pending:
                self.steps[(step.item_index, step.step_index)] = step
        return self.steps


@dataclass(slots=True)
class _Blob:
    text: str
    blob_type: str
    size: int


class MemoryStore(StoreLifecycle):
    """A bounded in-process store. Every method is atomic (no awaits inside)."""

    suspends = False
    """Its coroutines never suspend, so callers need not shield them from cancellation."""
    durable = False
    """Nothing outlives the process: there is nothing to recover at start."""

    def __init__(
        self,
        *,
        max_finished_runs: int = DEFAULT_MAX_FINISHED_RUNS,
        max_finished_steps: int = DEFAULT_MAX_FINISHED_STEPS,
        max_blob_bytes: int = DEFAULT_MAX_BLOB_BYTES,
    ) -> None:
        if max_finished_runs < 0 or max_finished_steps < 0 or max_blob_bytes < 0:
            raise ValueError("MemoryStore limits must be >= 0")
        self.max_finished_runs = max_finished_runs
        self.max_finished_steps = max_finished_steps
        self.max_blob_bytes = max_blob_bytes
        self._runs: dict[str, _RunEntry] = {}  # insertion order = creation order
        self._finished: OrderedDict[str, int] = OrderedDict()  # run id -> its step records; completion order
        self._finished_steps = 0
        self._active_by_flow: dict[str, int] = {}
        self._blobs: dict[str, _Blob] = {}  # insertion order = age
        self._blob_bytes = 0
        self._records: dict[str, str] = {}
        self._journal: dict[str, list[JournalEvent]] = {}  # root run id -> events; dropped with the root
        self.on_commit: Any = None

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        """Drop everything: an in-memory store does not outlive its process."""
        self._runs.clear()
        self._finished.clear()
        self._finished_steps = 0
        self._active_by_flow.clear()
        self._blobs.clear()
        self._blob_bytes = 0
        self._records.clear()
        self._journal.clear()

    def describe(self) -> dict[str, Any]:
        return {
            "type": "inMemory",
            "maxFinishedRuns": self.max_finished_runs,
            "maxFinishedSteps": self.max_finished_steps,
            "maxBlobBytes": self.max_blob_bytes,
        }

    @property
    def blob_bytes(self) -> int:
        """Total size of the stored blobs' JSON text, in bytes."""
        return self._blob_bytes

    # blobs -------------------------------------------------------------------------------------
    async def put_blob(self, blob_id: str, data: JsonValue, blob_type: str) -> None:
        old = self._blobs.get(blob_id)
        if old is not None:
            if blob_type == "flow":
                old.blob_type = "flow"  # a blob that is also a stored flow must survive eviction
            return
        text = dumps_json(data, what=f"blob {blob_id}")
        size = len(text.encode())
        self._blobs[blob_id] = _Blob(text, blob_type, size)
        self._blob_bytes += size
        if self._blob_bytes > self.max_blob_bytes:
            self._evict_blobs(keep=blob_id)

    def _evict_blobs(self, keep: str) -> None:
        evicted = 0
        freed = 0
        for blob_id in list(self._blobs):
            if self._blob_bytes <= self.max_blob_bytes:
                break
            blob = self._blobs[blob_id]
            if blob.blob_type == "flow" or blob_id == keep:
                continue
            del self._blobs[blob_id]
            self._blob_bytes -= blob.size
            evicted += 1
            freed += blob.size
        if evicted:
            log.warning(
                "memory state store evicted the oldest blobs to stay under its size cap",
                evicted=evicted,
                freed_bytes=freed,
                blob_bytes=self._blob_bytes,
                max_blob_bytes=self.max_blob_bytes,
            )
        if self._blob_bytes > self.max_blob_bytes:
            log.warning(
                "memory state store is over its blob size cap; only stored flows and the newest blob remain",
                blob_bytes=self._blob_bytes,
                max_blob_bytes=self.max_blob_bytes,
            )

    async def get_blob(self, blob_id: str) -> tuple[JsonValue, str] | None:
        blob = self._blobs.get(blob_id)
        if blob is None:
            return None
        return json.loads(blob.text), blob.blob_type

    async def delete_blob(self, blob_id: str) -> bool:
        blob = self._blobs.pop(blob_id, None)
        if blob is None:
            return False
        self._blob_bytes -= blob.size
        return True

    # records -----------------------------------------------------------------------------------
    async def put_record(self, key: str, value: JsonValue) -> None:
        self._records[key] = dumps_json(value, what=f"record {key}")

    async def get_record(self, key: str) -> JsonValue | None:
        text = self._records.get(key)
        return None if text is None else json.loads(text)

    # journal -----------------------------------------------------------------------------------
    def append(self, events: list[JournalEvent]) -> None:
        journal = self._journal
        for ev in events:
            lst = journal.get(ev.root_run_id)
            if lst is None:
                lst = journal[ev.root_run_id] = []  # dropped with its root run (eviction, delete)
            lst.append(ev)
        if self.on_commit is not None:
            self.on_commit(events)

    async def flush(self) -> None:
        return None

    async def read_journal(self, root_run_id: str, since: int = 0) -> list[JournalEvent]:
        events = self._journal.get(root_run_id, ())
        return sorted((ev for ev in events if ev.seq > since), key=_seq_of)

    async def unfinished_runs(self, limit: int | None = None) -> list[RunRecord]:
        out = [
            copy_run(e.record)
            for e in self._runs.values()
            if e.record.status == "running" and e.record.parent_run_id is None
        ]
        return out if limit is None else out[:limit]

    # runs --------------------------------------------------------------------------------------
    async def create_run(self, run: RunRecord) -> None:
        if run.run_id in self._runs:
            raise StateStoreError(f"run '{run.run_id}' already exists")
        parent_entry = self._runs.get(run.parent_run_id) if run.parent_run_id is not None else None
        parent = (parent_entry.depth, parent_entry.record.root_run_id) if parent_entry else None
        record, depth = prepare_new_run(run, parent)
        self._runs[run.run_id] = _RunEntry(record, depth)
        if record.status == "running":
            self._active_by_flow[record.flow_id] = self._active_by_flow.get(record.flow_id, 0) + 1
        else:
            self._mark_finished(run.run_id)

    async def complete_run(
        self,
        run_id: str,
        status: str,
        completed_at: str,
        items: list[ItemRecord],
        steps: Sequence[StepRecord],
    ) -> None:
        entry = self._runs.get(run_id)
        if entry is None:
            raise RunNotFound(f"Execution '{run_id}' not found")
        record = entry.record
        if record.status == "running":
            self._release_active(record.flow_id)
        record.status = status
        record.completed_at = completed_at
        record.items = merge_completion(record.items, status, completed_at, items)
        if isinstance(steps, list):
            step_map = entry.step_map()
            for step in steps:
                step_map[(step.item_index, step.step_index)] = replace(step)
        elif entry.pending is None and not entry.steps:
            entry.pending = steps  # a lazy sequence whose records are fresh: read it when asked
        else:
            step_map = entry.step_map()
            for step in steps:
                step_map[(step.item_index, step.step_index)] = replace(step)
        if status != "running":
            self._mark_finished(run_id)

    def _release_active(self, flow_id: str) -> None:
        left = self._active_by_flow.get(flow_id, 0) - 1
        if left > 0:
            self._active_by_flow[flow_id] = left
        else:
            self._active_by_flow.pop(flow_id, None)

    def _mark_finished(self, run_id: str) -> None:
        # An OrderedDict, not a dict: evicting from the front of a plain dict leaves holes that
        # every later ``iter()`` walks over again (it was 6% of a noop run's CPU).
        finished = self._finished
        entry = self._runs.get(run_id)
        steps = entry.step_count() if entry is not None else 0
        self._finished_steps += steps - finished.get(run_id, 0)
        finished[run_id] = steps
        finished.move_to_end(run_id)
        keep = 1 if self.max_finished_runs else 0  # the newest stays, however many steps it has
        while len(finished) > keep and (
            len(finished) > self.max_finished_runs or self._finished_steps > self.max_finished_steps
        ):
            victim, victim_steps = finished.popitem(last=False)
            self._finished_steps -= victim_steps
            self._runs.pop(victim, None)
            self._journal.pop(victim, None)

    async def get_run(self, run_id: str) -> RunRecord | None:
        entry = self._runs.get(run_id)
        return copy_run(entry.record) if entry is not None else None

    async def list_runs(self, flt: RunFilter) -> list[RunRecord]:
        check_paging(flt)
        skip = flt.offset
        out: list[RunRecord] = []
        if flt.limit == 0:
            return out
        for entry in reversed(self._runs.values()):
            if not run_matches(entry.record, entry.depth, flt):
                continue
            if skip:
                skip -= 1
                continue
            out.append(copy_run(entry.record))
            if flt.limit is not None and len(out) >= flt.limit:
                break
        return out

    async def get_steps(self, run_id: str) -> list[StepRecord]:
        entry = self._runs.get(run_id)
        if entry is None:
            return []
        steps = entry.step_map()
        return [replace(steps[key]) for key in sorted(steps)]

    async def delete_run(self, run_id: str) -> bool:
        entry = self._runs.pop(run_id, None)
        if entry is None:
            return False
        if entry.record.status == "running":
            self._release_active(entry.record.flow_id)
        self._finished_steps -= self._finished.pop(run_id, 0)
        self._journal.pop(run_id, None)
        return True

    async def runs_of_flow_active(self, flow_id: str) -> bool:
        return self._active_by_flow.get(flow_id, 0) > 0
