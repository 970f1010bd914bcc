"""The execution journal's value types: what a run appends to its store as it goes.

A run tree (a top-level run and its map/iterate/eval children) has one journal, keyed by the root
run id. Every event carries a sequence number that is strictly increasing within that journal
(assigned by the run tree's owner when it appends, starting after the largest one stored), so
``GET /runs/{id}/events?since=N`` and SSE ``Last-Event-ID`` resume exactly, across restarts.

Durability rule (what recovery relies on): events are appended without waiting and written in
batches (group commit); every component call that does I/O is preceded by a *barrier* that waits
until everything the run appended so far is committed. So a step's result is durable before any
step that depends on it can have effects, and a client only ever sees committed events. Inline
builtins (pure, no I/O) are not waited for: if their events are lost in a crash they are simply
computed again, with the same result.

This module imports nothing of ours but ``core.result``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from .result import FlowResult

__all__ = [
    "CANCEL_REQUESTED",
    "ITEM_FINISHED",
    "JournalEvent",
    "RUN_CREATED",
    "RUN_FINISHED",
    "STEP_FINISHED",
    "STEP_RETRY",
    "STEP_STARTED",
    "RecoveredRun",
    "RecoveredStep",
    "replay",
]

RUN_CREATED: Final = "run_created"
"""A run (top level or child) was created; ``data``: ``{flowId, parentRunId, itemCount}``."""
STEP_STARTED: Final = "step_started"
"""A component call began; ``attempt`` is 1-based and counts every try (retries and re-runs)."""
STEP_RETRY: Final = "step_retry"
"""A try failed and ``onError: retry`` will try again; ``data`` is the failed try's ``FlowResult``."""
STEP_FINISHED: Final = "step_finished"
"""A step has its final result: ``data`` is its ``FlowResult`` JSON (success, failed or skipped)."""
ITEM_FINISHED: Final = "item_finished"
"""An input item has its result: ``data`` is the item's ``FlowResult`` JSON."""
CANCEL_REQUESTED: Final = "cancel_requested"
"""``POST /runs/{id}/cancel`` (or the embedding API) asked for the run to stop."""
RUN_FINISHED: Final = "run_finished"
"""The run ended; ``data``: ``{status}``."""


@dataclass(slots=True)
class JournalEvent:
    """One journal entry. ``item`` is ``-1`` for run-level events."""

    seq: int
    root_run_id: str
    run_id: str
    kind: str
    item: int = -1
    step: str | None = None
    attempt: int = 0
    data: Any = None
    at: float = 0.0


@dataclass(slots=True)
class RecoveredStep:
    """What the journal says about one step of one item."""

    attempts: int = 0
    """How many times the step was started (its next try is ``attempts + 1``)."""
    retries: int = 0
    """How many tries failed and were retried (``onError: retry``; crash re-runs do not count)."""
    result: FlowResult | None = None
    """Its final result, when it finished."""


@dataclass(slots=True)
class RecoveredRun:
    """The state of one run rebuilt from its journal events."""

    run_id: str
    steps: dict[tuple[int, str], RecoveredStep]
    items: dict[int, FlowResult]
    cancel_requested: bool = False
    finished_status: str | None = None
    last_seq: int = 0


def replay(run_id: str, events: list[JournalEvent]) -> RecoveredRun:
    """Fold a run's events (in sequence order) into what recovery needs.

    Events of other runs (children share the root's journal) are ignored.
    """
    state = RecoveredRun(run_id, {}, {})
    steps = state.steps
    for ev in events:
        if ev.seq > state.last_seq:
            state.last_seq = ev.seq
        if ev.run_id != run_id:
            continue
        kind = ev.kind
        if kind == STEP_STARTED or kind == STEP_RETRY or kind == STEP_FINISHED:
            key = (ev.item, ev.step or "")
            step = steps.get(key)
            if step is None:
                step = steps[key] = RecoveredStep()
            if ev.attempt > step.attempts:
                step.attempts = ev.attempt
            if kind == STEP_RETRY:
                step.retries += 1
            elif kind == STEP_FINISHED:
                step.result = FlowResult.from_json(ev.data)
        elif kind == ITEM_FINISHED:
            state.items[ev.item] = FlowResult.from_json(ev.data)
        elif kind == CANCEL_REQUESTED:
            state.cancel_requested = True
        elif kind == RUN_FINISHED:
            state.finished_status = ev.data.get("status") if isinstance(ev.data, dict) else None
    return state
