"""Owns the config model of a ``type: mcp`` plugin (config.md §2.4).

The upstream keys (``command``, ``args``, ``env``) keep their meaning; the rest are gateway
extensions. Environment substitution has already been applied by the registry when this model
sees the mapping, so values are taken literally here.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..base import PluginConfig

__all__ = ["DEFAULT_START_TIMEOUT_MS", "DEFAULT_TIMEOUT_MS", "McpPluginConfig"]

DEFAULT_TIMEOUT_MS = 30_000
"""Per ``tools/call``: the same 30 s upstream hard-wires as its read timeout."""
DEFAULT_START_TIMEOUT_MS = 30_000
"""Spawn + handshake + first listing. The SDK has no handshake timeout of its own (mcp.md §7.4)."""

_MODES = ("auto", "legacy", "2026-07-28")


class McpPluginConfig(PluginConfig):
    """``plugins.<name>`` with ``type: mcp`` (minus ``type``)."""

    command: str | None = None
    """stdio: the server executable (looked up on PATH, then relative to the working directory)."""
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    """Added on top of the minimal base env (HOME, LOGNAME, PATH, SHELL, TERM, USER); these win."""
    transport: Literal["stdio", "http", "sse"] | None = None
    """Defaults to ``stdio`` with ``command`` and ``http`` (streamable HTTP) with ``url``."""
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    mode: Literal["auto", "legacy", "2026-07-28"] = "auto"
    """The mcp SDK ``Client`` mode: protocol-era negotiation (mcp.md §5)."""
    timeout_ms: int = Field(default=DEFAULT_TIMEOUT_MS, ge=0, alias="timeoutMs")
    """Per call; ``0`` means no limit."""
    start_timeout_ms: int = Field(default=DEFAULT_START_TIMEOUT_MS, gt=0, alias="startTimeoutMs")
    cwd: str | None = None
    """Child working directory, resolved against the config's ``workingDirectory``."""
    max_concurrency: int | None = Field(default=None, ge=1, alias="maxConcurrency")
    """Cap on concurrent requests on the one MCP session; unbounded when absent."""
    output: Literal["auto", "structured", "content"] = "auto"
    """Step output: ``auto`` = ``structuredContent`` when present, else the ``content`` array;
    ``content`` = always the content array (upstream's shape); ``structured`` = always structured
    output (a lone JSON text block is parsed when the tool sent no ``structuredContent``)."""

    @field_validator("mode", mode="before")
    @classmethod
    def _mode_from_yaml_date(cls, value: Any) -> Any:
        # An unquoted `mode: 2026-07-28` is a YAML 1.1 date; accept it as the version string.
        if isinstance(value, _dt.date):
            return value.isoformat()
        if isinstance(value, str) and value not in _MODES:
            raise ValueError(f"mode must be one of {', '.join(repr(m) for m in _MODES)}, got {value!r}")
        return value

    @model_validator(mode="after")
    def _check_shape(self) -> McpPluginConfig:
        if self.command is not None and self.url is not None:
            raise ValueError("give either 'command' (stdio) or 'url' (http/sse), not both")
        transport = self.transport or ("stdio" if self.command is not None else "http")
        if transport == "stdio" and not self.command:
            raise ValueError("transport 'stdio' needs 'command'")
        if transport in ("http", "sse") and not self.url:
            raise ValueError(f"transport '{transport}' needs 'url'")
        self.transport = transport
        return self

    @property
    def timeout_s(self) -> float | None:
        """The per-call timeout in seconds, ``None`` for no limit."""
        return self.timeout_ms / 1000.0 if self.timeout_ms else None
