"""Owns the stdio transport of MCP servers: the child process and its newline-delimited JSON-RPC
stream, given to ``mcp.Client`` as a read and a write stream.

The SDK's ``stdio_client`` moves every message through a zero-buffer memory stream and a writer
task (and a reader task on the other side), and writes each message in its own syscall, which wakes
the server once per message. Here (asyncio ``SubprocessProtocol``):

* stdout is split into lines and parsed inside ``pipe_data_received``; parsed messages wait in a
  deque for the SDK's dispatcher (no reader task, no memory stream);
* ``send`` serialises onto the stdin pipe: the messages of one loop tick are joined into one write
  at its end (32 calls in flight become one write instead of 32, and the server, which may share
  our core, is woken once);
* shutdown is the SDK's: close stdin, wait up to 2 s, SIGTERM the process group, then SIGKILL;
  then what is left of the group is SIGKILLed;
* the child dies with the gateway, even after ``kill -9`` (``plugins/_process.py``: parent-death
  signal on the child, its process group guarded by the reaper);
* a line carrying one of our own request ids (``_direct.MARKER``) is first offered to the
  connection's :class:`~._direct.DirectCalls` (the read stream's ``direct``), which consumes the
  responses and progress of direct ``tools/call`` requests; it writes through ``send_raw``.

Semantics kept from ``stdio_client``: same environment (SDK defaults, then the configured env),
own session/process group, stderr to ``errlog``; a line that is not a JSON-RPC message is handed to
the session as an ``Exception``; the end of stdout ends the read stream (``EndOfStream``); a write
to a closed pipe raises ``BrokenResourceError`` (the SDK reports it as ``Connection closed``).
Asyncio only (callers fall back to the SDK's transport on other backends).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from collections import deque
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, TextIO

import anyio
import mcp_types as types
import structlog
from mcp import StdioServerParameters
from mcp.client.stdio import get_default_environment
from mcp.shared.message import SessionMessage

from .._process import child_preexec, guard_group, release_group
from ._direct import MARKER, DirectCalls

__all__ = ["open_stdio"]

log = structlog.get_logger(__name__)

STDIN_CLOSE_GRACE_S = 2.0
"""How long the server may take to exit after its stdin closes (the SDK's grace)."""
TERM_GRACE_S = 2.0
"""How long after SIGTERM before SIGKILL."""
MAX_QUEUED = 256
"""Parsed messages waiting for the dispatcher above which stdout reading pauses."""
HIGH_WATER = 1024 * 1024
"""Stdin bytes buffered in the process above which ``send`` waits for the pipe to drain."""

_validate = types.jsonrpc_message_adapter.validate_json


def _parse(line: bytes) -> SessionMessage | Exception:
    try:
        return SessionMessage(_validate(line, by_name=False))
    except ValueError as exc:
        log.warning("mcp server sent a line that is not a JSON-RPC message", line=line[:200])
        return exc


class _ReadStream:
    """Parsed stdout messages, in order; ``EndOfStream`` once stdout has ended.

    Lines that ``direct`` consumes never reach the SDK.
    """

    __slots__ = ("_items", "_waiter", "_eof", "_closed", "_buf", "_pipe", "_paused", "direct")

    def __init__(self) -> None:
        self._items: deque[SessionMessage | Exception] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._eof = False
        self._closed = False
        self._buf = b""
        self._pipe: Any = None
        self._paused = False
        self.direct: DirectCalls | None = None

    def feed(self, data: bytes) -> None:
        if b"\n" not in data:
            self._buf += data
            return
        lines = (self._buf + data).split(b"\n") if self._buf else data.split(b"\n")
        self._buf = lines.pop()
        items = self._items
        queued = len(items)
        direct = self.direct
        for line in lines:
            if line.strip():
                if direct is not None and MARKER in line and direct.take(line):
                    continue
                items.append(_parse(line))
        if len(items) == queued:
            return
        self._wake()
        if len(items) > MAX_QUEUED and self._pipe is not None and not self._paused:
            self._paused = True
            self._pipe.pause_reading()

    def feed_eof(self) -> None:
        if self._buf.strip():
            direct = self.direct
            if direct is None or MARKER not in self._buf or not direct.take(self._buf):
                self._items.append(_parse(self._buf))
        self._buf = b""
        self._eof = True
        if self.direct is not None:
            self.direct.close()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def last_context(self) -> Any:
        return None

    async def receive(self) -> SessionMessage | Exception:
        while True:
            if self._closed:
                raise anyio.ClosedResourceError
            if self._items:
                item = self._items.popleft()
                if self._paused and len(self._items) < MAX_QUEUED // 2:
                    self._paused = False
                    self._pipe.resume_reading()
                return item
            if self._eof:
                raise anyio.EndOfStream
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def __aiter__(self) -> _ReadStream:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self._closed = True
        self._wake()

    async def __aenter__(self) -> _ReadStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class _WriteStream:
    """Serialises messages onto the stdin pipe (writes coalesced per loop tick)."""

    __slots__ = ("_pipe", "_loop", "_pending", "_closed", "_broken", "_drained")

    def __init__(self, pipe: asyncio.WriteTransport, loop: asyncio.AbstractEventLoop) -> None:
        self._pipe = pipe
        self._loop = loop
        self._pending: list[bytes] | None = None
        self._closed = False
        self._broken = False
        self._drained: asyncio.Future[None] | None = None

    async def send(self, item: SessionMessage, /) -> None:
        await self.send_raw(item.message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n")

    async def send_raw(self, data: bytes) -> None:
        """Write one serialised message (ending in a newline), waiting if the pipe is full.

        Raises:
            anyio.ClosedResourceError: the stream was closed.
            anyio.BrokenResourceError: the server's stdin is gone.
        """
        if self._closed:
            raise anyio.ClosedResourceError
        if self._broken or self._pipe.is_closing():
            raise anyio.BrokenResourceError
        self._queue(data)
        if self._pipe.get_write_buffer_size() > HIGH_WATER:
            await self._drain()

    def post_raw(self, data: bytes) -> None:
        """Best-effort write of one serialised message, never waiting (cancel notifications);
        dropped once the stream is closed or broken, as the SDK drops late notifications."""
        if not (self._closed or self._broken or self._pipe.is_closing()):
            self._queue(data)

    def _queue(self, data: bytes) -> None:
        # Messages of one loop tick are joined into one write at its end: each write wakes the
        # server, and on a shared core a write per message makes the two processes ping-pong.
        pending = self._pending
        if pending is None:
            self._pending = [data]
            self._loop.call_soon(self._flush)
        else:
            pending.append(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending and not self._broken and not self._pipe.is_closing():
            self._pipe.write(pending[0] if len(pending) == 1 else b"".join(pending))

    async def _drain(self) -> None:
        if self._drained is None or self._drained.done():
            self._drained = self._loop.create_future()
        await self._drained

    def resumed(self) -> None:
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def broken(self) -> None:
        self._broken = True
        self.resumed()

    def close_pipe(self) -> None:
        """Flush what is queued and close stdin (the server's signal to exit)."""
        self._flush()
        self._closed = True
        if not self._pipe.is_closing():
            self._pipe.close()

    async def aclose(self) -> None:
        self._closed = True

    async def __aenter__(self) -> _WriteStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class _Protocol(asyncio.SubprocessProtocol):
    def __init__(self) -> None:
        self.read = _ReadStream()
        self.write: _WriteStream | None = None
        self.exited = asyncio.get_running_loop().create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            self.read.feed(data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if fd == 1:
            self.read.feed_eof()
        elif fd == 0 and self.write is not None:
            self.write.broken()

    def resume_writing(self) -> None:
        if self.write is not None:
            self.write.resumed()

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)


@contextlib.asynccontextmanager
async def open_stdio(
    params: StdioServerParameters, errlog: TextIO
) -> AsyncIterator[tuple[_ReadStream, _WriteStream]]:
    """Spawn the server and yield ``(read_stream, write_stream)`` for ``mcp.Client``.

    Raises:
        OSError: the server could not be spawned.
    """
    loop = asyncio.get_running_loop()
    env = get_default_environment() | (params.env or {})
    transport, proto = await loop.subprocess_exec(
        _Protocol,
        params.command,
        *params.args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=errlog,
        cwd=params.cwd,
        env=env,
        start_new_session=True,
        preexec_fn=child_preexec(),  # dies with the gateway (on this, the loop's, thread)
    )
    guard_group(transport.get_pid())
    stdin = transport.get_pipe_transport(0)
    proto.read._pipe = transport.get_pipe_transport(1)
    proto.write = _WriteStream(stdin, loop)  # type: ignore[arg-type]
    proto.read.direct = DirectCalls(proto.write, loop)
    try:
        yield proto.read, proto.write
    finally:
        with anyio.CancelScope(shield=True):
            await _stop(transport, proto)


async def _stop(transport: asyncio.SubprocessTransport, proto: _Protocol) -> None:
    """Close stdin, wait, then SIGTERM and SIGKILL the process group (each wait bounded)."""
    assert proto.write is not None
    if proto.read.direct is not None:
        # The session above has ended and failed its own requests; fail ours now too rather
        # than when the server's stdout finally closes.
        proto.read.direct.close()
    proto.write.close_pipe()
    pid = transport.get_pid()
    for sig, grace in ((None, STDIN_CLOSE_GRACE_S), (signal.SIGTERM, TERM_GRACE_S), (signal.SIGKILL, 2.0)):
        if sig is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, sig)
        if transport.get_returncode() is not None:
            break
        with anyio.move_on_after(grace):
            await asyncio.shield(proto.exited)
        if transport.get_returncode() is not None:
            break
    else:
        log.warning("mcp server process is still alive after SIGKILL; abandoning it", pid=pid)
    # What the server left in its group (node under `npx` or `sh -c`) goes with it.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    release_group(pid)
    transport.close()
    proto.read.feed_eof()
