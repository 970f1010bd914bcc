"""The ``mcp`` plugin type: every tool of an MCP server becomes a StepFlow component (mcp.md).

``plugin.py`` owns the session lifecycle and calls, ``mapping.py`` the MCP ↔ StepFlow value
translation, ``config.py`` the config model; ``_connection.py``, ``_catalogue.py``,
``_extras.py`` and ``_stderr.py`` are their private helpers.
"""

from __future__ import annotations

from .config import McpPluginConfig
from .plugin import McpPlugin

__all__ = ["McpPlugin", "McpPluginConfig"]
