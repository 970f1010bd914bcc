"""Owns :class:`ComponentHandler`: what the transports (``stdio.py``, ``http.py``) need from a server.

:class:`~.server.ComponentServer` is the one implementation. The transports are typed against this
Protocol instead of importing ``server.py``, because ``ComponentServer.run`` imports the transports:
either direction alone is fine, both together are an import circle.
"""

from __future__ import annotations

from typing import Any, Protocol

from .context import SendRequest

__all__ = ["ComponentHandler"]


class ComponentHandler(Protocol):
    """Serves runtime → component requests; a transport hands every request it receives to it."""

    def wants_context(self, component_name: str) -> bool:
        """Whether the component takes a ``Context`` (over HTTP its execute then streams callbacks)."""
        ...

    async def dispatch(self, method: str, params: Any, send: SendRequest | None) -> Any:
        """Answer one request; ``send`` makes callbacks on the connection it came on."""
        ...

    async def execute(self, params: Any, send: SendRequest | None) -> dict[str, Any]:
        """Answer ``components/execute``."""
        ...
