"""The raw ASGI fast path of the two hottest requests: ``POST /api/v1/runs`` and ``GET /api/v1/health``.

``GatewayApp`` (a ``Starlette`` subclass, so ``app.state``, ``app.router`` and the lifespan are
unchanged) answers these two requests itself, skipping Starlette's middleware stack, routing and
``Request``/``JSONResponse`` objects (a third of the server's CPU per noop run), and hands every
other request to Starlette untouched.

Behaviour is the same as the Starlette route, by construction:

* Anything out of the ordinary goes to the Starlette stack with the body *replayed* (the bytes
  already read, then the rest of the original ``receive``): a key that does not check out (→ 401
  from ``ApiKeyMiddleware``), a body that is not JSON or not of the plain shape
  (``request_bodies.plain_create_run``, the full handler's own first tier), a body over the size
  limit (→ 413), an unknown flow (→ 404), ``/health?error=…``. So every error message and status
  comes from the one code path in ``api.py``/``errors.py``.
* Exceptions raised while starting or waiting for the run go through ``errors.EXCEPTION_HANDLERS``.
* The CORS middleware's headers are reproduced: ``vary: Origin`` always, and
  ``access-control-allow-origin: *`` plus ``access-control-expose-headers`` when ``Origin`` is sent.
* Answers are compact UTF-8 JSON (orjson; the stdlib encoder for what orjson refuses).
"""

from __future__ import annotations

import json
from typing import Any, TypeAlias

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from ..gateway import now_iso
from ..logging import get_logger
from .api import run_response
from .auth import key_allowed
from .errors import EXCEPTION_HANDLERS
from .request_bodies import plain_create_run

__all__ = ["FastAnswer", "GatewayApp", "answer_headers", "encode_json"]

log = get_logger(__name__)

_RUNS = "/api/v1/runs"
_HEALTH = "/api/v1/health"

FastAnswer: TypeAlias = tuple[int, bytes, Any]
"""``(status, JSON body, extra headers)``."""

_JSON = (b"content-type", b"application/json")
_VARY = (b"vary", b"Origin")
_CORS = ((b"access-control-allow-origin", b"*"), (b"access-control-expose-headers", b"mcp-session-id"))


def encode_json(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except (TypeError, orjson.JSONEncodeError):  # integers past 64 bits, non-string keys
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


def _replay(chunks: list[bytes], more: bool, receive: Receive) -> Receive:
    """A ``receive`` that first hands back what the fast path already read."""
    pending = [{"type": "http.request", "body": c, "more_body": True} for c in chunks]
    if pending:
        pending[-1]["more_body"] = more
    else:
        pending.append({"type": "http.request", "body": b"", "more_body": more})

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


class GatewayApp(Starlette):
    """Starlette with the fast path in front (see the module docstring)."""

    fast_key: bytes | None = None
    fast_body_limit: int = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path == _RUNS:
                if self.is_fast_run(scope):
                    await self._create_run(scope, receive, send)
                    return
            elif path == _HEALTH and scope["method"] == "GET" and not scope["query_string"]:
                rt = getattr(self.state, "runtime", None)
                if rt is not None:
                    body = {"status": "healthy", "timestamp": now_iso(), "version": rt.settings.version}
                    await self._answer(scope, send, 200, encode_json(body))
                    return
        await super().__call__(scope, receive, send)

    def is_fast_run(self, scope: Scope) -> bool:
        """A ``POST /api/v1/runs`` (path already checked) the fast path may take: right method and key."""
        return scope["method"] == "POST" and (self.fast_key is None or key_allowed(scope, self.fast_key))

    @staticmethod
    async def _answer(scope: Scope, send: Send, status: int, body: bytes, extra: Any = ()) -> None:
        headers = answer_headers(scope, body, extra)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def full_stack(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The request through Starlette (middleware, routing, handlers), bypassing the fast path."""
        await super().__call__(scope, receive, send)

    async def _create_run(self, scope: Scope, receive: Receive, send: Send) -> None:
        got = await self.fast_create_run(scope, receive)
        if isinstance(got, tuple):
            await self._answer(scope, send, *got)
        else:
            await super().__call__(scope, got, send)

    async def fast_create_run(self, scope: Scope, receive: Receive) -> FastAnswer | Receive:
        """``POST /api/v1/runs`` of the plain shape: ``(status, body, extra headers)`` to answer with,
        or, for anything else, a ``receive`` replaying the body for the full stack to answer.

        Used by the ASGI fast path above and by the HTTP protocol (``protocol.py``)."""
        rt = getattr(self.state, "runtime", None)
        if rt is None:
            return receive
        limit = self.fast_body_limit
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > limit:
                    return receive
                break
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # disconnected: let the full stack see it
                return _replay(chunks, False, receive)
            chunk = message.get("body", b"")
            more = message.get("more_body", False)
            if chunk:
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    return _replay(chunks, more, receive)
        raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        run = plain_create_run(body)
        if run is None:  # the full handler parses it (and words any error)
            return _replay([raw], False, receive)
        try:
            flow = await rt.gw.get_flow(run.flow_id)
            if flow is None:  # the full handler words the 404
                return _replay([raw], False, receive)
            out = await run_response(
                rt,
                flow,
                run.input,
                run.wait,
                variables=run.variables,
                overrides=run.overrides,
                max_concurrency=run.max_concurrency,
                timeout_secs=run.timeout_secs,
            )
            return 200, encode_json(out), ()
        except Exception as exc:
            return await self._error(scope, receive, exc)

    async def _error(self, scope: Scope, receive: Receive, exc: Exception) -> FastAnswer:
        """Answer an exception exactly as Starlette's exception middleware would, through the one table."""
        handler = None
        for cls in type(exc).__mro__:
            handler = EXCEPTION_HANDLERS.get(cls)
            if handler is not None:
                break
        assert handler is not None  # ``Exception`` is in the table
        scope.setdefault("app", self)
        response = await handler(Request(scope, receive), exc)
        extra = [(k, v) for k, v in response.raw_headers if k not in (b"content-length", b"content-type")]
        return response.status_code, bytes(response.body), extra


def answer_headers(scope: Scope, body: bytes, extra: Any = ()) -> list[tuple[bytes, bytes]]:
    """The headers of a fast-path answer: length, JSON, ``extra``, and the CORS middleware's."""
    headers = [(b"content-length", str(len(body)).encode()), _JSON, *extra]
    for name, _value in scope["headers"]:
        if name == b"origin":
            headers.extend(_CORS)
            break
    headers.append(_VARY)
    return headers
