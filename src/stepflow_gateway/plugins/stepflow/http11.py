"""Owns a minimal HTTP/1.1 client for the hot path of ``http://`` StepFlow servers: POST one prebuilt
request on a kept-alive connection and read the answer (``Content-Length``, chunked, or until close).

Why not httpx2 here: a full client costs ~0.5–1 ms of CPU per call at 32 in flight (URL and header
objects per request, a pool scan that asks every idle socket whether it is readable, headers and body
written in two syscalls). This client builds the request head once per channel, writes head and body
in one ``write``, and parses the response inside ``data_received`` (asyncio ``Protocol``; no reader
task). It is used only for ``http://`` URLs; httpx2 stays for TLS, health checks and callback answers.

Errors: ``OSError`` from connecting is re-raised as :class:`HttpConnectError` (nothing was delivered);
a connection lost or a malformed answer after the request was written raises :class:`HttpBroken`.
Asyncio only.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

__all__ = ["HttpBroken", "HttpConnectError", "Http11Pool", "Http11Conn"]

MAX_HEAD = 64 * 1024
"""A response head above this is a protocol violation."""


class HttpConnectError(Exception):
    """The connection could not be opened (nothing was delivered)."""


class HttpBroken(Exception):
    """The exchange broke after the request was written."""


_LENGTH, _CHUNKED, _CLOSE = 0, 1, 2


class Http11Conn(asyncio.Protocol):
    """One keep-alive connection; one exchange at a time."""

    __slots__ = (
        "transport",
        "closed",
        "reusable",
        "status",
        "headers",
        "_buf",
        "_head",
        "_mode",
        "_remaining",
        "_pieces",
        "_waiter",
        "_complete",
        "_error",
        "_got_bytes",
        "_chunk_state",
    )

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = False
        self.status = 0
        self.headers: dict[str, str] = {}
        self._buf = bytearray()
        self._head: asyncio.Future[None] | None = None
        self._mode = _LENGTH
        self._remaining = 0
        self._pieces: list[bytes] = []
        self._waiter: asyncio.Future[None] | None = None
        self._complete = False
        self._error: BaseException | None = None
        self._got_bytes = False
        self._chunk_state = 0  # 0: size line, 1: data, 2: CRLF after data, 3: trailers

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        if self._mode == _CLOSE and self._head is not None and self._head.done() and not self._complete:
            self._finish()
            return
        self._fail(HttpBroken(f"connection closed{f' ({exc})' if exc else ''}"))

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        if self._head is None or self._complete:
            self.reusable = False  # unsolicited bytes: never reuse this connection
            return
        self._buf += data
        try:
            if not self._head.done():
                if not self._parse_head():
                    return
            self._parse_body()
        except HttpBroken as exc:
            self._fail(exc)
            if self.transport is not None:
                self.transport.close()

    # -- exchange -------------------------------------------------------------------------------

    def begin(self, request: bytes) -> asyncio.Future[None]:
        """Write ``request``; the returned future completes when the response head has arrived."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._head = loop.create_future()
        self._buf.clear()
        self._pieces = []
        self._complete = False
        self._error = None
        self._got_bytes = False
        self.reusable = False
        self.transport.write(request)
        return self._head

    @property
    def got_bytes(self) -> bool:
        return self._got_bytes

    @property
    def complete(self) -> bool:
        """Whether the whole response body has arrived."""
        return self._complete

    async def read_some(self) -> bytes | None:
        """The next piece of the body, or ``None`` at its end."""
        while True:
            if self._pieces:
                piece = b"".join(self._pieces) if len(self._pieces) > 1 else self._pieces[0]
                self._pieces = []
                return piece
            if self._error is not None:
                raise self._error
            if self._complete:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def read_all(self) -> bytes:
        parts: list[bytes] = []
        while True:
            piece = await self.read_some()
            if piece is None:
                return b"".join(parts)
            parts.append(piece)

    # -- parsing --------------------------------------------------------------------------------

    def _parse_head(self) -> bool:
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > MAX_HEAD:
                raise HttpBroken("response head too large")
            return False
        head = bytes(self._buf[:end]).decode("latin-1")
        del self._buf[: end + 4]
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise HttpBroken(f"malformed status line {lines[0][:100]!r}")
        status = int(parts[1])
        if 100 <= status < 200:  # interim response (100 Continue): skip it, keep waiting
            return self._parse_head() if self._buf else False
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise HttpBroken(f"malformed header line {line[:100]!r}")
            headers[name.strip().lower()] = value.strip()
        self.status = status
        self.headers = headers
        keep = parts[0] == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._mode, self._chunk_state, self._remaining = _CHUNKED, 0, 0
        elif "content-length" in headers:
            try:
                self._remaining = int(headers["content-length"])
            except ValueError:
                raise HttpBroken("malformed Content-Length") from None
            self._mode = _LENGTH
        elif status in (204, 304):
            self._mode, self._remaining = _LENGTH, 0
        else:
            self._mode, keep = _CLOSE, False
        self.reusable = keep
        assert self._head is not None
        self._head.set_result(None)
        return True

    def _parse_body(self) -> None:
        buf = self._buf
        if self._mode == _LENGTH:
            if buf:
                take = min(len(buf), self._remaining)
                if take:
                    self._deliver(bytes(buf[:take]))
                    del buf[:take]
                    self._remaining -= take
            if buf:
                self.reusable = False
            if self._remaining == 0:
                self._finish()
            return
        if self._mode == _CLOSE:
            if buf:
                self._deliver(bytes(buf))
                buf.clear()
            return
        while buf:
            state = self._chunk_state
            if state == 0:
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > 1024:
                        raise HttpBroken("malformed chunk size line")
                    return
                size_text = bytes(buf[:end]).split(b";", 1)[0].strip()
                del buf[: end + 2]
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise HttpBroken("malformed chunk size") from None
                if size == 0:
                    self._chunk_state = 3
                else:
                    self._remaining, self._chunk_state = size, 1
            elif state == 1:
                take = min(len(buf), self._remaining)
                self._deliver(bytes(buf[:take]))
                del buf[:take]
                self._remaining -= take
                if self._remaining == 0:
                    self._chunk_state = 2
            elif state == 2:
                if len(buf) < 2:
                    return
                if buf[:2] != b"\r\n":
                    raise HttpBroken("malformed chunk terminator")
                del buf[:2]
                self._chunk_state = 0
            else:  # trailers: lines up to an empty one
                end = buf.find(b"\r\n")
                if end < 0:
                    return
                del buf[: end + 2]
                if end == 0:
                    if buf:
                        self.reusable = False
                    self._finish()
                    return

    def _deliver(self, piece: bytes) -> None:
        self._pieces.append(piece)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _finish(self) -> None:
        self._complete = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self._complete:
            return
        self._error = exc
        self.reusable = False
        head = self._head
        if head is not None and not head.done():
            head.set_exception(exc)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None and not self.closed:
            self.transport.close()


class Http11Pool:
    """Kept-alive connections to one ``host:port`` (no limit on connections in use)."""

    def __init__(self, host: str, port: int, *, max_idle: int = 64, connect_timeout: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.max_idle = max_idle
        self.connect_timeout = connect_timeout
        self._idle: list[Http11Conn] = []
        self._closed = False

    async def send(self, request: bytes) -> Http11Conn:
        """Write ``request`` and wait for the response head; the caller reads the body and then
        calls :meth:`release`.

        Raises:
            HttpConnectError: no connection could be opened.
            HttpBroken: the exchange broke after the request was written.
        """
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.closed:
                continue
            try:
                await conn.begin(request)
                return conn
            except HttpBroken:
                conn.close()
                if conn.got_bytes:
                    raise
                # An idle connection the server had just closed: the request was not taken up.
                # Try the next one (or a fresh one).
            except BaseException:
                conn.close()
                raise
        conn = await self._connect()
        try:
            await conn.begin(request)
        except BaseException:
            conn.close()
            raise
        return conn

    async def _connect(self) -> Http11Conn:
        if self._closed:
            raise HttpConnectError("client closed")
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(Http11Conn, self.host, self.port), self.connect_timeout
            )
        except (OSError, TimeoutError) as exc:
            raise HttpConnectError(str(exc) or type(exc).__name__) from exc
        return conn

    def release(self, conn: Http11Conn, complete: bool) -> None:
        """Give a connection back after its exchange; it is kept only if the body was read fully."""
        keep = complete and conn.reusable and not conn.closed and not self._closed
        if keep and len(self._idle) < self.max_idle:
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
