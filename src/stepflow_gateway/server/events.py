"""``GET /api/v1/runs/{runId}/events``: a run's progress as server-sent events, read from its journal.

Event names: ``step_started``, ``step_retry`` (a try failed and ``onError: retry`` tries again),
``step_completed`` (also for skipped steps), ``step_failed``, ``item_completed`` and
``run_completed`` (the run's own is always last; the stream then ends). With ``includeSubRuns``
also ``sub_run_created`` and the sub-runs' events (their own ``run_completed`` included: look at
``runId``). Each ``data:`` line is one JSON object with ``runId``, ``seq`` and, as they apply,
``itemIndex``, ``stepId``, ``status``, ``attempt``, ``result`` (a FlowResult), ``items`` (the run's
item statistics) and ``at`` (RFC 3339).

* Every event is a committed journal event (``core/journal.py``): its SSE ``id`` is the journal's
  sequence number, strictly increasing within a run tree (a run and its sub-runs). Events reach the
  stream only once the store has committed them (``JournalFeed``, fed by the store's
  ``on_commit``), so a client never sees what a crash could lose. Steps of inline builtins write no
  ``step_started``, and their events are committed with the run's next barrier or its end.
* ``?since=N`` or the ``Last-Event-ID`` header (which wins: ``EventSource`` sends it on reconnect
  with the original URL) resume after ``N``: the stream subscribes to commits first, then reads the
  stored tail, then continues live, dropping live events it has already replayed. So nothing is
  missed or repeated, across reconnects and server restarts alike.
* A finished run replays its events and closes after its ``run_completed``. Runs with no journal
  (recorded before journals existed, or by a gateway that does not journal) replay from their
  records, without ids.
* ``includeSubRuns=true`` adds the events of the run's sub-runs (map/iterate/eval children); a
  sub-run's own id streams that sub-run. ``eventTypes`` (repeated or comma-separated event names;
  upstream's ``STATUS_EVENT_TYPE_*`` names are accepted too) keeps only those events;
  ``includeResults=false`` leaves ``result`` out.
* Memory is bounded: each subscriber has a fixed buffer; a client that cannot keep up gets an
  ``error`` event (no id) and the stream ends; reconnecting with ``Last-Event-ID`` resumes it. The
  run itself is unaffected.
* A comment line is sent every ``KEEPALIVE_S`` so proxies keep the connection and a vanished
  client is noticed.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..core.journal import (
    ITEM_FINISHED,
    RUN_CREATED,
    RUN_FINISHED,
    STEP_FINISHED,
    STEP_RETRY,
    STEP_STARTED,
    JournalEvent,
)
from ..core.result import FlowResult
from ..gateway import now_iso
from .errors import ApiError
from .feed import BUFFER_EVENTS, Subscription
from .request_params import path_run_id, query_bool, query_int, runtime_of
from .responses import item_stats, item_status
from .runtime import RunView, ServerRuntime

__all__ = ["BUFFER_EVENTS", "EVENT_NAMES", "KEEPALIVE_S", "run_events", "sse"]

KEEPALIVE_S = 15.0
RUN_END_WAIT_S = 30.0
"""How long ``run_completed`` waits for the run's final record once its end is journaled."""
CHUNK_BYTES = 64 * 1024
"""Events that are ready together are written in chunks of about this size."""

EVENT_NAMES = (
    "step_started",
    "step_retry",
    "step_completed",
    "step_failed",
    "item_completed",
    "run_completed",
    "sub_run_created",
)
_UPSTREAM_TYPES = {
    "STATUS_EVENT_TYPE_UNSPECIFIED": (),
    "STATUS_EVENT_TYPE_RUN_CREATED": (),
    "STATUS_EVENT_TYPE_STEP_STARTED": ("step_started",),
    "STATUS_EVENT_TYPE_STEP_COMPLETED": ("step_completed", "step_failed"),
    "STATUS_EVENT_TYPE_STEP_READY": (),
    "STATUS_EVENT_TYPE_ITEM_COMPLETED": ("item_completed",),
    "STATUS_EVENT_TYPE_RUN_COMPLETED": ("run_completed",),
    "STATUS_EVENT_TYPE_SUB_RUN_CREATED": ("sub_run_created",),
    "STATUS_EVENT_TYPE_STEPS_NEEDED": (),
}
_KEEPALIVE = b": keepalive\n\n"


def sse(event: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    """One server-sent event (with ``id:`` when ``event_id`` is given)."""
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    if event_id is None:
        return f"event: {event}\ndata: {body}\n\n".encode()
    return f"id: {event_id}\nevent: {event}\ndata: {body}\n\n".encode()


def _iso(ts: float | None) -> str | None:
    return now_iso(ts) if ts and math.isfinite(ts) else None


def _result_json(data: Any) -> Any:
    """A journal event's FlowResult as JSON (in-process it is the object, read back its JSON)."""
    return data.to_json() if isinstance(data, FlowResult) else data


def _result_of(data: Any) -> FlowResult | None:
    if isinstance(data, FlowResult):
        return data
    try:
        return FlowResult.from_json(data)
    except ValueError:
        return None


_STEP_STATUS = {"success": "completed", "failed": "failed", "skipped": "skipped"}


# -- request -----------------------------------------------------------------------------------
@dataclass(slots=True, frozen=True)
class _Options:
    since: int
    include_sub_runs: bool
    include_results: bool
    types: frozenset[str] | None
    """Event names to send; ``None``: all."""


def _resume_point(request: Request) -> int:
    raw = request.headers.get("last-event-id")
    if raw is not None and raw.strip() != "":
        try:
            value = int(raw.strip())
        except ValueError:
            value = -1
        if value < 0:
            raise ApiError(400, f"Header 'Last-Event-ID' must be a non-negative integer, got '{raw}'")
        return value
    return query_int(request, "since") or 0


def _event_types(request: Request) -> frozenset[str] | None:
    names: set[str] = set()
    for raw in request.query_params.getlist("eventTypes"):
        for part in raw.split(","):
            name = part.strip()
            if not name:
                continue
            if name in _UPSTREAM_TYPES:
                names.update(_UPSTREAM_TYPES[name])
            elif name.lower() in EVENT_NAMES:
                names.add(name.lower())
            else:
                known = ", ".join(EVENT_NAMES)
                raise ApiError(
                    400, f"Query parameter 'eventTypes': unknown event type '{name}' (one of {known})"
                )
    return frozenset(names) if names else None


def _options(request: Request) -> _Options:
    return _Options(
        since=_resume_point(request),
        include_sub_runs=query_bool(request, "includeSubRuns", False),
        include_results=query_bool(request, "includeResults", True),
        types=_event_types(request),
    )


async def run_events(request: Request) -> Response:
    rt = runtime_of(request)
    opts = _options(request)
    view = await rt.find_run(path_run_id(request))
    return StreamingResponse(
        _events(rt, view, opts),
        media_type="text/event-stream",
        headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
    )


# -- the stream -----------------------------------------------------------------------------------
class _Selection:
    """Which runs of the tree the stream shows: the run, and with sub-runs its descendants (learnt
    from their ``run_created`` events, which precede all their other events)."""

    __slots__ = ("run_id", "runs", "everything", "sub_runs")

    def __init__(self, run_id: str, root_run_id: str, sub_runs: bool) -> None:
        self.run_id = run_id
        self.runs = {run_id}
        self.sub_runs = sub_runs
        self.everything = sub_runs and run_id == root_run_id
        """The root with its sub-runs: every event of the tree."""

    def wants(self, ev: JournalEvent) -> bool:
        if self.everything or ev.run_id in self.runs:
            return True
        if self.sub_runs and ev.kind == RUN_CREATED and isinstance(ev.data, dict):
            if ev.data.get("parentRunId") in self.runs:
                self.runs.add(ev.run_id)
                return True
        return False


class _Stream:
    """Turns the journal events of one stream into SSE chunks (``None`` once the run has ended)."""

    __slots__ = ("rt", "opts", "selection", "last_seq", "ended")

    def __init__(self, rt: ServerRuntime, opts: _Options, selection: _Selection) -> None:
        self.rt = rt
        self.opts = opts
        self.selection = selection
        self.last_seq = opts.since
        self.ended = False

    async def render(self, ev: JournalEvent) -> bytes | None:
        """The event's SSE chunk, or ``None`` when it is not shown (filtered, or already sent)."""
        wanted = self.selection.wants(ev)  # first: it learns sub-runs from events already sent too
        if ev.seq <= self.last_seq:
            return None
        self.last_seq = ev.seq
        if not wanted:
            return None
        own = ev.run_id == self.selection.run_id
        if ev.kind == RUN_FINISHED:
            if own:
                self.ended = True
            if not self._shown("run_completed"):
                return None
            return await self._run_completed(ev)
        name, data = self._describe(ev, own)
        if name is None or not self._shown(name):
            return None
        return sse(name, data, ev.seq)

    def _shown(self, name: str) -> bool:
        return self.opts.types is None or name in self.opts.types

    def _describe(self, ev: JournalEvent, own: bool) -> tuple[str | None, dict[str, Any]]:
        kind = ev.kind
        at = _iso(ev.at)
        results = self.opts.include_results
        if kind == STEP_STARTED:
            data: dict[str, Any] = {
                "runId": ev.run_id,
                "itemIndex": ev.item,
                "stepId": ev.step,
                "status": "running",
                "attempt": ev.attempt,
            }
            name = "step_started"
        elif kind == STEP_FINISHED or kind == STEP_RETRY:
            result = _result_of(ev.data)
            if kind == STEP_RETRY:
                name, status = "step_retry", "retrying"
            else:
                status = _STEP_STATUS.get(result.outcome, "failed") if result is not None else "failed"
                name = "step_failed" if status == "failed" else "step_completed"
            data = {"runId": ev.run_id, "itemIndex": ev.item, "stepId": ev.step, "status": status}
            if results:
                data["result"] = _result_json(ev.data)
            if ev.attempt:
                data["attempt"] = ev.attempt
        elif kind == ITEM_FINISHED:
            name = "item_completed"
            data = {"runId": ev.run_id, "itemIndex": ev.item, "status": item_status(_result_of(ev.data))}
            if results:
                data["result"] = _result_json(ev.data)
        elif kind == RUN_CREATED and not own:
            name = "sub_run_created"
            info = ev.data if isinstance(ev.data, dict) else {}
            data = {
                "runId": ev.run_id,
                "parentRunId": info.get("parentRunId"),
                "flowId": info.get("flowId"),
                "itemCount": info.get("itemCount"),
            }
        else:  # the run's own run_created, cancel_requested: not events of this API
            return None, {}
        data["seq"] = ev.seq
        data["at"] = at
        return name, data

    async def _run_completed(self, ev: JournalEvent) -> bytes:
        """``run_completed``: the status from the journal, the item statistics from the run's
        final record (the live run is waited for, bounded: it records its end right after)."""
        gw = self.rt.gw
        info = ev.data if isinstance(ev.data, dict) else {}
        view: RunView | None = None
        handle = gw.live.get(ev.run_id)
        if handle is not None:
            with anyio.move_on_after(RUN_END_WAIT_S):
                await handle.done.wait()
            view = RunView(handle.record, handle)
        else:
            rec = await gw.store.get_run(ev.run_id)
            if rec is not None:
                view = RunView(rec)
        data: dict[str, Any] = {"runId": ev.run_id}
        if view is not None and view.record.parent_run_id is not None:
            data["parentRunId"] = view.record.parent_run_id
        status = info.get("status")
        data["status"] = status if isinstance(status, str) else (view.record.status if view else "completed")
        if view is not None:
            statuses = view.item_statuses()
            rec = view.record
            data["items"] = item_stats(
                len(rec.inputs), statuses if statuses is not None else [i.status for i in rec.items]
            )
        if isinstance(info.get("error"), str):
            data["error"] = info["error"]
        data["seq"] = ev.seq
        data["at"] = (view.record.completed_at if view is not None else None) or _iso(ev.at)
        return sse("run_completed", data, ev.seq)


async def _events(rt: ServerRuntime, view: RunView, opts: _Options) -> AsyncIterator[bytes]:
    rec = view.record
    run_id = rec.run_id
    root = rec.root_run_id or run_id
    handle = view.handle
    if handle is not None and handle.execution.journal is None:  # a gateway that does not journal
        await handle.done.wait()
        async for record_event in _replay_records(rt, RunView(handle.record, handle), opts):
            yield record_event
        return
    selection = _Selection(run_id, root, opts.include_sub_runs)
    # Which runs the feed buffers for us. A sub-run with its sub-runs learns them as it goes, so it
    # takes the whole tree and reads the journal from the start (the run_created events).
    learning = opts.include_sub_runs and run_id != root
    runs = None if (selection.everything or learning) else (run_id,)
    stream = _Stream(rt, opts, selection)
    with rt.feed.subscribe(root, runs) as sub:  # subscribed before the stored tail is read
        live = handle is not None and not handle.done.is_set()
        stored = await rt.gw.store.read_journal(root, 0 if learning else opts.since)
        if not live and opts.since == 0 and not any(ev.run_id == run_id for ev in stored):
            # no journal for this run (recorded before journals, or a run that never started)
            async for record_event in _replay_records(rt, await rt.find_run(run_id), opts):
                yield record_event
            return
        batch: list[bytes] = []
        size = 0
        for ev in stored:
            chunk = await stream.render(ev)
            if chunk is not None:
                batch.append(chunk)
                size += len(chunk)
                if size >= CHUNK_BYTES:
                    yield b"".join(batch)
                    batch, size = [], 0
            if stream.ended:
                break
        if batch:
            yield b"".join(batch)
        if stream.ended or not live:  # a run that had ended (or is not running here): that was all
            return
        assert handle is not None
        async for chunk in _follow(stream, sub, handle.done.is_set):
            yield chunk


async def _follow(stream: _Stream, sub: Subscription, done: Callable[[], bool]) -> AsyncIterator[bytes]:
    """The live part: committed events as they come (those ready together in one write), and
    keepalives while none do."""
    receive = sub.receive
    while True:
        ev: JournalEvent | None = None
        with anyio.move_on_after(KEEPALIVE_S):
            try:
                ev = await receive.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                if sub.overflowed:
                    yield sse(
                        "error",
                        {
                            "runId": stream.selection.run_id,
                            "message": "event stream dropped: the client is not keeping up "
                            f"(reconnect with Last-Event-ID: {stream.last_seq} to resume)",
                        },
                    )
                return  # dropped, or the server is stopping
        if ev is None:
            if done():  # ended without a journaled end (stopped, to resume at the next start)
                return
            yield _KEEPALIVE
            continue
        batch: list[bytes] = []
        size = 0
        while True:
            chunk = await stream.render(ev)
            if chunk is not None:
                batch.append(chunk)
                size += len(chunk)
            if stream.ended or size >= CHUNK_BYTES:
                break
            try:
                ev = receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break  # an end of stream is seen by the next receive
        if batch:
            yield b"".join(batch)
        if stream.ended:
            return


# -- runs without a journal -------------------------------------------------------------------------
async def _replay_records(rt: ServerRuntime, view: RunView, opts: _Options) -> AsyncIterator[bytes]:
    """A finished run's final events from its records (no journal, so no ids)."""
    rec = view.record
    results = opts.include_results

    def shown(name: str) -> bool:
        return opts.types is None or name in opts.types

    steps = await rt.gw.store.get_steps(rec.run_id)
    steps.sort(key=lambda s: (s.completed_at or s.started_at or "", s.item_index, s.step_index))
    for s in steps:
        if s.result is not None and s.status in ("completed", "failed", "skipped"):
            name = "step_failed" if s.status == "failed" else "step_completed"
            if shown(name):
                data: dict[str, Any] = {
                    "runId": rec.run_id,
                    "itemIndex": s.item_index,
                    "stepId": s.step_id,
                    "status": s.status,
                }
                if results:
                    data["result"] = s.result.to_json()
                if s.attempt:
                    data["attempt"] = s.attempt
                data["at"] = s.completed_at
                yield sse(name, data)
    for item in rec.items:
        if item.result is not None and shown("item_completed"):
            data = {"runId": rec.run_id, "itemIndex": item.item_index, "status": item.status}
            if results:
                data["result"] = item.result.to_json()
            data["at"] = item.completed_at
            yield sse("item_completed", data)
    if shown("run_completed"):
        statuses = view.item_statuses()
        summary = item_stats(
            len(rec.inputs), statuses if statuses is not None else [i.status for i in rec.items]
        )
        yield sse(
            "run_completed",
            {"runId": rec.run_id, "status": rec.status, "items": summary, "at": rec.completed_at},
        )
