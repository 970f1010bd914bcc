"""``server.feed.JournalFeed`` (the one fan-out of committed journal events) and a slow subscriber
of ``server.events``: dropped with an ``error`` event after what it had buffered."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from stepflow_gateway.core.journal import (
    ITEM_FINISHED,
    RUN_CREATED,
    STEP_FINISHED,
    STEP_STARTED,
    JournalEvent,
)
from stepflow_gateway.core.result import FlowResult
from stepflow_gateway.server import events
from stepflow_gateway.server.feed import JournalFeed

pytestmark = pytest.mark.anyio


def ev(seq: int, root: str = "r", run: str | None = None, kind: str = STEP_STARTED) -> JournalEvent:
    return JournalEvent(seq, root, run or root, kind, 0, "s", 1, None, 1_700_000_000.0 + seq)


def drain(sub: Any) -> list[int]:
    out = []
    while True:
        try:
            out.append(sub.receive.receive_nowait().seq)
        except (anyio.WouldBlock, anyio.EndOfStream):
            return out


async def test_events_feed_dispatches_by_root_and_run() -> None:
    feed = JournalFeed(buffer=16)
    feed.dispatch([ev(1)])  # nobody listens: nothing kept
    everything = feed.subscribe("r")
    own = feed.subscribe("r", runs=["r"])
    other = feed.subscribe("q")
    assert feed.subscribers() == 3 and feed.subscribers("r") == 2
    feed.dispatch([ev(2), ev(3, run="child"), ev(4, root="q"), ev(5)])
    assert drain(everything) == [2, 3, 5]
    assert drain(own) == [2, 5]
    assert drain(other) == [4]
    with own:
        pass  # leaving the context closes it
    assert feed.subscribers("r") == 1
    feed.close_all()
    assert feed.subscribers() == 0
    with pytest.raises(anyio.EndOfStream):
        everything.receive.receive_nowait()


async def test_events_feed_drops_a_subscriber_whose_buffer_is_full() -> None:
    feed = JournalFeed(buffer=3)
    slow = feed.subscribe("r")
    fast = feed.subscribe("r")
    feed.dispatch([ev(1), ev(2), ev(3)])
    assert drain(fast) == [1, 2, 3]
    feed.dispatch([ev(4)])
    assert slow.overflowed and feed.subscribers("r") == 1
    assert drain(slow) == [1, 2, 3]  # what it had is still read, then its stream ends
    feed.dispatch([ev(5)])
    assert drain(fast) == [4, 5]


async def test_events_slow_client_gets_an_error_event_and_its_resume_point() -> None:
    feed = JournalFeed(buffer=2)
    sub = feed.subscribe("r")
    result = FlowResult.success({"x": 1})
    feed.dispatch(
        [
            ev(7),
            JournalEvent(8, "r", "r", STEP_FINISHED, 0, "s", 1, result.to_json(), 1.0),  # as read back
            JournalEvent(9, "r", "r", ITEM_FINISHED, 0, None, 0, result, 1.0),  # in-process
        ]
    )
    assert sub.overflowed
    opts = events._Options(since=6, include_sub_runs=False, include_results=True, types=None)
    stream = events._Stream(None, opts, events._Selection("r", "r", False))  # type: ignore[arg-type]
    out = b"".join([chunk async for chunk in events._follow(stream, sub, lambda: False)]).decode()
    blocks = [b for b in out.split("\n\n") if b]
    assert blocks[0].startswith("id: 7\nevent: step_started\n")
    assert blocks[1].startswith("id: 8\nevent: step_completed\n")
    data = json.loads(blocks[1].split("data: ", 1)[1])
    assert data["result"] == {"outcome": "success", "result": {"x": 1}} and data["attempt"] == 1
    assert blocks[2].startswith("event: error\n") and "Last-Event-ID: 8" in blocks[2]
    assert len(blocks) == 3


async def test_events_of_a_sub_run_with_its_sub_runs_resume_after_since() -> None:
    """A sub-run's stream with ``includeSubRuns`` learns its descendants from their run_created
    events, also from those before ``since`` (which it reads but does not send)."""

    def created(seq: int, run: str, parent: str) -> JournalEvent:
        data = {"flowId": "f", "parentRunId": parent, "itemCount": 1}
        return JournalEvent(seq, "root", run, RUN_CREATED, -1, None, 0, data, 1.0)

    journal = [
        created(1, "root", None),  # type: ignore[arg-type]
        created(2, "a", "root"),
        created(3, "b", "root"),
        created(4, "a1", "a"),
        ev(5, root="root", run="a1"),
        ev(6, root="root", run="b"),
        ev(7, root="root", run="a"),
        created(8, "a2", "a1"),
        ev(9, root="root", run="a2"),
    ]
    opts = events._Options(since=5, include_sub_runs=True, include_results=True, types=None)
    stream = events._Stream(None, opts, events._Selection("a", "root", True))  # type: ignore[arg-type]
    sent = [chunk for e in journal if (chunk := await stream.render(e)) is not None]
    assert [c.split(b"\n", 1)[0] for c in sent] == [b"id: 7", b"id: 8", b"id: 9"]
    assert b"sub_run_created" in sent[1] and b'"parentRunId":"a1"' in sent[1]
    assert [await stream.render(e) for e in journal] == [None] * len(journal)  # sent already
