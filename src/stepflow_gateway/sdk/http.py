"""Owns serving a :class:`~.server.ComponentServer` over HTTP (protocol.md §7–8): ``POST /`` for
every JSON-RPC message, ``GET /health``, SSE responses for components that take a ``Context`` (their
callbacks travel in the stream; the runtime answers with POSTs), and the ``{"port": N}`` line a
self-launching worker prints once it is bound to 127.0.0.1.
"""

from __future__ import annotations

import json
import secrets
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio
import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..protocol.framing import dumps, loads
from ..protocol.jsonrpc import RpcError, error_message, request_message, response_message
from ..protocol.messages import Method
from ._handler import ComponentHandler
from .negotiate import accept_offer

__all__ = ["create_app", "serve_http"]

log = structlog.get_logger(__name__)

CALLBACK_TIMEOUT = 3600.0
"""Upper bound on one callback (a nested run with ``wait`` can legitimately take long)."""
_ACCEPTED = Response(b'""', status_code=202, media_type="application/json")


class _Waiter:
    __slots__ = ("event", "message")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.message: dict[str, Any] | None = None


class _State:
    def __init__(self, server: ComponentHandler, fast: bool) -> None:
        self.server = server
        self.fast = fast
        self.instance_id = secrets.token_hex(8)
        self.pending: dict[Any, _Waiter] = {}
        self.tg: anyio.abc.TaskGroup | None = None


class _SseExecute:
    """An ASGI response that runs one execute and streams its callbacks and final answer."""

    def __init__(self, state: _State, request_id: Any, params: Any) -> None:
        self.state = state
        self.request_id = request_id
        self.params = params

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        state = self.state
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache"),
                    (b"stepflow-instance-id", state.instance_id.encode()),
                ],
            }
        )
        lock = anyio.Lock()

        async def emit(message: Any) -> None:
            async with lock:
                await send(
                    {
                        "type": "http.response.body",
                        "body": b"data: " + dumps(message) + b"\n\n",
                        "more_body": True,
                    }
                )

        async def callback(method: str, params: Any) -> Any:
            callback_id = str(uuid.uuid4())
            waiter = _Waiter()
            state.pending[callback_id] = waiter
            try:
                await emit(request_message(callback_id, method, params))
                with anyio.fail_after(CALLBACK_TIMEOUT):
                    await waiter.event.wait()
            finally:
                state.pending.pop(callback_id, None)
            reply = waiter.message or {}
            if reply.get("error") is not None:
                raise RpcError.from_json(reply["error"])
            return reply.get("result")

        try:
            result = await state.server.execute(self.params, callback)
            final = response_message(self.request_id, result)
        except RpcError as exc:
            final = error_message(self.request_id, exc)
        await emit(final)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _json(message: Any, status: int = 200) -> Response:
    return Response(dumps(message), status_code=status, media_type="application/json")


def create_app(server: ComponentHandler, *, fast: bool = True) -> Starlette:
    """The ASGI app of one component server."""
    state = _State(server, fast)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            state.tg = tg
            yield
            tg.cancel_scope.cancel()

    async def health(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "healthy",
                "instanceId": state.instance_id,
                "timestamp": datetime.now(UTC).isoformat(),
                "service": "stepflow-gateway-sdk",
            }
        )

    async def rpc(request: Request) -> Any:
        body = await request.body()
        try:
            msg = loads(body)
        except ValueError:
            return _json(
                {"error": {"code": -32600, "message": "Failed to decode message: invalid JSON"}}, 400
            )
        if not isinstance(msg, dict):
            return _json(
                {"error": {"code": -32600, "message": "Failed to decode message: not an object"}}, 400
            )
        method, request_id = msg.get("method"), msg.get("id")
        if method is None:
            waiter = state.pending.get(request_id) if request_id is not None else None
            if waiter is not None:
                waiter.message = msg
                waiter.event.set()
            return _ACCEPTED
        if request_id is None:
            return _ACCEPTED  # notifications (initialized) need no answer
        params = msg.get("params") or {}
        if method == Method.INITIALIZE:
            result, peer = await accept_offer(
                params,
                state.fast and state.tg is not None,
                lambda p: lambda m, prm: server.dispatch(m, prm, p.request),
            )
            if peer is not None and state.tg is not None:
                state.tg.start_soon(peer.run)
            return _json(response_message(request_id, result))
        if (
            method == Method.COMPONENTS_EXECUTE
            and isinstance(params, dict)
            and server.wants_context(
                params.get("component")  # type: ignore[arg-type]
            )
        ):
            return _SseExecute(state, request_id, params)
        try:
            result = await server.dispatch(method, params, None)
            return _json(response_message(request_id, result))
        except RpcError as exc:
            return _json(error_message(request_id, exc))

    return Starlette(
        routes=[Route("/", rpc, methods=["POST"]), Route("/health", health, methods=["GET"])],
        lifespan=lifespan,
    )


async def serve_http(
    server: ComponentHandler, *, host: str = "127.0.0.1", port: int = 0, fast: bool = True
) -> None:
    """Bind, print ``{"port": N}`` on stdout, serve until stopped (SIGTERM/SIGINT)."""
    import uvicorn

    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto says
    # TCP, and without it Nagle + delayed ACK add ~40 ms to every response.
    sock = socket.socket(
        socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP
    )
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    sys.stdout.write(json.dumps({"port": bound}) + "\n")
    sys.stdout.flush()
    config = uvicorn.Config(
        create_app(server, fast=fast), log_level="warning", access_log=False, lifespan="on"
    )
    await uvicorn.Server(config).serve(sockets=[sock])
