"""``JournalFeed``: one fan-out of committed journal events to the server's event streams.

The lifespan (``app.py``) sets the store's ``on_commit`` to ``JournalFeed.dispatch`` once; every
``GET /runs/{id}/events`` stream (``events.py``) subscribes to the run tree it reads (keyed by the
root run id). ``dispatch`` runs on the event loop, inside the store's commit callback, so it never
waits: each subscription has a bounded buffer, and a subscriber whose buffer is full is dropped
(its stream then says so and ends; the client can resume with ``Last-Event-ID``).

A subscription may name the run ids it wants (``runs``); events of other runs of the tree are not
buffered for it, so a stream of a map's parent is not flooded by the map's children.
"""

from __future__ import annotations

from collections.abc import Iterable

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..core.journal import JournalEvent

__all__ = ["BUFFER_EVENTS", "JournalFeed", "Subscription"]

BUFFER_EVENTS = 4096
"""Events buffered per subscriber before it is dropped as too slow."""


class Subscription:
    """One subscriber's buffer of committed events of one run tree."""

    __slots__ = ("feed", "root_run_id", "runs", "overflowed", "_send", "receive")

    def __init__(self, feed: JournalFeed, root_run_id: str, runs: frozenset[str] | None, buffer: int) -> None:
        self.feed = feed
        self.root_run_id = root_run_id
        self.runs = runs
        """The run ids whose events are buffered; ``None``: every run of the tree."""
        self.overflowed = False
        """The buffer was full: the subscription was dropped and its stream ended."""
        send: MemoryObjectSendStream[JournalEvent]
        receive: MemoryObjectReceiveStream[JournalEvent]
        send, receive = anyio.create_memory_object_stream(buffer)
        self._send = send
        self.receive = receive
        """Ends (``EndOfStream``) when the subscription is dropped or closed."""

    def offer(self, event: JournalEvent) -> None:
        if self.runs is not None and event.run_id not in self.runs:
            return
        try:
            self._send.send_nowait(event)
        except anyio.WouldBlock:
            self.overflowed = True
            self.close()
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            self.close()

    def close(self) -> None:
        """Stop receiving (idempotent); what is buffered can still be read."""
        self.feed._remove(self)
        self._send.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        self.receive.close()


class JournalFeed:
    """The registry of subscriptions by root run id; ``dispatch`` is the store's ``on_commit``."""

    __slots__ = ("buffer", "_subs")

    def __init__(self, buffer: int = BUFFER_EVENTS) -> None:
        self.buffer = buffer
        self._subs: dict[str, list[Subscription]] = {}

    def subscribe(self, root_run_id: str, runs: Iterable[str] | None = None) -> Subscription:
        """Receive the events of ``root_run_id``'s tree committed from now on (only those of
        ``runs`` when given). Use as a context manager, or ``close`` it."""
        sub = Subscription(self, root_run_id, None if runs is None else frozenset(runs), self.buffer)
        self._subs.setdefault(root_run_id, []).append(sub)
        return sub

    def subscribers(self, root_run_id: str | None = None) -> int:
        """How many subscriptions are open (of one tree, or in all)."""
        if root_run_id is not None:
            return len(self._subs.get(root_run_id, ()))
        return sum(len(subs) for subs in self._subs.values())

    def dispatch(self, events: list[JournalEvent]) -> None:
        """Hand a committed batch to the subscribers of each event's tree (in batch order)."""
        subs_by_root = self._subs
        if not subs_by_root:
            return
        for ev in events:
            subs = subs_by_root.get(ev.root_run_id)
            if subs:
                for sub in tuple(subs):  # offer may drop a subscriber
                    sub.offer(ev)

    def close_all(self) -> None:
        """End every subscription (server shutdown): their streams end once they have sent what
        is buffered."""
        for subs in list(self._subs.values()):
            for sub in tuple(subs):
                sub.close()

    def _remove(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.root_run_id)
        if subs is None:
            return
        try:
            subs.remove(sub)
        except ValueError:
            return
        if not subs:
            del self._subs[sub.root_run_id]
