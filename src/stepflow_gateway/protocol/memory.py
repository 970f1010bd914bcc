"""Owns the in-memory channel pair: two connected JSON-RPC channels with no bytes in between.

Used to embed a component server in the gateway's process and to test :class:`Peer` with real code
and no subprocess. Messages are passed as Python objects; ``close()`` on one end makes the other
end's ``receive`` raise ``anyio.EndOfStream``.
"""

from __future__ import annotations

from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ["MemoryChannel", "memory_channel_pair"]


class MemoryChannel:
    """One end of an in-memory connection."""

    __slots__ = ("_send", "_receive")

    def __init__(self, send: MemoryObjectSendStream[Any], receive: MemoryObjectReceiveStream[Any]) -> None:
        self._send = send
        self._receive = receive

    async def send(self, message: Any) -> None:
        await self._send.send(message)

    async def receive(self) -> Any:
        return await self._receive.receive()

    async def aclose(self) -> None:
        await self._send.aclose()
        await self._receive.aclose()


def memory_channel_pair(buffer: int = 1024) -> tuple[MemoryChannel, MemoryChannel]:
    """Two connected channels: what one sends, the other receives."""
    a_send, b_receive = anyio.create_memory_object_stream[Any](buffer)
    b_send, a_receive = anyio.create_memory_object_stream[Any](buffer)
    return MemoryChannel(a_send, a_receive), MemoryChannel(b_send, b_receive)
