"""``create_app``: the Starlette app of ``stepflow-gateway serve``.

Routes: ``/api/v1/*`` (``api.py``), ``/mcp`` (``mcp_facade.py``), and ``/`` redirecting to the docs
page. Middleware, outermost first: CORS (``access-control-allow-origin: *`` as upstream), then the
API key check (``auth.py``). Errors go through the one table in ``errors.py``.

``POST /api/v1/runs`` and ``GET /api/v1/health`` are answered by the raw fast path in front of all
this (``fastpath.GatewayApp``), with the same behaviour. Under ``serve`` (uvicorn's httptools
protocol) its answers are written in one write (``_uvicorn_compat.py``).

The lifespan owns every resource, in this order (and unwinds in reverse):

1. ``async with gateway`` starts the state store and the plugins, once, shared by all runs;
2. the store's ``on_commit`` is set to the event streams' fan-out (``feed.py``), once; runs
   interrupted by a previous process resume from their journal; the MCP tool catalogue loads
   (``catalogue.py``, no mcp SDK import);
3. one task group for background runs (``Gateway.task_group``); the server is ready (REST answers);
4. the MCP façade is *not* started yet: the mcp SDK (and pydantic under it) is ~0.5 s of imports,
   which a server that is only asked for REST never pays. The first ``/mcp`` request starts it
   (``McpLauncher``) in that task group: the SDK is imported in a worker thread, then the session
   manager runs. Requests arriving meanwhile (the first included) wait for it, bounded by
   ``MCP_READY_TIMEOUT_S``; concurrent first requests start it once. Flows stored before it
   started are tools all the same (the catalogue is loaded independently). If the façade cannot
   start, the error is logged and ``/mcp`` answers 503 naming it; the next request after
   ``MCP_RETRY_AFTER_S`` tries again (a missing package keeps failing the same way, a passing
   problem heals). REST is unaffected either way;
5. on shutdown, in-flight runs get what is left of the grace period, then are cancelled and
   recorded; then MCP sessions close (if the façade was ever started) and open event streams end,
   then plugins (their child processes) and the store.

No module-level object holds state: two apps in one process are independent.
"""

from __future__ import annotations

import gc
import importlib
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route

from ..gateway import Gateway
from ..logging import get_logger
from .api import routes as api_routes
from .auth import ApiKeyMiddleware
from .catalogue import FlowCatalogue
from .errors import EXCEPTION_HANDLERS
from .fastpath import GatewayApp
from .runtime import GuardedTaskGroup, ServerRuntime, ServerSettings

__all__ = ["McpLauncher", "create_app"]

log = get_logger(__name__)

MCP_READY_TIMEOUT_S = 30.0
"""How long an ``/mcp`` request waits for the façade that is still starting before a 503."""
MCP_CLOSE_TIMEOUT_S = 5.0
"""How long shutdown waits for MCP sessions to close before the task group is cancelled."""
MCP_RETRY_AFTER_S = 5.0
"""After a failed façade start, ``/mcp`` answers 503 at once for this long, then a request retries."""
_GC_THRESHOLDS = (20_000, 20, 20)


class McpLauncher:
    """Starts the MCP façade on first use, in the app task group, and stops it on shutdown.

    ``ensure_started`` has no ``await`` between its check and its start, so concurrent first
    requests start the façade once; all of them wait for the one ``ready`` event.
    """

    __slots__ = ("_rt", "_tg", "facade", "error", "_ready", "_stop", "_done", "_failed_at", "_closed")

    def __init__(self, rt: ServerRuntime, tg: Any) -> None:
        self._rt = rt
        self._tg = tg
        self.facade: Any = None
        """The running ``McpFacade``, or ``None`` (not started, starting, failed, or stopped)."""
        self.error: str | None = None
        """Why the last start failed."""
        self._ready: anyio.Event | None = None
        self._stop = anyio.Event()
        self._done: anyio.Event | None = None
        self._failed_at = 0.0
        self._closed = False

    def ensure_started(self) -> anyio.Event | None:
        """Start the façade unless it runs or is starting; the event set once it is up or has failed.

        ``None`` when no start is under way: the server is stopping, or the last attempt failed less
        than ``MCP_RETRY_AFTER_S`` ago."""
        if self._ready is not None or self._closed:
            return self._ready
        if self.error is not None and time.monotonic() - self._failed_at < MCP_RETRY_AFTER_S:
            return None
        self._ready, self._done = anyio.Event(), anyio.Event()
        self._tg.start_soon(self._run, self._ready, self._done, name="mcp facade")
        return self._ready

    async def _run(self, ready: anyio.Event, done: anyio.Event) -> None:
        """Import the mcp SDK off the event loop, then serve ``/mcp`` until stopped."""
        t0 = time.monotonic()
        try:
            module = await anyio.to_thread.run_sync(
                importlib.import_module, "stepflow_gateway.server.mcp_facade"
            )
            facade = module.McpFacade(self._rt)
            async with facade.run():
                self.facade, self.error = facade, None
                ready.set()
                # the SDK's modules live as long as the server: keep them out of the collector's way
                gc.freeze()
                log.info("MCP endpoint ready", startup_ms=round((time.monotonic() - t0) * 1000, 1))
                await self._stop.wait()
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self._failed_at = time.monotonic()
            log.error("the /mcp endpoint could not start", error=self.error, exc_info=exc)
        finally:
            self.facade = None
            self._ready = None
            ready.set()
            done.set()

    async def aclose(self) -> None:
        """Stop the façade if it was started (sessions closed, bounded); a no-op if it never was."""
        self._closed = True
        self.facade = None
        self._stop.set()
        if self._done is not None:
            with anyio.move_on_after(MCP_CLOSE_TIMEOUT_S, shield=True):
                await self._done.wait()


class _McpEndpoint:
    """ASGI endpoint for ``/mcp``: starts the façade on first use and forwards to it (bounded wait)."""

    def __init__(self, app: Starlette) -> None:
        self._app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        launcher: McpLauncher | None = getattr(self._app.state, "mcp_launcher", None)
        facade = launcher.facade if launcher is not None else None
        if facade is None and launcher is not None:
            ready = launcher.ensure_started()
            if ready is not None:
                with anyio.move_on_after(MCP_READY_TIMEOUT_S):
                    await ready.wait()
            facade = launcher.facade
        if facade is None:
            reason = launcher.error if launcher is not None else None
            text = f"MCP is not available: {reason}" if reason else "MCP is not ready"
            response = Response(text, status_code=503)
            await response(scope, receive, send)
            return
        await facade(scope, receive, send)


async def _root(request: Request) -> Response:
    return RedirectResponse("/api/v1/docs")


def create_app(
    gateway: Gateway | str | os.PathLike[str] | None = None,
    settings: ServerSettings | None = None,
) -> GatewayApp:
    """Build the app. ``gateway`` is an unstarted ``Gateway`` or a config path (``None``: discovery).

    Nothing starts until the ASGI lifespan runs (uvicorn does that).
    """
    settings = settings or ServerSettings.from_env()
    if gateway is None or isinstance(gateway, (str, Path, os.PathLike)):
        gateway = Gateway.from_config(gateway, mode="serve")
    gw = gateway

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        t0 = time.monotonic()
        async with gw:
            rt = ServerRuntime(gw, settings)
            # the one listener of the store's commits: the event streams' fan-out (events.py)
            gw.store.on_commit = rt.feed.dispatch
            rt.catalogue = await FlowCatalogue.load(gw.store)
            async with anyio.create_task_group() as tg:
                gw.task_group = GuardedTaskGroup(tg)
                recovery = getattr(gw.config, "recovery", None)
                if recovery is None or recovery.enabled:
                    limit = None if recovery is None else recovery.max_startup_recovery
                    if await rt.recover_interrupted(limit) == limit and limit:
                        # more may be waiting: the rest resume in the background, a batch at a time
                        interval = recovery.check_interval_secs if recovery is not None else 30.0
                        tg.start_soon(rt.recover_the_rest, limit, min(interval, 1.0))
                app.state.runtime = rt
                launcher = app.state.mcp_launcher = McpLauncher(rt, tg)
                # Everything allocated so far lives as long as the server: move it out of the
                # collector's reach, and collect young objects less often. Under load the
                # default thresholds gave 150-400 ms full-collection pauses (benchmarks/).
                gc.freeze()
                gc.set_threshold(*_GC_THRESHOLDS)
                log.info(
                    "server ready",
                    store=gw.store.describe(),
                    plugins=list(gw.config.plugins),
                    startup_ms=round((time.monotonic() - t0) * 1000, 1),
                )
                try:
                    yield
                finally:
                    with anyio.CancelScope(shield=True):
                        elapsed = time.monotonic() - getattr(
                            app.state, "shutdown_requested_at", time.monotonic()
                        )
                        await rt.drain(max(0.0, settings.shutdown_grace_s - elapsed))
                    app.state.mcp_launcher = None
                    await launcher.aclose()
                    rt.feed.close_all()  # event streams still open end now
                gw.task_group = None
                tg.cancel_scope.cancel()
        log.info("server stopped")

    app = GatewayApp(
        routes=[
            Mount("/api/v1", routes=api_routes()),
            Route("/", _root),
        ],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=["*"],
                allow_methods=["*"],
                allow_headers=["*"],
                expose_headers=["mcp-session-id"],
            ),
            Middleware(ApiKeyMiddleware, api_key=settings.api_key),
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=lifespan,
    )
    # /mcp and /mcp/ both reach the façade, without Starlette's trailing-slash redirect
    endpoint = _McpEndpoint(app)
    app.router.routes.append(Route("/mcp", endpoint))
    app.router.routes.append(Route("/mcp/", endpoint))
    app.state.settings = settings
    app.fast_key = settings.api_key.encode("utf-8") if settings.api_key else None
    app.fast_body_limit = settings.max_body_bytes
    app.state.mcp_launcher = None
    return app
