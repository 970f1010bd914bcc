"""``create_app``: the Starlette app of ``stepflow-gateway serve``.

Routes: ``/api/v1/*`` (``api.py``), ``/mcp`` (``mcp_facade.py``), and ``/`` redirecting to the docs
page. Middleware, outermost first: CORS (``access-control-allow-origin: *`` as upstream), then the
API key check (``auth.py``). Errors go through the one table in ``errors.py``.

``POST /api/v1/runs`` and ``GET /api/v1/health`` are answered by the raw fast path in front of all
this (``fastpath.GatewayApp``), with the same behaviour.

The lifespan owns every resource, in this order (and unwinds in reverse):

1. ``async with gateway`` starts the state store and the plugins, once, shared by all runs;
2. runs interrupted by a previous process are marked ``cancelled``; the MCP tool catalogue loads
   (``catalogue.py``, no mcp SDK import);
3. one task group for background runs (``Gateway.task_group``); the server is ready (REST answers);
4. in that task group, the MCP façade starts in the background: the mcp SDK (~0.5 s of imports)
   is imported in a worker thread, then the session manager runs. ``/mcp`` requests meanwhile
   wait for it (bounded by ``MCP_READY_TIMEOUT_S``); flows stored meanwhile are in the catalogue
   and so are tools from the start. If the façade cannot start, ``/mcp`` answers 503 and the
   error is logged; REST is unaffected;
5. on shutdown, in-flight runs get what is left of the grace period, then are cancelled and
   recorded; then MCP sessions close, then plugins (their child processes) and the store.

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

__all__ = ["create_app"]

log = get_logger(__name__)

MCP_READY_TIMEOUT_S = 30.0
"""How long an ``/mcp`` request waits for the façade that is still starting before a 503."""
MCP_CLOSE_TIMEOUT_S = 5.0
"""How long shutdown waits for MCP sessions to close before the task group is cancelled."""
_GC_THRESHOLDS = (20_000, 20, 20)


class _McpEndpoint:
    """ASGI endpoint for ``/mcp``: forwards to the façade, waiting (bounded) while it starts."""

    def __init__(self, app: Starlette) -> None:
        self._app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        state = self._app.state
        facade: Any = getattr(state, "mcp", None)
        if facade is None:
            ready: anyio.Event | None = getattr(state, "mcp_ready", None)
            if ready is not None:
                with anyio.move_on_after(MCP_READY_TIMEOUT_S):
                    await ready.wait()
            facade = getattr(state, "mcp", None)
        if facade is None:
            response = Response("MCP is not ready", status_code=503)
            await response(scope, receive, send)
            return
        await facade(scope, receive, send)


async def _run_mcp(
    app: Starlette, rt: ServerRuntime, ready: anyio.Event, stop: anyio.Event, done: anyio.Event
) -> None:
    """Import the mcp SDK off the event loop, then serve ``/mcp`` until ``stop``; ``done`` when closed."""
    t0 = time.monotonic()
    try:
        module = await anyio.to_thread.run_sync(importlib.import_module, "stepflow_gateway.server.mcp_facade")
        facade = module.McpFacade(rt)
        async with facade.run():
            app.state.mcp = facade
            ready.set()
            # the SDK's modules live as long as the server too (see the lifespan)
            gc.freeze()
            log.info("MCP endpoint ready", startup_ms=round((time.monotonic() - t0) * 1000, 1))
            await stop.wait()
    except Exception as exc:
        log.error("the /mcp endpoint could not start", error=f"{type(exc).__name__}: {exc}", exc_info=exc)
    finally:
        app.state.mcp = None
        ready.set()
        done.set()


async def _root(request: Request) -> Response:
    return RedirectResponse("/api/v1/docs")


def create_app(
    gateway: Gateway | str | os.PathLike[str] | None = None,
    settings: ServerSettings | None = None,
) -> Starlette:
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
            await rt.recover_interrupted()
            rt.catalogue = await FlowCatalogue.load(gw.store)
            async with anyio.create_task_group() as tg:
                gw.task_group = GuardedTaskGroup(tg, gw)
                app.state.runtime = rt
                ready, stop, mcp_done = anyio.Event(), anyio.Event(), anyio.Event()
                app.state.mcp_ready = ready
                tg.start_soon(_run_mcp, app, rt, ready, stop, mcp_done)
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
                    app.state.mcp = None
                    stop.set()
                    with anyio.move_on_after(MCP_CLOSE_TIMEOUT_S, shield=True):
                        await mcp_done.wait()
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
    app.state.mcp = None
    return app
