"""``stepflow-gateway serve``: the REST ``/api/v1`` API (upstream 0.9.0 compatible), run events and ``/mcp``.

``create_app(gateway_or_config_path, ServerSettings)`` returns a Starlette app; everything it owns
(plugins, state store, background runs, MCP sessions) lives in the app's lifespan.
"""

from __future__ import annotations

from .app import create_app
from .runtime import ServerSettings

__all__ = ["ServerSettings", "create_app"]
