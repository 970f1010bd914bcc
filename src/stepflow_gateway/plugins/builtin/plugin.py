"""``BuiltinPlugin`` (config type ``builtin``): dispatch of the eight builtins of builtins.md plus
upstream HEAD's ``/noop`` and ``/sleep``.

Owns the plugin lifecycle (the working directory for ``/load_file``, the HTTP client of
``/openai``) and the component table. ``/create_messages`` and ``/noop`` need no I/O and are served
by the synchronous ``execute_inline`` fast path; every other builtin (``/sleep`` included: it waits)
goes through ``execute``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ...core.result import FlowResult
from ...errors import UnknownComponentError
from ...types import JsonValue
from ..base import ComponentInfo, ExecutionContext, PluginContext
from .blobs import get_blob, put_blob
from .load_file import load_file
from .messages import create_messages
from .nested import eval_flow, iterate_flow, map_flow
from .noop_sleep import noop, sleep
from .openai import OpenAIClient
from .schemas import component_infos

__all__ = ["BuiltinPlugin", "BuiltinPluginConfig"]

_Handler = Callable[[Any, ExecutionContext], Awaitable[FlowResult]]

_RUNTIME_HANDLERS: dict[str, _Handler] = {
    "/put_blob": put_blob,
    "/get_blob": get_blob,
    "/eval": eval_flow,
    "/map": map_flow,
    "/iterate": iterate_flow,
    "/sleep": sleep,
}
"""Builtins that only need the execution context (its ``runtime``)."""


if TYPE_CHECKING:
    from ..base import PluginConfig

    class BuiltinPluginConfig(PluginConfig):
        """``type: builtin`` has no other keys (config.md §2.2); extras are only warned about."""

else:

    def __getattr__(name: str) -> Any:
        if name == "BuiltinPluginConfig":
            return _config_model()
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _config_model() -> type[BuiltinPluginConfig]:
    """``BuiltinPluginConfig``, built on first use: it is a pydantic model (pydantic costs ~50 ms to
    import) and a ``type: builtin`` entry without keys never needs it."""
    cls = globals().get("BuiltinPluginConfig")
    if cls is None:
        from ..base import PluginConfig

        class BuiltinPluginConfig(PluginConfig):
            """``type: builtin`` has no other keys (config.md §2.2); extras are only warned about."""

        BuiltinPluginConfig.__module__ = __name__
        globals()["BuiltinPluginConfig"] = cls = BuiltinPluginConfig
    return cls  # type: ignore[return-value]  # at run time, the class declared under TYPE_CHECKING


class _LazyConfigModel:
    """The ``config_model`` class attribute, resolved (and pydantic imported) on first access."""

    def __get__(self, obj: object, owner: type | None = None) -> type[BuiltinPluginConfig]:
        return _config_model()


class BuiltinPlugin:
    """The builtin components under their plugin-local names (``/eval``, ``/map``, ...)."""

    config_model: ClassVar[type[PluginConfig]] = _LazyConfigModel()  # type: ignore[assignment]
    config_optional: ClassVar[bool] = True
    """Without options the registry passes ``config=None`` instead of validating an empty mapping."""

    __slots__ = ("name", "_config", "_working_directory", "_openai")

    def __init__(self, name: str, config: BuiltinPluginConfig | None = None) -> None:
        self.name = name
        self._config = config
        self._working_directory = Path.cwd()
        self._openai = OpenAIClient()

    @property
    def config(self) -> BuiltinPluginConfig:
        """The validated config (an empty ``BuiltinPluginConfig`` when none was given)."""
        if self._config is None:
            self._config = _config_model()()
        return self._config

    async def start(self, ctx: PluginContext) -> None:
        """Remember the working directory that relative ``/load_file`` paths are joined onto."""
        self._working_directory = ctx.working_directory

    async def list_components(self) -> list[ComponentInfo]:
        return component_infos()

    def execute_inline(self, component: str, input: JsonValue, ctx: ExecutionContext) -> FlowResult | None:
        """The engine's sync fast path: ``/create_messages`` and ``/noop`` here, ``None`` (use
        ``execute``) otherwise.

        Raises:
            ComponentError: invalid ``/create_messages`` input.
        """
        if component == "/create_messages":
            return create_messages(input)
        if component == "/noop":
            return noop(input)
        return None

    async def execute(self, component: str, input: JsonValue, ctx: ExecutionContext) -> FlowResult:
        """Run one builtin. Business failures are returned; component errors raised."""
        handler = _RUNTIME_HANDLERS.get(component)
        if handler is not None:
            return await handler(input, ctx)
        if component == "/create_messages":
            return create_messages(input)
        if component == "/noop":
            return noop(input)
        if component == "/load_file":
            return await load_file(input, self._working_directory)
        if component == "/openai":
            return await self._openai.complete(input)
        raise UnknownComponentError(f"unknown builtin component {component!r}", plugin=self.name)

    async def close(self) -> None:
        await self._openai.aclose()
