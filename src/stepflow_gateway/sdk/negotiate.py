"""Owns the server side of the fast-transport negotiation (``plugins/stepflow/fast.py`` explains the
exchange): accept an offer from ``initialize`` params by connecting to the runtime's Unix socket.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import structlog
from pydantic import ValidationError

from ..protocol.framing import AsyncioByteStream, FrameChannel, available_codecs
from ..protocol.messages import ACCEPT_FIELD, OFFER_FIELD, TransportOffer

__all__ = ["accept_offer"]

log = structlog.get_logger(__name__)

CONNECT_TIMEOUT = 5.0
"""The runtime's socket is local and already listening; anything slower means it is gone."""


async def accept_offer(params: Any, enabled: bool) -> tuple[dict[str, Any], FrameChannel | None]:
    """The ``initialize`` result, and the fast channel when an offer was taken."""
    result: dict[str, Any] = {"server_protocol_version": 1}
    offers = params.get(OFFER_FIELD) if enabled and isinstance(params, dict) else None
    if not isinstance(offers, list):
        return result, None
    ours = available_codecs()
    for raw in offers:
        try:
            offer = TransportOffer.model_validate(raw)
        except ValidationError:
            continue
        codec = next((c for c in offer.codecs if c in ours), None)
        if codec is None:
            continue
        try:
            with anyio.fail_after(CONNECT_TIMEOUT):
                reader, writer = await asyncio.open_unix_connection(offer.path)
                channel = FrameChannel(AsyncioByteStream(reader, writer), codec=codec, name="fast")
                await channel.send({"token": offer.token})
        except (OSError, TimeoutError) as exc:
            log.warning("fast transport offer not usable; staying on the base channel", error=repr(exc))
            continue
        result[ACCEPT_FIELD] = {"kind": offer.kind, "codec": codec}
        return result, channel
    return result, None
