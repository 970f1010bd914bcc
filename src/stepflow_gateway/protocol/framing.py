"""Owns byte-level framing and the JSON codecs of the StepFlow JSON-RPC transports.

Two framings:

* **newline** (protocol.md §6): one compact JSON message per line. Every official peer speaks it.
  :class:`LineChannel` reads lines from a byte stream and writes lines to another.
* **frames** (the gateway's negotiated fast transport, ``plugins/stepflow/fast.py``): a 4-byte
  big-endian length followed by the encoded message. No scanning for delimiters, no line limit, and
  a codec chosen at negotiation (``CODECS``). :class:`FrameChannel` reads and writes them over any
  anyio byte stream; the transport itself uses the leaner
  :class:`~stepflow_gateway.protocol.framepeer.FramePeer`, which parses them on an asyncio transport.

Both channels expose the same two coroutines that :class:`~stepflow_gateway.protocol.jsonrpc.Peer`
needs: ``send(message)`` and ``receive()`` (raises ``anyio.EndOfStream`` at the end). A line that is
not JSON is logged and skipped (the gateway ignores noise on a peer's stdout, protocol.md §6).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import pydantic_core
import structlog
from anyio.abc import ByteReceiveStream, ByteSendStream

from ..errors import ProtocolError

__all__ = [
    "CODECS",
    "DEFAULT_LINE_LIMIT",
    "FrameChannel",
    "StreamReaderReceive",
    "LineChannel",
    "available_codecs",
    "dumps",
    "loads",
]

log = structlog.get_logger(__name__)

DEFAULT_LINE_LIMIT = 512 * 1024
"""stepflow-py's stdin reader dies on a line longer than this (protocol.md §6)."""

_READ_CHUNK = 256 * 1024
# Incoming messages above this are a protocol violation rather than data: it keeps a runaway peer
# from exhausting memory while still allowing large blobs.
_MAX_INCOMING = 256 * 1024 * 1024


def dumps(value: Any) -> bytes:
    """Compact JSON bytes (pydantic-core: 2–5x faster than ``json.dumps`` on large values)."""
    return pydantic_core.to_json(value)


def loads(data: bytes | bytearray | str) -> Any:
    """Parse JSON bytes, keeping key order and number kinds."""
    return pydantic_core.from_json(data)


def _stdlib_dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


_Codec = tuple[Callable[[Any], bytes], Callable[[bytes | bytearray], Any]]
"""(encode, decode); every decoder also takes a ``bytearray`` (a frame sliced from the buffer)."""


def _codec_table() -> dict[str, _Codec]:
    table: dict[str, _Codec] = {}
    try:  # optional: the fastest encoder when both ends have it
        import orjson

        table["orjson"] = (orjson.dumps, orjson.loads)
    except ImportError:
        pass
    try:
        import msgpack

        table["msgpack"] = (
            lambda v: msgpack.packb(v, use_bin_type=True),
            lambda b: msgpack.unpackb(b, raw=False, strict_map_key=False),
        )
    except ImportError:
        pass
    table["json"] = (dumps, loads)
    table["json-stdlib"] = (_stdlib_dumps, json.loads)
    return table


CODECS = _codec_table()
"""Codec name → (encode, decode), best first; ``json`` (pydantic-core) is always present."""


def available_codecs() -> list[str]:
    """Codec names this process can use, in preference order."""
    return [name for name in CODECS if name != "json-stdlib"]


class StreamReaderReceive(ByteReceiveStream):
    """A byte stream over an asyncio ``StreamReader`` (EOF: ``anyio.EndOfStream``)."""

    __slots__ = ("_reader",)

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    async def receive(self, max_bytes: int = 65536) -> bytes:
        data = await self._reader.read(max_bytes)
        if not data:
            raise anyio.EndOfStream
        return data

    async def aclose(self) -> None:
        # Later (and pending) reads fail as on anyio's own process streams.
        self._reader.set_exception(anyio.ClosedResourceError())
        await anyio.lowlevel.checkpoint()


class LineChannel:
    """Newline-delimited JSON over a pair of byte streams (a child's stdout/stdin, or our own)."""

    __slots__ = ("_rx", "_tx", "_lines", "_partial", "_lock", "max_line", "name", "_dumps", "_loads")

    def __init__(
        self,
        rx: ByteReceiveStream | None,
        tx: ByteSendStream | None,
        *,
        max_line: int | None = None,
        name: str = "",
    ) -> None:
        self._rx = rx
        self._tx = tx
        self._lines: deque[bytes] = deque()
        self._partial: list[bytes] = []
        self._lock = anyio.Lock()
        self.max_line = max_line
        self.name = name
        self._dumps = dumps
        self._loads = loads

    def encode(self, message: Any) -> bytes:
        """The line for ``message``. Raises ``ProtocolError`` when it exceeds ``max_line``."""
        data = self._dumps(message) + b"\n"
        if self.max_line is not None and len(data) > self.max_line:
            raise ProtocolError(
                f"message of {len(data)} bytes exceeds maxMessageBytes ({self.max_line}); the peer "
                "would drop or crash on it (stepflow-py stdio servers exit on lines over 512 KiB). "
                "Pass large data by blob id, or raise maxMessageBytes for a peer that accepts more",
                plugin=self.name or None,
                code=-32600,
            )
        return data

    async def send(self, message: Any) -> None:
        """Write one message as one line."""
        data = self.encode(message)
        assert self._tx is not None, "channel is receive-only"
        async with self._lock:
            await self._tx.send(data)

    async def send_raw(self, data: bytes) -> None:
        assert self._tx is not None, "channel is receive-only"
        async with self._lock:
            await self._tx.send(data)

    async def receive(self) -> Any:
        """The next JSON message. Raises ``anyio.EndOfStream`` at EOF."""
        while True:
            lines = self._lines
            while lines:
                line = lines.popleft()
                try:
                    return self._loads(line)
                except ValueError:
                    if line.strip():
                        log.warning("ignoring non-JSON line from peer", peer=self.name, line=_clip(line))
            await self._fill()

    async def receive_line(self) -> bytes:
        """The next raw line (without ``\\n``). Raises ``anyio.EndOfStream`` at EOF."""
        while not self._lines:
            await self._fill()
        return self._lines.popleft()

    async def _fill(self) -> None:
        assert self._rx is not None, "channel is send-only"
        try:
            chunk = await self._rx.receive(_READ_CHUNK)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError) as exc:
            raise anyio.EndOfStream from exc
        if b"\n" not in chunk:
            # Accumulate without re-scanning: joining once the newline arrives keeps large
            # messages linear in their size.
            self._partial.append(chunk)
            if sum(len(p) for p in self._partial) > _MAX_INCOMING:
                raise ProtocolError(f"peer sent a line over {_MAX_INCOMING} bytes", plugin=self.name)
            return
        if self._partial:
            self._partial.append(chunk)
            chunk = b"".join(self._partial)
            self._partial = []
        parts = chunk.split(b"\n")
        tail = parts.pop()
        if tail:
            self._partial.append(tail)
        self._lines.extend(parts)


def _clip(line: bytes, limit: int = 200) -> str:
    text = line[:limit].decode("utf-8", "replace")
    return text + ("…" if len(line) > limit else "")


class FrameChannel:
    """Length-prefixed frames (4-byte big-endian size + payload) over one byte stream."""

    __slots__ = ("_stream", "_buf", "_lock", "_dumps", "_loads", "codec", "name")

    def __init__(self, stream: Any, *, codec: str = "json", name: str = "") -> None:
        if codec not in CODECS:
            raise ValueError(f"unknown codec {codec!r}")
        self._stream = stream
        self._buf = bytearray()
        self._lock = anyio.Lock()
        self._dumps, self._loads = CODECS[codec]
        self.codec = codec
        self.name = name

    async def send(self, message: Any) -> None:
        """Write one message as one frame."""
        payload = self._dumps(message)
        data = len(payload).to_bytes(4, "big") + payload
        async with self._lock:
            await self._stream.send(data)

    async def receive(self) -> Any:
        """The next message. Raises ``anyio.EndOfStream`` when the stream closes."""
        buf = self._buf
        while True:
            if len(buf) >= 4:
                size = int.from_bytes(buf[:4], "big")
                if size > _MAX_INCOMING:
                    raise ProtocolError(f"peer sent a frame of {size} bytes", plugin=self.name)
                end = 4 + size
                if len(buf) >= end:
                    payload = bytes(buf[4:end])
                    del buf[:end]
                    return self._loads(payload)
            try:
                chunk = await self._stream.receive(_READ_CHUNK)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError) as exc:
                raise anyio.EndOfStream from exc
            buf += chunk

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            try:
                await self._stream.aclose()
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass
