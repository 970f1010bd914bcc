"""``MockPlugin`` (config type ``mock``): canned component behaviours for tests (builtins.md §11).

Owns the mock config model (config.md §2.5), the behaviour table and its lookup. Each component's
``behaviors`` maps a whole expected step input (any YAML value; the YAML loader gives a plain dict
for scalar keys and a ``ComplexKeyMap`` of ``(key, value)`` pairs when some key is a mapping) to one of:

* ``{outcome: success, result: X}`` → success ``X``;
* ``{outcome: failed, error: {code, message, data?}}`` → that business failure, unchanged (``code``
  an integer, or a string such as upstream HEAD's ``COMPONENT_FAILED``);
* ``{outcome: skipped, reason?}`` → skipped **[gw]**;
* ``{error: "<text>"}`` → a component error (the text is not surfaced, as upstream).

Behaviours are parsed once, when the plugin is built, into a dict keyed by ``freeze(input)``
(JSON equality: key order ignored, ``1`` ≠ ``1.0``), so a call is one hash lookup. Every call is
served by the synchronous ``execute_inline`` fast path.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from ..core.result import FlowResult
from ..errors import ComponentError, ConfigError
from ..jsonutil import dumps_compact, freeze
from ..types import JsonValue
from .base import ComponentInfo, ExecutionContext, PluginConfig, PluginContext

__all__ = ["MockComponentConfig", "MockPlugin", "MockPluginConfig"]

UDF_EXECUTION = "error executing user-defined function"
UDF_IMPORT = "error importing user-defined function"


def _object_schema() -> dict[str, Any]:
    return {"type": "object"}


class MockComponentConfig(BaseModel):
    """One mocked component. The schemas are required upstream; **[gw]** they default to ``{type: object}``.

    Upstream ignores the camelCase ``inputSchema``/``outputSchema`` keys, so they are not aliases:
    they land in ``model_extra`` and are warned about like any unknown key.
    """

    model_config = ConfigDict(extra="allow")

    input_schema: JsonValue = Field(default_factory=_object_schema)
    output_schema: JsonValue = Field(default_factory=_object_schema)
    behaviors: Any = None
    """A mapping (``dict`` or ``yaml_loader.ComplexKeyMap``) from expected input to behaviour."""


class MockPluginConfig(PluginConfig):
    """``type: mock``: ``components: {<plugin-local name>: MockComponentConfig}``."""

    components: dict[str, MockComponentConfig] = Field(default_factory=dict)


class _ErrorBehaviour:
    """``{error: "<text>"}``: raise a component error (``text`` only goes to the log/exception)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


@dataclass(slots=True)
class _MockComponent:
    name: str
    input_schema: JsonValue
    output_schema: JsonValue
    behaviors: dict[Any, FlowResult | _ErrorBehaviour]


def _pairs(behaviors: Any) -> Iterable[tuple[Any, Any]]:
    """The ``(expected input, behaviour)`` pairs of a behaviours mapping, in file order."""
    if behaviors is None:
        return ()
    if isinstance(behaviors, Mapping):
        return behaviors.items()
    if isinstance(behaviors, list):  # ComplexKeyMap: a list of (key, value) pairs
        if all(isinstance(p, tuple) and len(p) == 2 for p in behaviors):
            return behaviors
    raise TypeError(f"expected a mapping from input to behaviour, got {type(behaviors).__name__}")


def _parse_behaviour(value: Any) -> FlowResult | _ErrorBehaviour:
    """One behaviour value; raises ``ValueError`` with what was expected."""
    if not isinstance(value, dict):
        raise ValueError(f"expected an object with 'outcome' or 'error', got {dumps_compact(value)}")
    error = value.get("error")
    # Upstream's untagged enum tries ``{error: String}`` first, then a flattened FlowResult.
    if isinstance(error, str):
        return _ErrorBehaviour(error)
    outcome = value.get("outcome")
    if outcome == "success":
        return FlowResult.success(value.get("result"))
    if outcome == "failed":
        if not isinstance(error, dict):
            raise ValueError("'outcome: failed' needs 'error: {code, message, data?}'")
        code, message = error.get("code"), error.get("message")
        if (code.__class__ is not int and code.__class__ is not str) or not isinstance(message, str):
            raise ValueError("'error' needs an integer or string 'code' and a string 'message'")
        if "data" in error:
            return FlowResult.failed(code, message, error["data"])
        return FlowResult.failed(code, message)
    if outcome == "skipped":
        reason = value.get("reason")
        return FlowResult.skipped(reason if isinstance(reason, str) else None)
    raise ValueError(
        "expected {outcome: success, result}, {outcome: failed, error: {code, message}}, "
        "{outcome: skipped} or {error: <text>}"
    )


def _build_components(plugin: str, config: MockPluginConfig) -> dict[str, _MockComponent]:
    components: dict[str, _MockComponent] = {}
    for name, comp in config.components.items():
        where = f"$.plugins.{plugin}.components['{name}'].behaviors"
        table: dict[Any, FlowResult | _ErrorBehaviour] = {}
        try:
            pairs = _pairs(comp.behaviors)
        except TypeError as exc:
            raise ConfigError(str(exc), plugin=plugin, json_path=where) from None
        for key, value in pairs:
            try:
                table[freeze(key)] = _parse_behaviour(value)
            except (ValueError, TypeError) as exc:
                raise ConfigError(
                    f"invalid behaviour: {exc}", plugin=plugin, json_path=f"{where}[{dumps_compact(key)}]"
                ) from None
        components[name] = _MockComponent(name, comp.input_schema, comp.output_schema, table)
    return components


class MockPlugin:
    """Looks the whole resolved step input up in the component's behaviours (builtins.md §11)."""

    config_model: ClassVar[type[PluginConfig]] = MockPluginConfig

    __slots__ = ("name", "config", "_components")

    def __init__(self, name: str, config: MockPluginConfig | Mapping[str, Any] | None = None) -> None:
        """Raises ``ConfigError`` naming the component and behaviour key for a malformed behaviour."""
        if config is None:
            config = MockPluginConfig()
        elif not isinstance(config, MockPluginConfig):
            config = MockPluginConfig.model_validate(config)
        self.name = name
        self.config = config
        self._components = _build_components(name, config)

    async def start(self, ctx: PluginContext) -> None:
        return None

    async def list_components(self) -> list[ComponentInfo]:
        return [
            ComponentInfo(c.name, None, c.input_schema, c.output_schema) for c in self._components.values()
        ]

    def execute_inline(self, component: str, input: JsonValue, ctx: ExecutionContext) -> FlowResult:
        """Every mock call is served here (no I/O).

        Raises:
            ComponentError: unknown component, no behaviour for the input, or an ``{error}`` behaviour.
        """
        comp = self._components.get(component)
        if comp is None:
            raise ComponentError(
                f"mock plugin '{self.name}' has no component {component}",
                stack=[{"error": UDF_IMPORT}],
                attachments=[component],
            )
        behaviour = comp.behaviors.get(freeze(input))
        if behaviour.__class__ is FlowResult:
            return behaviour
        if behaviour is None:
            detail = f"No behavior defined for {component} on {dumps_compact(input)}"
            raise ComponentError(detail, stack=[{"error": UDF_EXECUTION}], attachments=[detail])
        assert isinstance(behaviour, _ErrorBehaviour)
        raise ComponentError(
            f"mock component {component} failed: {behaviour.text}", stack=[{"error": UDF_EXECUTION}]
        )

    async def execute(self, component: str, input: JsonValue, ctx: ExecutionContext) -> FlowResult:
        return self.execute_inline(component, input, ctx)

    async def close(self) -> None:
        return None
