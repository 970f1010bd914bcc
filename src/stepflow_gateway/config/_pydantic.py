"""Pydantic mirrors of the config models, for the rare path only: odd inputs and error messages.

``config.model`` holds the config as plain slotted dataclasses, checked by hand for the common
shapes (pydantic costs ~50 ms to import, and a ``run`` of a builtin-only flow must start in
< 250 ms). When a value is not of the plain expected type (``"5"`` for an int, a bad number...),
``config.model.validate`` hands the mapping to the mirror here: pydantic's lax coercions and its
error messages (``Input should be a valid integer``, with the JSON path in ``loc``) then stay
exactly what the config format has always accepted and reported.

The fields, aliases and constraints must match ``config.model`` one to one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.alias_generators import to_camel

__all__ = ["BACKOFF_ADAPTER", "MIRRORS"]


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ConstantBackoff(_Model):
    type: Literal["constant"] = "constant"
    delay: float = Field(default=1000, ge=0, alias="delayMs")


class ExponentialBackoff(_Model):
    type: Literal["exponential"] = "exponential"
    min_delay_ms: float = Field(default=1000, ge=0)
    max_delay_ms: float = Field(default=10000, ge=0)
    factor: float = Field(default=2.0, ge=1.0)


class FibonacciBackoff(_Model):
    type: Literal["fibonacci"] = "fibonacci"
    min_delay_ms: float = Field(default=1000, ge=0)
    max_delay_ms: float = Field(default=10000, ge=0)


Backoff = Annotated[ConstantBackoff | ExponentialBackoff | FibonacciBackoff, Field(discriminator="type")]

BACKOFF_ADAPTER: TypeAdapter[Any] = TypeAdapter(Backoff)


class RetryConfig(_Model):
    transport_max_retries: int = Field(default=3, ge=0)
    backoff: Backoff = Field(default_factory=FibonacciBackoff)


class StateStoreConfig(_Model):
    type: Literal["inMemory", "sqlite", "postgres"] = "inMemory"
    database_url: str | None = None
    auto_migrate: bool = True
    max_connections: int = Field(default=10, ge=1)


class PluginEntry(_Model):
    type: str
    options: dict[str, Any] = Field(default_factory=dict)


class Condition(_Model):
    path: str
    value: Any


class RouteRule(_Model):
    plugin: str
    conditions: list[Condition] = Field(default_factory=list)
    component_allow: list[str] | None = None
    component_deny: list[str] | None = None
    component: str | None = None


class GatewayConfig(_Model):
    working_directory: Path
    plugins: dict[str, PluginEntry] = Field(default_factory=dict)
    routes: dict[str, list[RouteRule]] = Field(default_factory=dict)
    state_store: StateStoreConfig = Field(default_factory=StateStoreConfig)
    state_store_explicit: bool = False
    retry: RetryConfig = Field(default_factory=RetryConfig)
    source: Path | None = None


MIRRORS: dict[str, type[_Model]] = {
    cls.__name__: cls
    for cls in (
        ConstantBackoff,
        ExponentialBackoff,
        FibonacciBackoff,
        RetryConfig,
        StateStoreConfig,
        PluginEntry,
        Condition,
        RouteRule,
        GatewayConfig,
    )
}
"""Mirror model by the name of its ``config.model`` dataclass."""
