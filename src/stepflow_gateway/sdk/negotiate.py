"""Owns the server side of the fast-transport negotiation (``plugins/stepflow/fast.py`` explains the
exchange): accept an offer from ``initialize`` params by connecting to the runtime's Unix socket.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import structlog
from pydantic import ValidationError

from ..protocol.framepeer import FramePeer
from ..protocol.framing import available_codecs
from ..protocol.jsonrpc import Handler
from ..protocol.messages import ACCEPT_FIELD, OFFER_FIELD, TransportOffer

__all__ = ["accept_offer"]

log = structlog.get_logger(__name__)

CONNECT_TIMEOUT = 5.0
"""The runtime's socket is local and already listening; anything slower means it is gone."""


async def accept_offer(
    params: Any, enabled: bool, handler_for: Callable[[FramePeer], Handler]
) -> tuple[dict[str, Any], FramePeer | None]:
    """The ``initialize`` result, and the fast connection when an offer was taken.

    ``handler_for(peer)`` gives the handler serving the runtime's requests on that connection (it
    may use ``peer.request`` for callbacks). The caller runs ``peer.run`` for its lifetime.
    """
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
        peer = FramePeer(codec=codec, name="fast")
        peer.handler = handler_for(peer)
        try:
            with anyio.fail_after(CONNECT_TIMEOUT):
                await peer.connect_unix(offer.path)
            peer.send_frame({"token": offer.token})
        except (OSError, TimeoutError, anyio.BrokenResourceError) as exc:
            peer.close("connect failed")
            log.warning("fast transport offer not usable; staying on the base channel", error=repr(exc))
            continue
        result[ACCEPT_FIELD] = {"kind": offer.kind, "codec": codec}
        return result, peer
    return result, None
