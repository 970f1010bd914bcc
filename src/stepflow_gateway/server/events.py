"""``GET /api/v1/runs/{runId}/events``: a run's progress as server-sent events.

Event names: ``step_started``, ``step_completed`` (also for skipped steps), ``step_failed``,
``item_completed`` and ``run_completed`` (always last; the stream then ends). Each ``data:`` line
is one JSON object with ``runId`` and, as they apply, ``itemIndex``, ``stepId``, ``status``,
``result`` (a FlowResult) and ``at`` (RFC 3339).

* A run in progress first replays its current state (steps already started or finished, items
  already finished), then streams live events. The snapshot and the subscription are taken with no
  ``await`` in between, so no event is lost or repeated.
* A finished run replays its final events from the state store and closes, so
  ``curl -N …/events`` works the same before and after a restart.
* Memory is bounded: each subscriber has a fixed buffer; a client that cannot keep up gets an
  ``error`` event and the stream ends (the run itself is unaffected).
* A comment line is sent every ``KEEPALIVE_S`` so proxies keep the connection and a vanished
  client is noticed.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..core.result import FlowResult
from ..engine.executor import StepEvent
from ..gateway import RunHandle, now_iso
from .request_params import path_run_id, runtime_of
from .responses import item_stats, item_status
from .runtime import RunView, ServerRuntime

__all__ = ["run_events", "sse"]

BUFFER_EVENTS = 4096
"""Events buffered per subscriber before it is dropped as too slow."""
KEEPALIVE_S = 15.0


def sse(event: str, data: dict[str, Any]) -> bytes:
    """One server-sent event."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


def _step_event(
    run_id: str, item: int, step_id: str, result: FlowResult | None, status: str, at: str | None
) -> bytes:
    if result is None:
        return sse(
            "step_started",
            {"runId": run_id, "itemIndex": item, "stepId": step_id, "status": "running", "at": at},
        )
    name = "step_failed" if status == "failed" else "step_completed"
    return sse(
        name,
        {
            "runId": run_id,
            "itemIndex": item,
            "stepId": step_id,
            "status": status,
            "result": result.to_json(),
            "at": at,
        },
    )


def _item_event(run_id: str, item: int, result: FlowResult, status: str, at: str | None) -> bytes:
    return sse(
        "item_completed",
        {"runId": run_id, "itemIndex": item, "status": status, "result": result.to_json(), "at": at},
    )


def _run_event(view: RunView) -> bytes:
    rec = view.record
    statuses = view.item_statuses()
    summary = item_stats(len(rec.inputs), statuses if statuses is not None else [i.status for i in rec.items])
    return sse(
        "run_completed", {"runId": rec.run_id, "status": rec.status, "items": summary, "at": rec.completed_at}
    )


def _iso(ts: float) -> str | None:
    return now_iso(ts) if ts and math.isfinite(ts) else None


def _live_event(run_id: str, ev: StepEvent) -> bytes | None:
    at = _iso(ev.at)
    if ev.kind == "step_started" and ev.step_id is not None:
        return _step_event(run_id, ev.item_index, ev.step_id, None, "running", at)
    if ev.kind == "step_completed" and ev.step_id is not None and ev.result is not None:
        status = {"success": "completed", "failed": "failed", "skipped": "skipped"}[ev.result.outcome]
        return _step_event(run_id, ev.item_index, ev.step_id, ev.result, status, at)
    if ev.kind == "item_completed" and ev.result is not None:
        return _item_event(run_id, ev.item_index, ev.result, item_status(ev.result), at)
    return None


async def _replay_finished(rt: ServerRuntime, view: RunView) -> AsyncIterator[bytes]:
    rec = view.record
    steps = await rt.gw.store.get_steps(rec.run_id)
    steps.sort(key=lambda s: (s.completed_at or s.started_at or "", s.item_index, s.step_index))
    for s in steps:
        if s.result is not None and s.status in ("completed", "failed", "skipped"):
            yield _step_event(rec.run_id, s.item_index, s.step_id, s.result, s.status, s.completed_at)
    for item in rec.items:
        if item.result is not None:
            yield _item_event(rec.run_id, item.item_index, item.result, item.status, item.completed_at)
    yield _run_event(view)


def _snapshot(handle: RunHandle) -> list[bytes]:
    out: list[bytes] = []
    run_id = handle.run_id
    for item, _idx, step, status, result, started, finished in handle.execution.step_states():
        if status == "running":
            out.append(_step_event(run_id, item, step.id, None, status, _iso(started)))
        elif result is not None:
            if started:
                out.append(_step_event(run_id, item, step.id, None, "running", _iso(started)))
            out.append(_step_event(run_id, item, step.id, result, status, _iso(finished)))
    for item_state in handle.execution.items:
        if item_state.result is not None:
            out.append(
                _item_event(
                    run_id, item_state.item_index, item_state.result, item_status(item_state.result), None
                )
            )
    return out


async def _stream_live(rt: ServerRuntime, handle: RunHandle) -> AsyncIterator[bytes]:
    send: MemoryObjectSendStream[StepEvent | None]
    receive: MemoryObjectReceiveStream[StepEvent | None]
    send, receive = anyio.create_memory_object_stream(BUFFER_EVENTS)
    overflow = False

    def on_event(ev: StepEvent) -> None:
        nonlocal overflow
        if overflow:
            return
        try:
            send.send_nowait(ev)
        except anyio.WouldBlock:
            overflow = True
            send.close()
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass

    # snapshot + subscribe with no await in between: nothing is missed or doubled
    initial = _snapshot(handle)
    handle.subscribe(on_event)
    try:
        for chunk in initial:
            yield chunk
        while not handle.done.is_set():
            ev: StepEvent | None = None
            with anyio.move_on_after(KEEPALIVE_S):
                try:
                    ev = await receive.receive()
                except (anyio.EndOfStream, anyio.ClosedResourceError):
                    if overflow:
                        yield sse(
                            "error",
                            {
                                "runId": handle.run_id,
                                "message": "event stream dropped: the client is not keeping up",
                            },
                        )
                        return
                    break
            if ev is None:
                if not handle.done.is_set():
                    yield b": keepalive\n\n"
                continue
            if ev.kind == "run_completed":
                break
            live = _live_event(handle.run_id, ev)
            if live is not None:
                yield live
        # run_completed is emitted before the run's final status is recorded; wait for it
        with anyio.move_on_after(30):
            await handle.done.wait()
        yield _run_event(RunView(handle.record, handle))
    finally:
        handle.unsubscribe(on_event)
        send.close()
        receive.close()


async def run_events(request: Request) -> Response:
    rt = runtime_of(request)
    view = await rt.find_run(path_run_id(request))
    if view.handle is not None and not view.handle.done.is_set():
        body: AsyncIterator[bytes] = _stream_live(rt, view.handle)
    else:
        if view.handle is not None:  # finished a moment ago; the store has its final state
            view = await rt.find_run(view.record.run_id)
        body = _replay_finished(rt, view)
    return StreamingResponse(
        body, media_type="text/event-stream", headers={"cache-control": "no-cache", "x-accel-buffering": "no"}
    )
