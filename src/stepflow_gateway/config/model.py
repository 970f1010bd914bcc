"""Pydantic models of ``stepflow-config.yml`` (config.md).

Owns the shape of a loaded config: ``GatewayConfig`` with its plugins, routes, state store and retry
policy, the ``Backoff`` policies (also used by ``onError: retry``), and ``ConfigWarning``.

Keys are camelCase (``populate_by_name`` also accepts the Python names). Reading a file, key
normalisation (snake_case aliases, unknown keys, duplicates) and error messages with JSON paths
live in ``config.load``; these models only hold already-normalised data.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.alias_generators import to_camel

from ..types import JsonValue

__all__ = [
    "BACKOFF_ADAPTER",
    "BACKOFF_TYPES",
    "Backoff",
    "Condition",
    "ConfigWarning",
    "ConstantBackoff",
    "ExponentialBackoff",
    "FibonacciBackoff",
    "GatewayConfig",
    "PluginEntry",
    "RetryConfig",
    "RouteRule",
    "StateStoreConfig",
    "join_path",
]


@dataclass(slots=True)
class ConfigWarning:
    """A non-fatal problem found while loading a config. ``path`` is a JSON path (``$.stateStore``)."""

    path: str
    message: str
    kind: str = "unknownField"
    """``unknownField`` | ``snakeCaseAlias`` | ``duplicateKey`` | ``missingRoutes``."""


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


# --------------------------------------------------------------------------------------------------
# Backoff (config.md §6)


# Jitter for parity with upstream's backoff: a small ±10% spread, not "full jitter" (which could
# retry almost immediately and hammer a restarting peer).
_JITTER = 0.10


class _BackoffBase(_Model):
    def delay_ms(self, n: int) -> float:
        """Delay before retry ``n`` (1-based) in milliseconds, without jitter."""
        raise NotImplementedError

    def jittered_delay_s(self, n: int) -> float:
        """Delay before retry ``n`` (1-based) in seconds, spread by ±10%."""
        return self.delay_ms(n) * random.uniform(1.0 - _JITTER, 1.0 + _JITTER) / 1000.0


class ConstantBackoff(_BackoffBase):
    """The same delay (``delayMs``) before every retry."""

    type: Literal["constant"] = "constant"
    delay: float = Field(default=1000, ge=0, alias="delayMs")

    def delay_ms(self, n: int) -> float:
        return float(self.delay)


class ExponentialBackoff(_BackoffBase):
    """``min(minDelayMs * factor^(n-1), maxDelayMs)``."""

    type: Literal["exponential"] = "exponential"
    min_delay_ms: float = Field(default=1000, ge=0)
    max_delay_ms: float = Field(default=10000, ge=0)
    factor: float = Field(default=2.0, ge=1.0)

    def delay_ms(self, n: int) -> float:
        try:
            raw = self.min_delay_ms * self.factor ** (max(n, 1) - 1)
        except OverflowError:  # a huge n: the cap applies anyway
            return float(self.max_delay_ms)
        return float(min(raw, self.max_delay_ms))


class FibonacciBackoff(_BackoffBase):
    """``min(minDelayMs * F(n), maxDelayMs)`` with F = 1, 1, 2, 3, 5, 8, ... (the default policy)."""

    type: Literal["fibonacci"] = "fibonacci"
    min_delay_ms: float = Field(default=1000, ge=0)
    max_delay_ms: float = Field(default=10000, ge=0)

    def delay_ms(self, n: int) -> float:
        cap = self.max_delay_ms
        a, b = 1, 1
        for _ in range(max(n, 1) - 1):
            if self.min_delay_ms * a >= cap:  # stop early: the cap is reached
                return float(cap)
            a, b = b, a + b
        return float(min(self.min_delay_ms * a, cap))


Backoff = Annotated[ConstantBackoff | ExponentialBackoff | FibonacciBackoff, Field(discriminator="type")]
"""A retry backoff policy, tagged by ``type``."""

BACKOFF_ADAPTER: TypeAdapter[ConstantBackoff | ExponentialBackoff | FibonacciBackoff] = TypeAdapter(Backoff)
"""Validates a ``{type: ..., ...}`` backoff mapping (for ``onError.backoff`` in flows)."""

BACKOFF_TYPES: dict[str, type[_BackoffBase]] = {
    "constant": ConstantBackoff,
    "exponential": ExponentialBackoff,
    "fibonacci": FibonacciBackoff,
}


class RetryConfig(_Model):
    """``retry``: transport retries and the backoff shared by restarts, reconnects and ``onError``."""

    transport_max_retries: int = Field(default=3, ge=0)
    backoff: Backoff = Field(default_factory=FibonacciBackoff)


# --------------------------------------------------------------------------------------------------
# State store (config.md §3)


class StateStoreConfig(_Model):
    """``stateStore``. ``postgres`` is reserved and rejected by the loader."""

    type: Literal["inMemory", "sqlite", "postgres"] = "inMemory"
    database_url: str | None = None
    auto_migrate: bool = True
    max_connections: int = Field(default=10, ge=1)


# --------------------------------------------------------------------------------------------------
# Plugins and routes (config.md §2, §4)


class PluginEntry(_Model):
    """One ``plugins.<name>`` entry: its ``type`` and the rest of its mapping, unvalidated.

    ``options`` is validated later by the plugin type's own ``config_model``; environment
    substitution (``config.envsubst``) is applied when the plugin starts.
    """

    type: str
    options: dict[str, Any] = Field(default_factory=dict)


class Condition(_Model):
    """A route condition: the value at ``path`` in the step input must equal ``value``."""

    path: str
    value: JsonValue


class RouteRule(_Model):
    """One rule of a route pattern; rules are tried in order."""

    plugin: str
    conditions: list[Condition] = Field(default_factory=list)
    component_allow: list[str] | None = None
    component_deny: list[str] | None = None
    component: str | None = None


class GatewayConfig(_Model):
    """A loaded ``stepflow-config.yml``.

    ``state_store`` is ``inMemory`` when the file has no ``stateStore``; ``state_store_explicit``
    says whether the file set it (``serve`` then defaults to SQLite, config.md §3).
    """

    working_directory: Path
    plugins: dict[str, PluginEntry] = Field(default_factory=dict)
    routes: dict[str, list[RouteRule]] = Field(default_factory=dict)
    state_store: StateStoreConfig = Field(default_factory=StateStoreConfig)
    state_store_explicit: bool = False
    retry: RetryConfig = Field(default_factory=RetryConfig)
    source: Path | None = None

    def effective_state_store(self, *, serve: bool) -> StateStoreConfig:
        """The state store to open: the configured one, else in-memory (run/test) or SQLite at
        ``<workingDirectory>/.stepflow-gateway/state.db`` (serve)."""
        if self.state_store_explicit or not serve:
            return self.state_store
        db = self.working_directory / ".stepflow-gateway" / "state.db"
        return StateStoreConfig(type="sqlite", database_url=f"sqlite:{db}?mode=rwc")


# --------------------------------------------------------------------------------------------------
# JSON paths in messages


def _is_identifier(key: str) -> bool:
    return bool(key) and (key[0].isalpha() or key[0] == "_") and all(c.isalnum() or c in "_-" for c in key)


def join_path(base: str, key: str | int) -> str:
    """``$.a`` + ``b`` -> ``$.a.b``; ``"/x/{y}"`` -> ``$.a["/x/{y}"]``; ``0`` -> ``$.a[0]``."""
    if isinstance(key, int):
        return f"{base}[{key}]"
    if _is_identifier(key):
        return f"{base}.{key}"
    return f"{base}[{json.dumps(key, ensure_ascii=False)}]"
