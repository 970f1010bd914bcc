"""Owns the config model of ``type: stepflow`` plugins (config.md §2.3) and which shape it selects.

Four shapes: ``transport: stdio`` (child over pipes), ``transport: http`` (remote URL), and with no
``transport`` either ``command`` (a self-launching 0.9-style HTTP worker) or ``url`` (remote).
Environment substitution has already been applied by the registry when this model sees the values.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..base import PluginConfig

__all__ = ["HealthCheckConfig", "Shape", "StepflowPluginConfig"]

Shape = Literal["stdio", "remote", "worker"]

DEFAULT_EXECUTE_TIMEOUT_S = 3600.0
# Upstream has no execute timeout at all; an hour keeps every wait bounded without cutting off
# long-running components (model calls, batch jobs). ``timeoutMs``/``timeout`` override it.


class HealthCheckConfig(BaseModel):
    """``healthCheck`` of a self-launching worker (protocol.md §8)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    path: str = "/health"
    timeout_ms: int = Field(60000, alias="timeoutMs", ge=0)
    retry_delay_ms: int = Field(100, alias="retryDelayMs", ge=1)


class StepflowPluginConfig(PluginConfig):
    """``plugins.<name>`` with ``type: stepflow``."""

    transport: Literal["stdio", "http"] | None = None
    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float | None = Field(None, gt=0)
    """Upstream's documented per-request timeout in seconds."""
    timeout_ms: int | None = Field(None, alias="timeoutMs", gt=0)
    """[gw] Per-request timeout in milliseconds (wins over ``timeout``)."""
    start_timeout_ms: int = Field(30000, alias="startTimeoutMs", gt=0)
    health_check: HealthCheckConfig = Field(default_factory=HealthCheckConfig, alias="healthCheck")
    max_message_bytes: int | None = Field(None, alias="maxMessageBytes", gt=0)
    """[gw] Largest message written to the peer; default 512 KiB over stdio, unlimited otherwise."""
    lazy_start: bool = Field(False, alias="lazyStart")
    """[gw] Start the server on first use instead of at plugin start."""
    fast_transport: bool = Field(True, alias="fastTransport")
    """[gw] Offer the negotiated Unix-socket transport to child servers (official peers ignore it)."""
    shutdown_grace_ms: int = Field(2000, alias="shutdownGraceMs", ge=0)
    """[gw] How long to wait after closing stdin, and again after SIGTERM, before escalating."""

    @model_validator(mode="after")
    def _check_shape(self) -> StepflowPluginConfig:
        if self.transport == "stdio" and not self.command:
            raise ValueError("transport 'stdio' needs 'command'")
        if self.transport == "http" and not self.url:
            raise ValueError("transport 'http' needs 'url'")
        if self.transport is None:
            if self.command and self.url:
                raise ValueError(
                    "give either 'command' (self-launching worker) or 'url' (remote server), not both"
                )
            if not self.command and not self.url:
                raise ValueError("a stepflow plugin needs 'command' (with optional 'transport') or 'url'")
        return self

    @property
    def shape(self) -> Shape:
        if self.transport == "stdio":
            return "stdio"
        if self.transport == "http":
            return "remote"
        return "worker" if self.command else "remote"

    @property
    def request_timeout(self) -> float:
        """Seconds allowed for one ``components/execute``."""
        if self.timeout_ms is not None:
            return self.timeout_ms / 1000
        if self.timeout is not None:
            return self.timeout
        return DEFAULT_EXECUTE_TIMEOUT_S

    @property
    def start_timeout(self) -> float:
        return self.start_timeout_ms / 1000

    @property
    def line_limit(self) -> int | None:
        if self.max_message_bytes is not None:
            return self.max_message_bytes
        return 512 * 1024 if self.shape == "stdio" else None
