"""``TreeJournal``: how one run tree (a top-level run and its children) writes its journal.

Events are numbered here (one counter per tree, so sequence numbers are dense and ordered across
parent and children) and buffered; ``publish`` hands the buffer to the store (a queued write, no
wait) and ``barrier`` also waits for the store's commit. The executor calls ``barrier`` before every
component call that does I/O, and the gateway before a run's end becomes visible. A store that is
briefly unavailable (a locked file, Postgres restarting) is waited for, within ``STORE_WAIT_S``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import anyio

from ..core.journal import JournalEvent
from ..errors import StateStoreError
from ..logging import get_logger

__all__ = ["STORE_WAIT_S", "TreeJournal", "child_run_id"]

log = get_logger(__name__)

STORE_WAIT_S = 30.0
"""How long a barrier waits for an unavailable store before the step fails with its error."""

_CHILD_NAMESPACE = uuid.UUID("6f0e7c1e-2f4b-4a8e-9a57-3d0c5a1b9e42")


def child_run_id(parent_run_id: str, item: int, step_id: str, retry: int, index: int) -> str:
    """The id of the ``index``-th sub-run started by a step's call (``retry``: which onError try).

    Derived, not random, so a step that runs again after a crash finds its children again
    (finished ones are reused, unfinished ones resumed) instead of starting new ones.
    """
    return str(uuid.uuid5(_CHILD_NAMESPACE, f"{parent_run_id}/{item}/{step_id}/{retry}/{index}"))


class TreeJournal:
    """The journal writer shared by every run of one tree; see the module docstring."""

    __slots__ = ("store", "root_run_id", "next_seq", "_buffer", "recovered")

    def __init__(
        self, store: Any, root_run_id: str, *, next_seq: int = 1, recovered: list[JournalEvent] | None = None
    ) -> None:
        self.store = store
        self.root_run_id = root_run_id
        self.next_seq = next_seq
        self._buffer: list[JournalEvent] = []
        self.recovered = recovered or []
        """The tree's events read back at recovery (children replay theirs from here)."""

    def add(
        self,
        run_id: str,
        kind: str,
        item: int = -1,
        step: str | None = None,
        attempt: int = 0,
        data: Any = None,
    ) -> None:
        seq = self.next_seq
        self.next_seq = seq + 1
        self._buffer.append(
            JournalEvent(seq, self.root_run_id, run_id, kind, item, step, attempt, data, time.time())
        )

    def publish(self) -> None:
        """Queue the buffered events in the store (they commit with its next batch)."""
        if self._buffer:
            events, self._buffer = self._buffer, []
            self.store.append(events)

    async def barrier(self) -> None:
        """Publish and wait until everything is committed. Raises ``StateStoreError`` once the
        store has been unavailable for ``STORE_WAIT_S``."""
        self.publish()
        deadline = time.monotonic() + STORE_WAIT_S
        delay = 0.1
        while True:
            try:
                await self.store.flush()
                return
            except StateStoreError as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                log.warning("state store unavailable; waiting", error=exc.message, retry_in_s=round(delay, 2))
                await anyio.sleep(min(delay, left))
                delay = min(delay * 2, 2.0)
