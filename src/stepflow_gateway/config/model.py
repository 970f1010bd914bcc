"""The models of ``stepflow-config.yml`` (config.md), as slotted dataclasses.

Owns the shape of a loaded config: ``GatewayConfig`` with its plugins, routes, state store and retry
policy, the ``Backoff`` policies (also used by ``onError: retry``), ``ConfigWarning``, and
``validate`` (a mapping to a model, with pydantic's coercions and error messages).

Keys are camelCase; constructors and ``validate`` also accept the Python names (``delayMs`` or
``delay``, ``minDelayMs`` or ``min_delay_ms``). Reading a file, key normalisation (snake_case
aliases, unknown keys, duplicates) and error messages with JSON paths live in ``config.load``;
these models only hold already-normalised data.

Why not pydantic models: pydantic costs ~50 ms to import plus a few ms per model, and a ``run`` of
a builtin-only flow (which uses the default config) must start in < 250 ms. ``validate`` checks the
plain shapes by hand; anything else (a value that needs coercion, or is invalid) goes to the pydantic
mirrors in ``config._pydantic``, so accepted inputs and error messages are exactly pydantic's.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeAlias

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
    "validate",
]


@dataclass(slots=True)
class ConfigWarning:
    """A non-fatal problem found while loading a config. ``path`` is a JSON path (``$.stateStore``)."""

    path: str
    message: str
    kind: str = "unknownField"
    """``unknownField`` | ``snakeCaseAlias`` | ``duplicateKey`` | ``missingRoutes``."""


# --------------------------------------------------------------------------------------------------
# Hand checks of the plain shapes. A check returns the field value, or raises _Unplain: then the
# pydantic mirror decides (it may coerce the value, or report the error).


class _Unplain(Exception):
    """The value is not of the plain expected type: let the pydantic mirror decide."""


_UNPLAIN = _Unplain()


def _str(v: Any) -> Any:
    if type(v) is not str:
        raise _UNPLAIN
    return v


def _opt_str(v: Any) -> Any:
    return v if v is None else _str(v)


def _float_ge(low: float) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if (type(v) is not int and type(v) is not float) or not math.isfinite(v) or v < low:
            raise _UNPLAIN
        return float(v)

    return check


def _int_ge(low: int) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if type(v) is not int or v < low:
            raise _UNPLAIN
        return v

    return check


def _bool(v: Any) -> Any:
    if type(v) is not bool:
        raise _UNPLAIN
    return v


def _literal(*values: str) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if type(v) is not str or v not in values:
            raise _UNPLAIN
        return v

    return check


def _opt_str_list(v: Any) -> Any:
    if v is None:
        return None
    if type(v) is not list or any(type(x) is not str for x in v):
        raise _UNPLAIN
    return list(v)


def _any(v: Any) -> Any:
    return v


def _dict(v: Any) -> Any:
    if type(v) is not dict or any(type(k) is not str for k in v):
        raise _UNPLAIN
    return dict(v)


def _to_camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class _ConfigModel:
    """Base of the config dataclasses: alias-aware construction, ``validate``, ``model_fields``."""

    __slots__ = ()
    _checks: ClassVar[dict[str, Callable[[Any], Any]]] = {}
    _aliases: ClassVar[dict[str, str]] = {}
    """alias (camelCase) -> field name, for every field."""

    @classmethod
    def model_validate(cls, data: Any) -> Any:
        """``validate(cls, data)``."""
        return validate(cls, data)

    def model_dump(self, *, by_alias: bool = False, mode: str = "python") -> dict[str, Any]:
        """The fields as a mapping (recursively), like pydantic's ``model_dump``; ``mode='json'``
        turns paths into strings."""
        return _dump(self, by_alias, mode == "json")  # type: ignore[no-any-return]


def _model(
    checks: dict[str, Callable[[Any], Any]], aliases: dict[str, str] | None = None
) -> Callable[[type[Any]], type[Any]]:
    """Finish a config dataclass: record its checks and aliases; let the constructor take aliases."""

    def finish(cls: type[Any]) -> type[Any]:
        names = [f.name for f in fields(cls)]
        cls._checks = checks
        cls._aliases = {(aliases or {}).get(n, _to_camel(n)): n for n in names}
        plain_init = cls.__init__
        renames = {a: n for a, n in cls._aliases.items() if a != n}
        if renames:

            def __init__(self: Any, *args: Any, **kw: Any) -> None:
                for alias in [k for k in kw if k in renames]:
                    name = renames[alias]
                    if name in kw:
                        raise TypeError(f"{cls.__name__}: both {alias!r} and {name!r} given")
                    kw[name] = kw.pop(alias)
                plain_init(self, *args, **kw)

            __init__.__doc__ = plain_init.__doc__
            cls.__init__ = __init__
        return cls

    return finish


def validate(model: type[Any], data: Any) -> Any:
    """``data`` (a mapping, camelCase keys or Python names) as an instance of the config ``model``.

    Raises:
        pydantic.ValidationError: exactly as the pydantic model of the same shape would.
    """
    if type(data) is dict:
        try:
            return _plain(model, data)
        except _Unplain:
            pass
    return _via_mirror(model, data)


def _plain(model: type[Any], data: dict[str, Any]) -> Any:
    aliases = model._aliases
    checks = model._checks
    kw: dict[str, Any] = {}
    for key, value in data.items():
        name = aliases.get(key, key if key in checks else None)
        if name is None or name in kw:
            raise _UNPLAIN  # unknown key, or given twice (alias and name): pydantic reports it
        kw[name] = checks[name](value)
    for f in fields(model):
        if f.name not in kw and f.default is MISSING and f.default_factory is MISSING:
            raise _UNPLAIN  # a missing required key
    return model(**kw)


def _to_data(value: Any) -> Any:
    """Config dataclasses inside ``value`` as camelCase mappings (the mirrors' input)."""
    if isinstance(value, _ConfigModel):
        by_name = {n: a for a, n in type(value)._aliases.items()}
        return {by_name[f.name]: _to_data(getattr(value, f.name)) for f in fields(value)}  # type: ignore[arg-type]
    if type(value) is list:
        return [_to_data(v) for v in value]
    if type(value) is dict:
        return {k: _to_data(v) for k, v in value.items()}
    return value


def _dump(value: Any, by_alias: bool, json_mode: bool) -> Any:
    if isinstance(value, _ConfigModel):
        keys = {n: a for a, n in type(value)._aliases.items()} if by_alias else None
        return {
            (keys[f.name] if keys else f.name): _dump(getattr(value, f.name), by_alias, json_mode)
            for f in fields(value)  # type: ignore[arg-type]
        }
    if type(value) is list:
        return [_dump(v, by_alias, json_mode) for v in value]
    if type(value) is dict:
        return {k: _dump(v, by_alias, json_mode) for k, v in value.items()}
    if json_mode and isinstance(value, Path):
        return str(value)
    return value


def _from_mirror(value: Any) -> Any:
    """A validated mirror model (recursively) as the config dataclasses."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        cls = _BY_NAME[type(value).__name__]
        return cls(**{n: _from_mirror(getattr(value, n)) for n in type(value).model_fields})
    if type(value) is list:
        return [_from_mirror(v) for v in value]
    if type(value) is dict:
        return {k: _from_mirror(v) for k, v in value.items()}
    return value


def _via_mirror(model: type[Any], data: Any) -> Any:
    from ._pydantic import MIRRORS

    return _from_mirror(MIRRORS[model.__name__].model_validate(_to_data(data)))


# --------------------------------------------------------------------------------------------------
# Backoff (config.md §6)


# Jitter for parity with upstream's backoff: a small ±10% spread, not "full jitter" (which could
# retry almost immediately and hammer a restarting peer).
_JITTER = 0.10


class _BackoffBase(_ConfigModel):
    __slots__ = ()

    def delay_ms(self, n: int) -> float:
        """Delay before retry ``n`` (1-based) in milliseconds, without jitter."""
        raise NotImplementedError

    def jittered_delay_s(self, n: int) -> float:
        """Delay before retry ``n`` (1-based) in seconds, spread by ±10%."""
        return self.delay_ms(n) * random.uniform(1.0 - _JITTER, 1.0 + _JITTER) / 1000.0


@_model({"type": _literal("constant"), "delay": _float_ge(0)}, {"delay": "delayMs"})
@dataclass(slots=True)
class ConstantBackoff(_BackoffBase):
    """The same delay (``delayMs``) before every retry."""

    delay: float = 1000
    type: Literal["constant"] = "constant"

    def delay_ms(self, n: int) -> float:
        return float(self.delay)


@_model(
    {
        "type": _literal("exponential"),
        "min_delay_ms": _float_ge(0),
        "max_delay_ms": _float_ge(0),
        "factor": _float_ge(1.0),
    }
)
@dataclass(slots=True)
class ExponentialBackoff(_BackoffBase):
    """``min(minDelayMs * factor^(n-1), maxDelayMs)``."""

    min_delay_ms: float = 1000
    max_delay_ms: float = 10000
    factor: float = 2.0
    type: Literal["exponential"] = "exponential"

    def delay_ms(self, n: int) -> float:
        try:
            raw = self.min_delay_ms * self.factor ** (max(n, 1) - 1)
        except OverflowError:  # a huge n: the cap applies anyway
            return float(self.max_delay_ms)
        return float(min(raw, self.max_delay_ms))


@_model({"type": _literal("fibonacci"), "min_delay_ms": _float_ge(0), "max_delay_ms": _float_ge(0)})
@dataclass(slots=True)
class FibonacciBackoff(_BackoffBase):
    """``min(minDelayMs * F(n), maxDelayMs)`` with F = 1, 1, 2, 3, 5, 8, ... (the default policy)."""

    min_delay_ms: float = 1000
    max_delay_ms: float = 10000
    type: Literal["fibonacci"] = "fibonacci"

    def delay_ms(self, n: int) -> float:
        cap = self.max_delay_ms
        a, b = 1, 1
        for _ in range(max(n, 1) - 1):
            if self.min_delay_ms * a >= cap:  # stop early: the cap is reached
                return float(cap)
            a, b = b, a + b
        return float(min(self.min_delay_ms * a, cap))


Backoff: TypeAlias = ConstantBackoff | ExponentialBackoff | FibonacciBackoff
"""A retry backoff policy, tagged by ``type``."""

BACKOFF_TYPES: dict[str, type[_BackoffBase]] = {
    "constant": ConstantBackoff,
    "exponential": ExponentialBackoff,
    "fibonacci": FibonacciBackoff,
}


def _backoff(v: Any) -> Any:
    if isinstance(v, _BackoffBase):
        return v
    cls = BACKOFF_TYPES.get(v.get("type")) if type(v) is dict else None  # type: ignore[arg-type]
    if cls is None:
        raise _UNPLAIN
    return _plain(cls, v)


class _BackoffAdapter:
    """Validates a ``{type: ..., ...}`` backoff mapping (``pydantic.TypeAdapter(Backoff)`` semantics)."""

    __slots__ = ()

    def validate_python(self, data: Any) -> Backoff:
        """The backoff ``data`` describes. Raises ``pydantic.ValidationError`` when it is invalid."""
        try:
            return _backoff(data)  # type: ignore[no-any-return]
        except _Unplain:
            from ._pydantic import BACKOFF_ADAPTER as mirror

            return _from_mirror(mirror.validate_python(_to_data(data)))  # type: ignore[no-any-return]


BACKOFF_ADAPTER = _BackoffAdapter()
"""Validates a ``{type: ..., ...}`` backoff mapping (for ``onError.backoff`` in flows)."""


@_model({"transport_max_retries": _int_ge(0), "backoff": _backoff})
@dataclass(slots=True)
class RetryConfig(_ConfigModel):
    """``retry``: transport retries and the backoff shared by restarts, reconnects and ``onError``."""

    transport_max_retries: int = 3
    backoff: Backoff = field(default_factory=FibonacciBackoff)


@dataclass(slots=True)
class RecoveryConfig:
    """``recovery`` (upstream's keys): resuming runs a previous process left unfinished.

    ``check_interval_secs``, ``lease_ttl_secs`` and ``checkpoint_interval`` are accepted for
    upstream configs; one process owns all its runs, so only ``enabled`` and
    ``max_startup_recovery`` change what it does."""

    enabled: bool = True
    max_startup_recovery: int | None = 100
    check_interval_secs: float = 30.0
    lease_ttl_secs: float = 30.0
    checkpoint_interval: int = 1000


# --------------------------------------------------------------------------------------------------
# State store (config.md §3)


@_model(
    {
        "type": _literal("inMemory", "sqlite", "postgres"),
        "database_url": _opt_str,
        "auto_migrate": _bool,
        "max_connections": _int_ge(1),
    }
)
@dataclass(slots=True)
class StateStoreConfig(_ConfigModel):
    """``stateStore`` (upstream: ``storageConfig``). ``postgres`` needs a ``postgresql://`` URL."""

    type: Literal["inMemory", "sqlite", "postgres"] = "inMemory"
    database_url: str | None = None
    auto_migrate: bool = True
    max_connections: int = 10


# --------------------------------------------------------------------------------------------------
# Plugins and routes (config.md §2, §4)


@_model({"type": _str, "options": _dict})
@dataclass(slots=True)
class PluginEntry(_ConfigModel):
    """One ``plugins.<name>`` entry: its ``type`` and the rest of its mapping, unvalidated.

    ``options`` is validated later by the plugin type's own ``config_model``; environment
    substitution (``config.envsubst``) is applied when the plugin starts.
    """

    type: str
    options: dict[str, Any] = field(default_factory=dict)


@_model({"path": _str, "value": _any})
@dataclass(slots=True)
class Condition(_ConfigModel):
    """A route condition: the value at ``path`` in the step input must equal ``value``."""

    path: str
    value: JsonValue


def _conditions(v: Any) -> Any:
    if type(v) is not list:
        raise _UNPLAIN
    return [c if type(c) is Condition else _plain(Condition, c) if type(c) is dict else _fail() for c in v]


def _fail() -> Any:
    raise _UNPLAIN


@_model(
    {
        "plugin": _str,
        "conditions": _conditions,
        "component_allow": _opt_str_list,
        "component_deny": _opt_str_list,
        "component": _opt_str,
    }
)
@dataclass(slots=True)
class RouteRule(_ConfigModel):
    """One rule of a route pattern; rules are tried in order."""

    plugin: str
    conditions: list[Condition] = field(default_factory=list)
    component_allow: list[str] | None = None
    component_deny: list[str] | None = None
    component: str | None = None


@_model({})  # never validated by hand: built by config.load, or through the mirror
@dataclass(slots=True)
class GatewayConfig(_ConfigModel):
    """A loaded ``stepflow-config.yml``.

    ``state_store`` is ``inMemory`` when the file has no ``stateStore``; ``state_store_explicit``
    says whether the file set it (``serve`` then defaults to SQLite, config.md §3).
    """

    working_directory: Path
    plugins: dict[str, PluginEntry] = field(default_factory=dict)
    routes: dict[str, list[RouteRule]] = field(default_factory=dict)
    state_store: StateStoreConfig = field(default_factory=StateStoreConfig)
    state_store_explicit: bool = False
    retry: RetryConfig = field(default_factory=RetryConfig)
    source: Path | None = None
    recovery: RecoveryConfig = field(default_factory=RecoveryConfig)

    def effective_state_store(self, *, serve: bool) -> StateStoreConfig:
        """The state store to open: the configured one, else in-memory (run/test) or SQLite at
        ``<workingDirectory>/.stepflow-gateway/state.db`` (serve)."""
        if self.state_store_explicit or not serve:
            return self.state_store
        db = self.working_directory / ".stepflow-gateway" / "state.db"
        return StateStoreConfig(type="sqlite", database_url=f"sqlite:{db}?mode=rwc")


_BY_NAME: dict[str, type[Any]] = {
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
