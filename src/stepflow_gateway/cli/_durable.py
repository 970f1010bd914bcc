"""What the commands on journaled runs share: the ``--state`` store and running under Ctrl-C.

``--state sqlite:FILE`` names the SQLite file that journals runs (a bare ``FILE`` is read as
``sqlite:FILE``). ``run`` creates it when missing (``?mode=rwc`` unless the URL gives a mode);
``resume`` and ``runs`` need it to exist. While a journaled run goes, the first SIGINT/SIGTERM
*interrupts* it: the steps in flight stop, nothing is recorded as cancelled, and the run stays
``running`` in the file for ``resume``. A second signal exits at once (like a crash: the journal
has everything up to the last barrier).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio

from .render import UsageError, err

if TYPE_CHECKING:
    from ..gateway import Gateway, RunHandle
    from ..state.sqlite import SqliteStore

STATE_HELP = "SQLite file that journals runs: sqlite:FILE (a crashed or interrupted run resumes from it)."


def open_state(url: str, *, create: bool) -> SqliteStore:
    """The (unopened) store ``--state url`` names. Raises ``UsageError`` for a bad URL, an in-memory
    database, or (without ``create``) a file that does not exist."""
    from ..errors import StateStoreError
    from ..state.sqlite import SqliteStore, parse_database_url

    if not url.startswith("sqlite:"):
        url = f"sqlite:{url}"
    if create and "mode=" not in url.partition("?")[2]:
        url += ("&" if "?" in url else "?") + "mode=rwc"
    try:
        target = parse_database_url(url)
    except StateStoreError as exc:
        raise UsageError(f"--state: {exc.message}") from None
    if target.path is None:
        raise UsageError(f"--state {url}: name a file (an in-memory database ends with the command)")
    if not create and not target.path.is_file():
        raise UsageError(f"--state {url}: there is no file '{target.path.absolute()}'")
    return SqliteStore(target, url=url)


def state_path(store: Any) -> str:
    return str(store.describe().get("path"))


async def drive(
    gw: Gateway, start: Callable[[], Awaitable[RunHandle | None]]
) -> tuple[RunHandle | None, bool]:
    """Start a run with ``start`` (``Gateway.submit``/``resume_run`` with ``wait=False``: it goes to a
    task group of ours) and wait for its end. Returns the handle (``None`` if ``start`` gave none)
    and whether a signal interrupted the run, which then stays unfinished in the journal."""
    interrupted = False

    def interrupt() -> None:
        gw.stopping = True  # runs stopped from now on are left for recovery, not cancelled
        for handle in list(gw.live.values()):
            handle.interrupt()

    async def watch() -> None:
        nonlocal interrupted
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for sig in signals:
                if interrupted:
                    err("stepflow-gateway: stopping now")
                    os._exit(128 + sig)
                interrupted = True
                err("stepflow-gateway: interrupted; stopping the run (a second signal exits at once)")
                interrupt()

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        gw.task_group = tg
        try:
            handle = await start()
        finally:
            gw.task_group = None  # nested runs keep running in their parent's task, as without --state
        if handle is not None:
            if interrupted:  # the signal came before the run was live
                interrupt()
            await handle.done.wait()
        tg.cancel_scope.cancel()
    return handle, interrupted and handle is not None and handle.record.status == "running"
