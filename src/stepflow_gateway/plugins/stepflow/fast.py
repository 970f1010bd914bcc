"""Owns the runtime side of the negotiated fast transport: a private Unix socket speaking
length-prefixed frames (``protocol/framing.py``) with the best codec both ends have.

Negotiation (a gateway extension that official peers ignore, protocol.md §3.2):

1. Before ``initialize``, the runtime listens on ``<private tmp dir>/rpc.sock`` and adds
   ``{"stepflow_gateway_transports": [{kind: "unix-frames", path, token, codecs}]}`` to the params.
   Frames are a 4-byte big-endian length and the payload; :class:`~stepflow_gateway.protocol.
   framepeer.FramePeer` speaks them at both ends.
2. A server that wants it connects, sends one frame ``{"token": token}`` in the codec it picked,
   and answers ``initialize`` with ``{"stepflow_gateway_transport": {kind, codec}}`` in its result.
3. The runtime accepts that connection and from then on sends ``initialized`` and every request on
   it. The original channel stays open only to watch the child (and, over stdio, its stdin closing
   is still the shutdown signal).

A server that ignores the field answers without the key and everything stays on the base channel.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from ...errors import ProtocolError
from ...protocol.framepeer import FramePeer
from ...protocol.framing import available_codecs
from ...protocol.jsonrpc import Handler
from ...protocol.messages import TransportAccept, TransportOffer

__all__ = ["FastListener", "open_fast_listener"]


class FastListener:
    """A listening socket waiting for one child to connect."""

    def __init__(self, listener: socket.socket, offer: TransportOffer, plugin: str) -> None:
        self._listener = listener
        self.offer = offer
        self.plugin = plugin

    async def accept(self, accepted: TransportAccept, timeout: float, handler: Handler) -> FramePeer:  # noqa: ASYNC109
        """The connection the child opened, serving ``handler`` once its token checked out.

        Raises:
            ProtocolError: no connection, an unknown codec or a wrong token within ``timeout``.
        """
        if accepted.codec not in self.offer.codecs:
            raise ProtocolError(f"server chose codec {accepted.codec!r}, not offered", plugin=self.plugin)
        peer = FramePeer(handler, codec=accepted.codec, name=self.plugin, hello=True)
        try:
            with anyio.fail_after(timeout):
                conn, _ = await asyncio.get_running_loop().sock_accept(self._listener)
                await peer.accept_socket(conn)
                hello = await peer.receive_hello()
        except TimeoutError:
            peer.close("handshake timed out")
            raise ProtocolError(
                "server accepted the fast transport but never connected", plugin=self.plugin
            ) from None
        except (anyio.EndOfStream, OSError) as exc:
            peer.close("handshake failed")
            raise ProtocolError(f"fast transport handshake failed: {exc!r}", plugin=self.plugin) from exc
        if not isinstance(hello, dict) or not secrets.compare_digest(
            str(hello.get("token", "")), self.offer.token
        ):
            peer.close("wrong token")
            raise ProtocolError("fast transport handshake carried a wrong token", plugin=self.plugin)
        return peer


@asynccontextmanager
async def open_fast_listener(plugin: str) -> AsyncIterator[FastListener]:
    """Listen on a fresh socket in a private (0700) directory; remove both on exit."""
    directory = Path(tempfile.mkdtemp(prefix="sfgw-"))
    path = directory / "rpc.sock"
    try:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(path))
            path.chmod(0o600)
            listener.listen(4)
            listener.setblocking(False)
            offer = TransportOffer(path=str(path), token=secrets.token_hex(16), codecs=available_codecs())
            yield FastListener(listener, offer, plugin)
        finally:
            listener.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
