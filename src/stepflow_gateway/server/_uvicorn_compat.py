"""The one place that knows uvicorn's internals: a fast-path answer written in one write.

``send_answer(send, status, headers, body)`` is, by contract, ``await send(http.response.start)``
then ``await send(http.response.body)``. Under uvicorn's httptools protocol (what ``serve`` runs)
it writes the same bytes itself, in one ``transport.write``, and completes the request/response
cycle the way uvicorn's own ``send`` does. That skips uvicorn's per-header validation of our
constant headers, the two message dicts, and the second ``send()`` system call: 7-14% of the
server's CPU per noop-1 REST run. The request itself is uvicorn's as usual (its protocol, its
ASGI task, ``receive``); only the answer's bytes are written here. uvicorn has no public hook for
that; what is used of it, all here and nowhere else in the package:

* ``uvicorn.protocols.http.httptools_impl.RequestResponseCycle``: the ``send`` an ASGI app gets is
  a bound method of one (``send.__self__``), with the attributes ``transport``, ``flow``
  (``write_paused``, ``drain()``), ``disconnected``, ``default_headers``, ``keep_alive``,
  ``access_log``, ``response_started``, ``response_complete``, ``message_event`` and
  ``on_response`` (the protocol's callback that starts the next pipelined request or arms the
  keep-alive timer);
* ``uvicorn.protocols.http.httptools_impl.STATUS_LINE``: status code → ``b"HTTP/1.1 200 OK\\r\\n"``.

The bytes are uvicorn's: status line, ``default_headers`` (``date``; ``server`` unless
``server_header=False``), our headers, ``connection: close`` when the connection is not kept
alive, the body; then the transport is closed if not kept alive. Headers must be lower-case and
valid (ours are constants) and the answer must have a body framed by ``content-length``: this is
for the fast path's JSON answers only, never for ``HEAD``, 1xx, 204 or 304.

Whenever this does not apply the two ASGI messages are sent: another server or protocol (h11),
uvicorn's access log on (it logs from ``send``), or a uvicorn whose cycle no longer looks as
above (checked once, at import; a warning is logged). Nothing else changes then, the answer is
the same, in two writes. ``tests/integration/server/test_uvicorn_compat.py`` pins all of this
against the installed uvicorn, byte for byte against uvicorn's own ``send``, with both paths.
"""

from __future__ import annotations

import inspect
from typing import Any

from starlette.types import Send

from ..logging import get_logger

__all__ = ["DIRECT", "send_answer"]

log = get_logger(__name__)

_CYCLE_PARAMS = frozenset(
    (
        "transport",
        "flow",
        "default_headers",
        "message_event",
        "keep_alive",
        "on_response",
        "access_log",
    )
)
"""``RequestResponseCycle.__init__`` parameters stored as the attributes of the same name we use."""


def _resolve() -> tuple[Any, Any]:
    """``(RequestResponseCycle, STATUS_LINE)`` of the installed uvicorn, or ``(None, None)``."""
    try:
        from uvicorn.protocols.http.httptools_impl import STATUS_LINE, RequestResponseCycle
    except ImportError:  # no httptools (uvicorn uses h11), or no uvicorn at all
        return None, None
    try:
        params = set(inspect.signature(RequestResponseCycle.__init__).parameters)
        usable = (
            _CYCLE_PARAMS <= params
            and callable(getattr(RequestResponseCycle, "send", None))
            and STATUS_LINE.get(200) == b"HTTP/1.1 200 OK\r\n"
        )
    except (TypeError, ValueError, AttributeError):
        usable = False
    if not usable:
        log.warning("uvicorn's request cycle is not the one expected; fast-path answers take two writes")
        return None, None
    return RequestResponseCycle, STATUS_LINE


_CYCLE, _STATUS_LINE = _resolve()

DIRECT: bool = _CYCLE is not None
"""Whether answers under uvicorn's httptools protocol are written directly (tests switch it off)."""


async def send_answer(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    """Answer ``status`` with ``headers`` (lower-case, ``content-length`` included) and ``body``."""
    cycle: Any = getattr(send, "__self__", None)
    if DIRECT and type(cycle) is _CYCLE and not cycle.access_log:
        flow = cycle.flow
        if flow.write_paused and not cycle.disconnected:
            await flow.drain()
        if cycle.disconnected:
            return
        out = [_STATUS_LINE[status]]
        for name, value in (*cycle.default_headers, *headers):
            out += (name, b": ", value, b"\r\n")
        keep_alive = cycle.keep_alive
        if not keep_alive:
            out.append(b"connection: close\r\n")
        out += (b"\r\n", body)
        cycle.response_started = True
        cycle.response_complete = True
        transport = cycle.transport
        transport.write(b"".join(out))
        cycle.message_event.set()
        if not keep_alive:
            transport.close()
        cycle.on_response()
        return
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
