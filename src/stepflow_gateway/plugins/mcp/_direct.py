"""Owns the direct ``tools/call`` path of stdio connections: our request id space, the pending
futures, progress routing, timeouts and ``notifications/cancelled``, plus the SDK's result checks
for the raw results it returns.

Why: on the SDK path each call builds pydantic request models, dumps them, crosses memory streams
and task wake-ups in the dispatcher, validates the whole response message and then the result.
Here a call is one ``orjson`` dump onto the transport's coalescing write stream and one future,
resolved from ``_stdio._ReadStream.feed`` as soon as the response line arrives.

Rules that keep the SDK unaware of us:

* Our ids are strings ``"sfg-<n>"``. The SDK mints integer ids (and correlates ``"7"`` as ``7``),
  so the two id spaces never meet; a response we do not recognise, a late one included, is handed
  to the SDK, which drops unknown ids as it always did.
* :meth:`DirectCalls.take` consumes only a well-formed response to one of *our pending* ids, or a
  ``notifications/progress`` for one of our tokens. Everything else (server requests,
  notifications, responses to SDK requests, malformed lines) goes to the SDK exactly as before.
* Behaviour mirrors the SDK dispatcher's for the plugin: the request id doubles as the
  ``progressToken``; the timeout clock starts after the write; a timed-out or cancelled request
  gets ``notifications/cancelled`` (reasons as the SDK words them); failures surface as the
  ``MCPError`` the SDK raises (``REQUEST_TIMEOUT``, ``CONNECTION_CLOSED``, or the peer's error).

Used only for handshake-era sessions (the modern era stamps ``_meta`` and may answer with
input-required rounds, which the SDK drives). Not traced with OpenTelemetry (the gateway installs
no tracer, so the SDK's spans are no-ops here too).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import anyio
import orjson
import structlog
from anyio.lowlevel import checkpoint_if_cancelled
from mcp.client.session import _clamp_inbound_ttl, _later_revision_fields  # the SDK's own checks
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT
from mcp_types.methods import validate_server_result
from pydantic import TypeAdapter
from pydantic_core import from_json

__all__ = ["ID_PREFIX", "MARKER", "DirectCalls", "NotEncodable", "ProgressFn", "check_call_result"]

log = structlog.get_logger(__name__)

ID_PREFIX = "sfg-"
"""Our request ids: a string the SDK's integer ids (and their string forms) can never equal."""
MARKER = b'"' + ID_PREFIX.encode()
"""Bytes every line that answers or reports on one of our requests contains (cheap pre-check)."""

ProgressFn = Callable[[float, float | None, str | None], None]
"""``(progress, total, message)``, called inline from the read path: must not block or raise."""


class NotEncodable(Exception):
    """orjson cannot encode the arguments (e.g. an integer beyond 64 bits); nothing was sent."""


class RawWriter(Protocol):
    """The transport's write side, as ``_stdio._WriteStream`` offers it."""

    async def send_raw(self, data: bytes) -> None: ...

    def post_raw(self, data: bytes) -> None: ...


class _TimedOut:
    """The outcome a timer puts in a request's future."""

    __slots__ = ()


_TIMED_OUT = _TimedOut()


class _Pending:
    __slots__ = ("future", "on_progress")

    def __init__(self, future: asyncio.Future[Any], on_progress: ProgressFn | None) -> None:
        self.future = future
        self.on_progress = on_progress


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_result(_TIMED_OUT)


def _closed_error() -> MCPError:
    # The SDK's wording for requests failed by a closed transport.
    return MCPError(code=CONNECTION_CLOSED, message="Connection closed")


class DirectCalls:
    """Pending direct ``tools/call`` requests of one stdio connection.

    Created by the transport (which feeds it every line carrying :data:`MARKER`); switched on by
    the connection once the handshake has settled the protocol version (:meth:`enable`).
    """

    __slots__ = ("_write", "_loop", "_pending", "_next", "_closed", "version", "adapter")

    def __init__(self, write: RawWriter, loop: asyncio.AbstractEventLoop) -> None:
        self._write = write
        self._loop = loop
        self._pending: dict[str, _Pending] = {}
        self._next = 0
        self._closed = False
        self.version = ""
        """The negotiated protocol version (set by :meth:`enable`)."""
        self.adapter: TypeAdapter[Any] | None = None
        """The session's ``tools/call`` result adapter (set by :meth:`enable`)."""

    def enable(self, version: str, adapter: TypeAdapter[Any]) -> DirectCalls:
        """Record what result checks need: the session's version and its result adapter."""
        self.version = version
        self.adapter = adapter
        return self

    @property
    def in_flight(self) -> int:
        """How many direct requests await their response."""
        return len(self._pending)

    # -- calls (caller's task) ------------------------------------------------------------------

    async def call(
        self,
        name: str,
        arguments: dict[str, Any],
        timeout_s: float | None,
        on_progress: ProgressFn | None,
        meta: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Send ``tools/call`` and return the raw ``result`` object of the response.

        ``meta`` entries go into the request's ``_meta`` next to the progress token (which wins,
        as on the SDK path).

        Raises:
            NotEncodable: orjson cannot encode ``arguments`` (nothing was sent; the caller may
                use the SDK path instead).
            MCPError: the server's error response; ``REQUEST_TIMEOUT`` after ``timeout_s``
                (the request is cancelled); ``CONNECTION_CLOSED`` if the connection is or goes
                down.
        """
        if self._closed:
            raise _closed_error()
        self._next += 1
        rid = f"{ID_PREFIX}{self._next}"
        try:
            data = (
                orjson.dumps(
                    {
                        "jsonrpc": "2.0",
                        "id": rid,
                        "method": "tools/call",
                        "params": {
                            "name": name,
                            "arguments": arguments,
                            "_meta": {**meta, "progressToken": rid} if meta else {"progressToken": rid},
                        },
                    }
                )
                + b"\n"
            )
        except orjson.JSONEncodeError as exc:
            raise NotEncodable(str(exc)) from exc
        # Like the SDK: a caller cancelled before the write never sends the request.
        await checkpoint_if_cancelled()
        loop = self._loop
        future: asyncio.Future[Any] = loop.create_future()
        self._pending[rid] = _Pending(future, on_progress)
        timer: asyncio.TimerHandle | None = None
        try:
            try:
                await self._write.send_raw(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                raise _closed_error() from None
            if timeout_s is not None:
                timer = loop.call_later(timeout_s, _expire, future)
            outcome = await future
        except asyncio.CancelledError:
            self._cancel(rid, "caller cancelled")
            raise
        finally:
            self._pending.pop(rid, None)
            if timer is not None:
                timer.cancel()
        if type(outcome) is dict:
            return outcome
        if outcome is _TIMED_OUT:
            self._cancel(rid, f"timed out after {timeout_s}s")
            raise MCPError(code=REQUEST_TIMEOUT, message="Request 'tools/call' timed out")
        raise outcome

    def _cancel(self, rid: str, reason: str) -> None:
        """Courtesy ``notifications/cancelled`` so the server stops working on ``rid``."""
        self._write.post_raw(
            orjson.dumps(
                {
                    "jsonrpc": "2.0",
                    "method": "notifications/cancelled",
                    "params": {"requestId": rid, "reason": reason},
                }
            )
            + b"\n"
        )

    # -- read path (event-loop callbacks) -------------------------------------------------------

    def take(self, line: bytes) -> bool:
        """Consume ``line`` if it answers one of our pending requests or reports its progress.

        Returns ``False`` (the line goes to the SDK) for anything else, including malformed
        responses: the SDK then reports them as it always did.
        """
        try:
            msg = from_json(line)  # the SDK's JSON parser: same numbers, same strings
        except ValueError:
            return False
        if type(msg) is not dict or msg.get("jsonrpc") != "2.0":
            return False
        if "method" in msg:
            if msg["method"] == "notifications/progress" and "id" not in msg:
                return self._progress(msg.get("params"))
            return False
        rid = msg.get("id")
        if type(rid) is not str:
            return False
        pending = self._pending.get(rid)
        if pending is None:
            return False
        if "result" in msg:
            outcome = msg["result"]
            if type(outcome) is not dict or "error" in msg:
                return False
        else:
            error = msg.get("error")
            if type(error) is not dict:
                return False
            code, message = error.get("code"), error.get("message")
            if type(code) is not int or type(message) is not str:
                return False
            outcome = MCPError(code=code, message=message, data=error.get("data"))
        del self._pending[rid]
        if not pending.future.done():
            pending.future.set_result(outcome)
        return True

    def _progress(self, params: Any) -> bool:
        # The SDK's matching rules: a str/int token and a numeric (non-bool) progress.
        if type(params) is not dict:
            return False
        token = params.get("progressToken")
        pending = self._pending.get(token) if type(token) is str else None
        if pending is None:
            return False
        progress = params.get("progress")
        if not isinstance(progress, int | float) or isinstance(progress, bool):
            return False
        callback = pending.on_progress
        if callback is not None:
            total = params.get("total")
            message = params.get("message")
            try:
                callback(
                    float(progress),
                    float(total) if isinstance(total, int | float) else None,
                    message if isinstance(message, str) else None,
                )
            except Exception:
                log.exception("mcp progress callback failed")
        return True

    def close(self) -> None:
        """The connection ended: fail every pending request as the SDK does (idempotent)."""
        self._closed = True
        pending, self._pending = self._pending, {}
        for entry in pending.values():
            if not entry.future.done():
                entry.future.set_result(_closed_error())


def check_call_result(raw: dict[str, Any], version: str, adapter: TypeAdapter[Any]) -> CallToolResult:
    """The SDK's checks of a ``tools/call`` result, in its order, on a raw result object.

    Raises:
        pydantic.ValidationError: the result does not conform to the negotiated version.
        RuntimeError: the result parsed as something other than a ``CallToolResult``.
    """
    _clamp_inbound_ttl(raw)
    try:
        validate_server_result("tools/call", version, raw)
    except KeyError:
        pass
    if not (foreign := _later_revision_fields("tools/call", version)).isdisjoint(raw):
        raw = {key: value for key, value in raw.items() if key not in foreign}
    result = adapter.validate_python(raw, by_name=False)
    if not isinstance(result, CallToolResult):
        raise RuntimeError(f"tools/call returned a {type(result).__name__}, not a CallToolResult")
    return result
