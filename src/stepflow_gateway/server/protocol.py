"""The HTTP/1.1 protocol ``serve`` gives uvicorn: its httptools protocol, with ``POST /api/v1/runs``
answered without ASGI.

uvicorn parses the request and builds its request/response cycle as usual; only the task started for
a complete request differs. For a run request (``GatewayApp.is_fast_run``) the task reads the body
from the cycle, lets ``GatewayApp.fast_create_run`` decide, and writes the answer to the transport
itself: one write of status line, uvicorn's default headers (``date``), the fast path's headers and
the body, then the cycle is completed the way uvicorn completes it (keep-alive or close, next
pipelined request). This skips the proxy-headers middleware, the ASGI ``send`` messages and
uvicorn's per-header validation (our headers are constants). Everything the fast path does not take
(any other route, another shape of body, errors worded by the handlers) runs through the normal ASGI
cycle with the body replayed, so behaviour is the one of ``api.py``.

uvicorn's access log (off under ``serve``) does not see the requests answered here.

This relies on two names of ``uvicorn.protocols.http.httptools_impl`` (``HttpToolsProtocol``
and its ``_start_asgi_task``); ``protocol_class()`` checks for them and falls back to uvicorn's own
protocol when a uvicorn release no longer has them.
"""

from __future__ import annotations

from typing import Any

from ..logging import get_logger
from .errors import error_body
from .fastpath import GatewayApp, answer_headers, encode_json

__all__ = ["protocol_class"]

log = get_logger(__name__)

_RUNS = "/api/v1/runs"


def protocol_class(app: Any) -> Any:
    """The ``http=`` protocol class for uvicorn serving ``app``; ``"auto"`` when ours does not apply."""
    if not isinstance(app, GatewayApp):
        return "auto"
    try:
        from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
    except ImportError:  # no httptools: uvicorn picks h11
        return "auto"
    if not callable(getattr(HttpToolsProtocol, "_start_asgi_task", None)):
        log.warning(
            "this uvicorn has no HttpToolsProtocol._start_asgi_task; serving without the fast protocol"
        )
        return "auto"

    class GatewayHttpProtocol(HttpToolsProtocol):
        def _start_asgi_task(self, cycle: Any, asgi: Any) -> None:
            scope = cycle.scope
            if scope["path"] != _RUNS or asgi is not self.app or not app.is_fast_run(scope):
                super()._start_asgi_task(cycle, asgi)
                return
            task = self.loop.create_task(self._fast_run(cycle))
            task.add_done_callback(self.tasks.discard)
            self.tasks.add(task)

        async def _fast_run(self, cycle: Any) -> None:
            try:
                got = await app.fast_create_run(cycle.scope, cycle.receive)
            except Exception as exc:  # a bug of ours (errors of runs are answered inside): 500
                log.error("run request failed", error=f"{type(exc).__name__}: {exc}", exc_info=exc)
                got = 500, encode_json(error_body(500, f"Internal server error: {type(exc).__name__}")), ()
            if type(got) is not tuple:
                replayed = got

                async def full(scope: Any, _receive: Any, send: Any) -> None:
                    await app.full_stack(scope, replayed, send)

                await cycle.run_asgi(full)
                return
            if cycle.flow.write_paused and not cycle.disconnected:
                await cycle.flow.drain()
            if cycle.disconnected:
                return
            status, body, extra = got
            out = [STATUS_LINE[status]]
            for name, value in (*cycle.default_headers, *answer_headers(cycle.scope, body, extra)):
                out += (name, b": ", value, b"\r\n")
            if not cycle.keep_alive:
                out.append(b"connection: close\r\n")
            out += (b"\r\n", body)
            cycle.response_started = True
            cycle.response_complete = True
            transport = cycle.transport
            transport.write(b"".join(out))
            cycle.message_event.set()
            if not cycle.keep_alive:
                transport.close()
            cycle.on_response()

    return GatewayHttpProtocol
