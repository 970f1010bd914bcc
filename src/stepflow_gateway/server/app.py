"""``create_app``: the Starlette app of ``stepflow-gateway serve``.

Routes: ``/api/v1/*`` (``api.py``), ``/mcp`` (``mcp_facade.py``), and ``/`` redirecting to the docs
page. Middleware, outermost first: CORS (``access-control-allow-origin: *`` as upstream), then the
API key check (``auth.py``). Errors go through the one table in ``errors.py``.

The lifespan owns every resource, in this order (and unwinds in reverse):

1. ``async with gateway`` starts the state store and the plugins, once, shared by all runs;
2. runs interrupted by a previous process are marked ``cancelled``; the MCP tool catalogue loads;
3. one task group for background runs (``Gateway.task_group``) and the MCP session manager;
4. on shutdown, in-flight runs get what is left of the grace period, then are cancelled and
   recorded; then MCP sessions close, then plugins (their child processes) and the store.

No module-level object holds state: two apps in one process are independent.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import structlog
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route

from ..gateway import Gateway
from .api import routes as api_routes
from .auth import ApiKeyMiddleware
from .errors import EXCEPTION_HANDLERS
from .mcp_facade import FlowCatalogue, McpFacade
from .runtime import GuardedTaskGroup, ServerRuntime, ServerSettings

__all__ = ["create_app"]

log = structlog.get_logger(__name__)


class _McpEndpoint:
    """ASGI endpoint for ``/mcp`` that forwards to the façade once the lifespan has created it."""

    def __init__(self, app: Starlette) -> None:
        self._app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        facade: McpFacade | None = getattr(self._app.state, "mcp", None)
        if facade is None:
            response = Response("MCP is not ready", status_code=503)
            await response(scope, receive, send)
            return
        await facade(scope, receive, send)


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
            facade = McpFacade(rt)
            async with anyio.create_task_group() as tg:
                gw.task_group = GuardedTaskGroup(tg, gw)
                async with facade.run():
                    app.state.runtime = rt
                    app.state.mcp = facade
                    # Everything allocated so far lives as long as the server: move it out of the
                    # collector's reach, and collect young objects less often. Under load the
                    # default thresholds gave 150-400 ms full-collection pauses (benchmarks/).
                    gc.freeze()
                    gc.set_threshold(20_000, 20, 20)
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
                gw.task_group = None
                tg.cancel_scope.cancel()
        log.info("server stopped")

    app = Starlette(
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
    app.state.mcp = None
    return app
