"""What the server's handlers share: settings, the started ``Gateway``, and starting/reading runs.

``ServerRuntime`` lives on ``app.state.runtime`` for the app's lifetime (created in the lifespan,
``app.py``). REST (``api.py``), the event stream (``events.py``) and the MCP façade
(``mcp_facade.py``) all start runs through ``start_run`` so every run is recorded the same way,
and read runs through ``find_run``, which prefers the live handle (a run still in progress in this
process) over the state store.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from .. import __version__
from ..core.journal import ITEM_FINISHED, RUN_CREATED, RUN_FINISHED
from ..core.result import FlowResult
from ..engine.inputs import validate_variables
from ..engine.journal import TreeJournal
from ..errors import GatewayError, RunNotFound
from ..flow.model import Flow
from ..gateway import Gateway, RunHandle, now_iso
from ..ids import new_run_id
from ..logging import get_logger
from ..state.base import ItemRecord, RunRecord
from .feed import JournalFeed
from .responses import item_status

__all__ = ["GuardedTaskGroup", "ServerRuntime", "ServerSettings"]

log = get_logger(__name__)

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
"""16 MiB: far above any flow or batch we have seen, small enough that one request cannot exhaust memory."""
DEFAULT_SHUTDOWN_GRACE_S = 30.0
"""How long in-flight runs may continue after SIGTERM before they are stopped (``serve --drain-timeout``)."""
DEFAULT_LIST_LIMIT = 1000
"""``GET /runs`` without ``limit`` returns at most this many runs, so a listing stays bounded."""


def _env_bool(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(slots=True)
class ServerSettings:
    """Server knobs outside the config file (config.md §7: ``STEPFLOW_GATEWAY_*`` variables)."""

    host: str = "127.0.0.1"
    port: int = 7840
    api_key: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    shutdown_grace_s: float = DEFAULT_SHUTDOWN_GRACE_S
    mcp_components: bool = False
    """Also expose every reachable registry component as an MCP tool."""
    version: str = __version__

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> ServerSettings:
        env = os.environ if environ is None else environ
        s = cls(**overrides)
        if s.api_key is None:
            s.api_key = env.get("STEPFLOW_GATEWAY_API_KEY") or None
        if "STEPFLOW_GATEWAY_MAX_BODY_BYTES" in env:
            s.max_body_bytes = int(env["STEPFLOW_GATEWAY_MAX_BODY_BYTES"])
        if "shutdown_grace_s" not in overrides and "STEPFLOW_GATEWAY_SHUTDOWN_GRACE" in env:
            s.shutdown_grace_s = float(env["STEPFLOW_GATEWAY_SHUTDOWN_GRACE"])
        if "mcp_components" not in overrides:
            s.mcp_components = _env_bool(env.get("STEPFLOW_GATEWAY_MCP_COMPONENTS"))
        return s


class GuardedTaskGroup:
    """The app task group as ``Gateway.task_group``: a background run that raises never takes the server down.

    The error is logged here; the run itself was already recorded and its waiters released by
    ``Gateway._execute``, so a ``POST /runs`` waiting on it answers instead of hanging.
    """

    def __init__(self, tg: Any) -> None:
        self._tg = tg

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any, name: Any = None) -> None:
        self._tg.start_soon(self._guard, fn, args, name=name)

    async def _guard(self, fn: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        try:
            await fn(*args)
        except Exception as exc:
            log.error("background run failed", error=f"{type(exc).__name__}: {exc}", exc_info=exc)


@dataclass(slots=True)
class RunView:
    """A run as the handlers read it: its record, plus the live handle while it runs here."""

    record: RunRecord
    handle: RunHandle | None = None

    def item_statuses(self) -> list[str] | None:
        if self.handle is None:
            return None
        h = self.handle
        if h.results is not None:
            return [i.status for i in h.record.items] or [item_status(r) for r in h.results]
        return [item_status(item.result) for item in h.execution.items]


@dataclass(slots=True)
class ServerRuntime:
    gw: Gateway
    settings: ServerSettings
    catalogue: Any = None
    """``mcp_facade.FlowCatalogue``: the stored flows that are MCP tools."""
    feed: JournalFeed = field(default_factory=JournalFeed)
    """Committed journal events for the event streams (the store's ``on_commit``; see ``app.py``)."""
    started_at: float = field(default_factory=time.time)
    draining: anyio.Event = field(default_factory=anyio.Event)
    no_grace: bool = False
    """A second stop signal came: ``drain`` gives in-flight runs no more time."""
    _grace_scope: anyio.CancelScope | None = None

    async def start_run(
        self,
        flow: Flow,
        inputs: list[Any],
        *,
        variables: dict[str, Any] | None = None,
        overrides: Any = None,
        max_concurrency: int | None = None,
        listener: Callable[[Any], None] | None = None,
        wait: bool = False,
    ) -> RunHandle | RunRecord:
        """Start a run and return its handle, or the finished record of a rejected run.

        Without ``wait`` the run goes to the background task group; with it, it runs in the
        caller's task (no task to spawn) and has finished on return. A caller cancelled while
        waiting (shutdown past the grace period) cancels the run, which is recorded as cancelled.

        Invalid variables fail every item with code 400 without running anything
        (rest-api.md §2.5); the run is still recorded so it can be read back.
        """
        if self.gw.stopping:
            raise GatewayError("The server is shutting down; it does not start new runs", code=503)
        problem = validate_variables(flow.variables_schema, variables) if variables else None
        if problem is not None:
            return await self._record_rejected(
                flow, inputs, FlowResult.failed(400, problem), variables, overrides
            )
        return await self.gw.submit(
            flow,
            inputs,
            variables=variables,
            overrides=overrides,
            max_concurrency=max_concurrency,
            wait=wait,
            listener=listener,
        )

    async def _record_rejected(
        self, flow: Flow, inputs: list[Any], result: FlowResult, variables: Any, overrides: Any
    ) -> RunRecord:
        run_id = new_run_id()
        now = now_iso()
        rec = RunRecord(
            run_id=run_id,
            flow_id=flow.flow_id,
            flow_name=flow.name,
            status="running",
            created_at=now,
            inputs=list(inputs),
            root_run_id=run_id,
            overrides=overrides,
            variables=variables,
        )
        await self.gw.store_flow(flow)
        await self.gw.store.create_run(rec)
        items = [ItemRecord(i, "failed", result, now) for i in range(len(inputs))]
        journal = TreeJournal(self.gw.store, run_id) if self.gw.journaling else None
        if journal is not None:  # journaled like any run, so its event stream has ids too
            data = {"flowId": flow.flow_id, "parentRunId": None, "itemCount": len(inputs)}
            journal.add(run_id, RUN_CREATED, data=data)
            for i in range(len(inputs)):
                journal.add(run_id, ITEM_FINISHED, i, data=result)
            journal.add(run_id, RUN_FINISHED, data={"status": "failed"})
            journal.publish()
        await self.gw.store.complete_run(run_id, "failed", now, items, [])
        if journal is not None:
            await journal.barrier()
        rec.status, rec.completed_at, rec.items = "failed", now, items
        return rec

    async def find_run(self, run_id: str) -> RunView:
        """The live run or the stored one. Raises ``RunNotFound`` (404)."""
        handle = self.gw.live.get(run_id)
        if handle is not None:
            return RunView(handle.record, handle)
        rec = await self.gw.store.get_run(run_id)
        if rec is None:
            raise RunNotFound(f"Execution '{run_id}' not found")
        return RunView(rec)

    async def recover_interrupted(self, limit: int | None = None) -> int:
        """Resume the runs a previous process left unfinished (crash, kill -9, stop); see
        ``Gateway.recover``. Returns how many were resumed."""
        return len(await self.gw.recover(limit=limit))

    async def recover_the_rest(self, batch: int, pause_s: float) -> None:
        """Past ``maxStartupRecovery``: resume the remaining interrupted runs, ``batch`` at a time,
        until none is left (runs already live are skipped) or the server stops."""
        while not self.gw.stopping:
            await anyio.sleep(pause_s)
            live = sum(1 for h in self.gw.live.values() if h.record.parent_run_id is None)
            if not await self.gw.recover(limit=batch + live):
                return

    def end_grace(self) -> None:
        """Stop waiting for in-flight runs now (a second SIGTERM/SIGINT); ``drain`` then stops them."""
        self.no_grace = True
        if self._grace_scope is not None:
            self._grace_scope.cancel()

    async def drain(self, grace_s: float) -> None:
        """Let live runs finish within ``grace_s``; then stop the rest (interrupted, to resume at the
        next start, with a durable store; cancelled otherwise) and wait (bounded) for them."""
        self.draining.set()
        live = list(self.gw.live.values())
        if not live:
            return
        grace_s = 0.0 if self.no_grace else grace_s
        log.info("waiting for in-flight runs", count=len(live), grace_s=grace_s)
        with anyio.move_on_after(grace_s) as scope:
            self._grace_scope = scope
            for h in live:
                await h.done.wait()
        self._grace_scope = None
        remaining = [h for h in self.gw.live.values() if not h.done.is_set()]
        if remaining:
            self.gw.stopping = True
            if self.gw.resumable:
                log.warning("runs still in flight at shutdown resume at the next start", count=len(remaining))
            else:
                log.warning("cancelling runs still in flight at shutdown", count=len(remaining))
            for h in remaining:
                self.gw.stop_run(h)
            with anyio.move_on_after(5):
                for h in remaining:
                    await h.done.wait()
