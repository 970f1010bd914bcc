"""Owns serving a :class:`~.server.ComponentServer` on this process's stdin/stdout (newline JSON),
including the switch to the negotiated fast transport.

Stdout is the protocol channel, so it is taken over at start: fd 1 is duplicated for the protocol
and then pointed at stderr, so a stray ``print`` in a component can never corrupt a message.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import anyio

from ..protocol.framepeer import FramePeer
from ..protocol.framing import LineChannel, StreamReaderReceive
from ..protocol.jsonrpc import Peer
from ..protocol.messages import Method
from ._handler import ComponentHandler
from .negotiate import accept_offer

__all__ = ["serve_stdio"]


class _Writer:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    async def send(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()


class _FdReader:
    """Fallback when stdin is a regular file: blocking reads in a worker thread."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    async def receive(self, max_bytes: int = 65536) -> bytes:
        data = await anyio.to_thread.run_sync(os.read, self._fd, max_bytes)
        if not data:
            raise anyio.EndOfStream
        return data


class _FdWriter:
    """Fallback when stdout is a regular file (asyncio pipe transports refuse those)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]


async def _std_streams() -> tuple[Any, Any]:
    in_fd, out_fd = os.dup(0), os.dup(1)
    os.dup2(2, 1)
    loop = asyncio.get_running_loop()
    rx: Any
    tx: Any
    try:
        reader = asyncio.StreamReader(limit=1 << 26)
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(in_fd, "rb", buffering=0)
        )
        rx = StreamReaderReceive(reader)
    except ValueError:
        rx = _FdReader(in_fd)
    try:
        transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, os.fdopen(out_fd, "wb", buffering=0)
        )
        tx = _Writer(asyncio.StreamWriter(transport, protocol, None, loop))
    except ValueError:
        tx = _FdWriter(out_fd)
    return rx, tx


async def serve_stdio(server: ComponentHandler, *, fast: bool = True) -> None:
    """Serve until stdin closes (the runtime's shutdown signal) or the fast channel ends."""
    rx, tx = await _std_streams()
    async with anyio.create_task_group() as tg:

        def handler_for(ref: list[Peer | FramePeer]) -> Any:
            # ``ref`` holds the connection this handler serves (set right after it is created).
            async def handle(method: str, params: Any) -> Any:
                if method == Method.INITIALIZE:
                    result, fast_peer = await accept_offer(
                        params, fast and ref[0] is base, lambda peer: handler_for([peer])
                    )
                    if fast_peer is not None:
                        tg.start_soon(_run_then_stop, fast_peer, tg)
                    return result
                return await server.dispatch(method, params, ref[0].request)

            return handle

        base_ref: list[Peer | FramePeer] = []
        base = Peer(LineChannel(rx, tx, name="stdio"), handler_for(base_ref), name="stdio")
        base_ref.append(base)
        await _run_then_stop(base, tg)


async def _run_then_stop(peer: Peer | FramePeer, tg: anyio.abc.TaskGroup) -> None:
    await peer.run()
    tg.cancel_scope.cancel()
