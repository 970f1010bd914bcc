"""Owns :class:`FramePeer`: a JSON-RPC connection over length-prefixed frames (4-byte big-endian size,
then the payload in the negotiated codec) written directly on an asyncio stream transport.

It is the negotiated fast transport of both ends (``plugins/stepflow/fast.py``, ``sdk/negotiate.py``)
and has the interface of :class:`~stepflow_gateway.protocol.jsonrpc.Peer` that they use (``run``,
``request``, ``notify``, ``close``, ``closed``, ``closed_event``), with the same semantics. It differs
in how the bytes move, which is what a small call costs once both ends are Python:

* frames are parsed inside ``data_received``; a response completes its caller's future right there
  (no receive-loop task to wake, no stream reader, no per-message copy of the whole buffer);
* a write goes straight to the transport (no lock: one frame is one ``write``). The first frame
  of a loop tick is sent at once; further frames in the same tick are joined into one write at the
  end of it, so 16 replies become one syscall and one wake-up of the other process;
* the timeout of a request is a loop timer rather than a cancel scope, and incoming requests run as
  plain tasks (one each, like Peer) tracked for cancellation when the connection ends.

Asyncio only (the fast transport is a gateway extension between two asyncio processes).
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable
from typing import Any

import anyio
import structlog
from anyio.abc import TaskStatus

from ..errors import CallTimeout, TransportClosed
from .framing import CODECS
from .jsonrpc import (
    CRASH_MESSAGE,
    INTERNAL_ERROR,
    Handler,
    RpcError,
    error_message,
    handle_request,
    notification_message,
    request_message,
)

__all__ = ["MAX_FRAME", "FramePeer"]

log = structlog.get_logger(__name__)

MAX_FRAME = 256 * 1024 * 1024
"""A frame above this is a protocol violation rather than data (a runaway peer must not exhaust memory)."""

_FROM = int.from_bytes


class FramePeer(asyncio.Protocol):
    """One fast-transport connection, usable in both directions (see the module docstring).

    Create it, then attach it to a transport with :meth:`connect_unix` or :meth:`accept_socket`.
    With ``hello=True`` the first frame received is not a JSON-RPC message but the handshake frame;
    :meth:`receive_hello` returns it.
    """

    def __init__(
        self,
        handler: Handler | None = None,
        *,
        codec: str = "json",
        name: str = "",
        hello: bool = False,
        on_notification: Callable[[str, Any], None] | None = None,
    ) -> None:
        if codec not in CODECS:
            raise ValueError(f"unknown codec {codec!r}")
        self.codec = codec
        self.name = name
        self.handler = handler
        self._on_notification = on_notification
        self._dumps, self._loads = CODECS[codec]
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._prefix = uuid.uuid4().hex[:12] + "-"
        self._ids = itertools.count(1)
        self._hello: asyncio.Future[Any] | None = self._loop.create_future() if hello else None
        # Writes: the first of a tick goes out at once; later ones wait in _out for the tick's end.
        self._out: list[bytes] = []
        self._corked = False
        self._paused = False
        self._drained: asyncio.Future[None] | None = None
        self._closed = False
        self._close_reason = "connection closed"
        self.closed_event = anyio.Event()

    # -- attaching -----------------------------------------------------------------------------

    async def connect_unix(self, path: str) -> None:
        """Connect to the Unix socket at ``path``."""
        await self._loop.create_unix_connection(lambda: self, path)

    async def accept_socket(self, sock: Any) -> None:
        """Take over an accepted (non-blocking) socket."""
        await self._loop.connect_accepted_socket(lambda: self, sock)

    async def receive_hello(self) -> Any:
        """The handshake frame (``hello=True``); ``anyio.EndOfStream`` if the connection ends first."""
        assert self._hello is not None, "created without hello=True"
        return await self._hello

    def send_frame(self, message: Any) -> None:
        """Write one message outside JSON-RPC (the handshake frame)."""
        self._write(self._encode(message))

    # -- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed:
            self._fail_all(f"connection lost: {exc}" if exc is not None else "connection closed")
        if self._hello is not None and not self._hello.done():
            self._hello.set_exception(anyio.EndOfStream())
        self._wake_writers()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_writers()

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        if buf:
            buf += data
            view: bytes | bytearray = buf
        else:
            view = data
        size_total = len(view)
        pos = 0
        loads = self._loads
        while size_total - pos >= 4:
            size = _FROM(view[pos : pos + 4], "big")
            end = pos + 4 + size
            if end > size_total:
                if size > MAX_FRAME:
                    self._violation(f"peer sent a frame of {size} bytes")
                    return
                break
            try:
                message = loads(view[pos + 4 : end])
            except ValueError as exc:
                self._violation(f"undecodable {self.codec} frame: {exc}")
                return
            pos = end
            self._dispatch(message)
            if self._closed:
                return
        if view is buf:
            del buf[:pos]
        elif pos < size_total:
            buf += data[pos:]

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost follows

    # -- incoming messages ---------------------------------------------------------------------

    def _dispatch(self, msg: Any) -> None:
        hello = self._hello
        if hello is not None and not hello.done():
            hello.set_result(msg)
            return
        if type(msg) is not dict:
            log.warning("ignoring non-object JSON-RPC message", peer=self.name, message=repr(msg)[:200])
            return
        method = msg.get("method")
        if method is None:
            if "id" not in msg:
                log.warning("ignoring invalid JSON-RPC message", peer=self.name, message=repr(msg)[:200])
                return
            future = self._pending.pop(msg["id"], None)
            if future is None or future.done():
                log.debug("response with unknown id ignored", peer=self.name, id=msg.get("id"))
                return
            error = msg.get("error")
            if error is not None:
                future.set_exception(RpcError.from_json(error))
            else:
                future.set_result(msg.get("result"))
            return
        request_id = msg.get("id")
        if request_id is not None:
            task = self._loop.create_task(self._serve(request_id, method, msg.get("params")))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif self._on_notification is not None:
            try:
                self._on_notification(method, msg.get("params"))
            except Exception:  # a notification never breaks the connection
                log.exception("notification handler failed", peer=self.name, method=method)
        else:
            log.debug("notification ignored", peer=self.name, method=method)

    async def _serve(self, request_id: Any, method: str, params: Any) -> None:
        reply = await handle_request(self.handler, request_id, method, params, peer=self.name)
        if self._closed:
            log.debug("reply dropped: connection gone", peer=self.name, method=method)
            return
        try:
            data = self._encode(reply)
        except (TypeError, ValueError) as exc:  # a result the codec cannot represent
            log.warning("could not encode reply", peer=self.name, method=method, error=str(exc))
            error = RpcError(INTERNAL_ERROR, f"Internal error: result not serialisable: {exc}")
            data = self._encode(error_message(request_id, error))
        try:
            self._write(data)
        except anyio.BrokenResourceError:
            log.debug("reply dropped: connection gone", peer=self.name, method=method)
            return
        if self._paused:
            await self._drain()

    # -- outgoing messages ---------------------------------------------------------------------

    def _encode(self, message: Any) -> bytes:
        payload = self._dumps(message)
        return len(payload).to_bytes(4, "big") + payload

    def _write(self, data: bytes) -> None:
        if self._corked:
            self._out.append(data)
            return
        transport = self._transport
        if transport is None or transport.is_closing():
            raise anyio.BrokenResourceError
        transport.write(data)
        self._corked = True
        self._loop.call_soon(self._uncork)

    def _uncork(self) -> None:
        out = self._out
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            transport = self._transport
            if transport is not None and not transport.is_closing():
                transport.write(data)
        self._corked = False

    async def _drain(self) -> None:
        while self._paused and not self._closed:
            if self._drained is None or self._drained.done():
                self._drained = self._loop.create_future()
            await self._drained

    def _wake_writers(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    async def request(self, method: str, params: Any = None, *, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        """Send a request and wait for its result.

        Raises:
            RpcError: the peer answered with an error.
            TransportClosed: the connection ended before the answer.
            CallTimeout: no answer within ``timeout`` seconds.
        """
        if self._closed:
            raise TransportClosed(f"{CRASH_MESSAGE} ({self._close_reason})", plugin=self.name or None)
        request_id = self._prefix + str(next(self._ids))
        message = request_message(request_id, method, params)
        data = self._encode(message)
        future: asyncio.Future[Any] = self._loop.create_future()
        self._pending[request_id] = future
        timer = self._loop.call_later(timeout, _expire, future) if timeout is not None else None
        try:
            self._write(data)
            if self._paused:
                await self._drain()
            return await future
        except TimeoutError:
            raise CallTimeout(
                f"no response to {method} within {timeout:g} s", plugin=self.name or None
            ) from None
        except (anyio.BrokenResourceError, OSError) as exc:
            raise TransportClosed(f"could not send {method}: {exc}", plugin=self.name or None) from exc
        finally:
            if timer is not None:
                timer.cancel()
            self._pending.pop(request_id, None)

    async def notify(self, method: str, params: Any = None) -> None:
        """Send a notification (``params`` defaults to ``{}``)."""
        if self._closed:
            raise TransportClosed(f"could not send {method}: {self._close_reason}", plugin=self.name or None)
        try:
            self._write(self._encode(notification_message(method, params)))
        except anyio.BrokenResourceError as exc:
            raise TransportClosed(
                f"could not send {method}: connection closed", plugin=self.name or None
            ) from exc

    # -- lifetime ------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Wait until the connection ends; then cancel the handlers still running.

        Messages are served from the moment the transport is attached; ``run`` only holds the
        connection's lifetime (so ``tg.start(peer.run)`` works as with :class:`Peer`).
        """
        task_status.started()
        try:
            await self.closed_event.wait()
        finally:
            if not self._closed:
                self._fail_all("connection closed")
            self._abort()

    def close(self, reason: str = "connection closed") -> None:
        """Fail every in-flight request now and drop the connection."""
        self._close_reason = reason
        self._fail_all(reason)
        self._abort()

    async def aclose(self) -> None:
        self.close()

    def _violation(self, reason: str) -> None:
        log.warning("closing connection after protocol violation", peer=self.name, error=reason)
        self.close(reason)

    def _abort(self) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.close()
        for task in list(self._tasks):
            task.cancel()

    def _fail_all(self, reason: str) -> None:
        if not self._closed:
            self._close_reason = reason
        self._closed = True
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(
                    TransportClosed(
                        f"{CRASH_MESSAGE} ({reason})", plugin=self.name or None, code=INTERNAL_ERROR
                    )
                )
        self.closed_event.set()


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())
