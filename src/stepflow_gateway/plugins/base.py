"""The plugin API: what a component source implements and what the runtime gives it.

A plugin *type* is a class registered under the entry-point group ``stepflow_gateway.plugins``; the
entry name is the ``type:`` value of the config. The runtime:

1. validates the plugin's config mapping (minus ``type``) with ``PluginType.config_model``;
2. constructs ``PluginType(name, config)``;
3. ``await plugin.start(ctx)`` (bounded by the plugin's start timeout);
4. ``await plugin.list_components()`` for the discovery registry;
5. ``await plugin.execute(component, input, exec_ctx)`` for each step routed to it;
6. ``await plugin.close()`` at shutdown (always, also after a failed start).

``execute`` returns a ``FlowResult``: ``success(output)`` or a business failure
``failed(code, message)`` passed through unchanged. It *raises* ``ComponentError`` (or another
``PluginError``) for component errors; the engine turns those into
``failed {500, 'step "<id>" failed', data: {stack: [...]}}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from ..core.result import FlowResult
from ..types import JsonValue

__all__ = [
    "ComponentInfo",
    "ExecutionContext",
    "Plugin",
    "PluginConfig",
    "PluginContext",
    "RunInfo",
    "RuntimeAPI",
]


if TYPE_CHECKING:
    from pydantic import BaseModel

    class PluginConfig(BaseModel):
        """Base for plugin config models. Unknown keys are kept in ``model_extra`` (for warnings)."""

else:

    def __getattr__(name: str) -> Any:
        # ``PluginConfig`` is a pydantic model, and pydantic costs ~50 ms to import: it is built on
        # first access, so that a run whose plugins need no config model never loads pydantic.
        if name == "PluginConfig":
            from pydantic import BaseModel, ConfigDict

            class PluginConfig(BaseModel):
                """Base for plugin config models. Unknown keys are kept in ``model_extra`` (for warnings)."""

                model_config = ConfigDict(extra="allow", populate_by_name=True)

            PluginConfig.__module__ = __name__
            PluginConfig.__qualname__ = "PluginConfig"
            globals()["PluginConfig"] = PluginConfig
            return PluginConfig
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(slots=True)
class ComponentInfo:
    """One component as a plugin lists it (``name`` is plugin-local and starts with ``/``)."""

    name: str
    description: str | None = None
    input_schema: JsonValue = None
    output_schema: JsonValue = None

    def to_json(self) -> dict[str, Any]:
        """The protocol/REST shape: ``{component, description?, input_schema?, output_schema?}``."""
        out: dict[str, Any] = {"component": self.name}
        if self.description is not None:
            out["description"] = self.description
        if self.input_schema is not None:
            out["input_schema"] = self.input_schema
        if self.output_schema is not None:
            out["output_schema"] = self.output_schema
        return out


@dataclass(slots=True)
class RunInfo:
    """The status of a run as the ``runs/*`` callbacks and nested-run builtins see it."""

    run_id: str
    flow_id: str
    status: str
    """``running`` | ``completed`` | ``failed`` | ``cancelled``."""
    results: list[FlowResult | None] = field(default_factory=list)
    """One entry per input item, in input order; ``None`` while the item is still running."""
    created_at: str = ""
    completed_at: str | None = None


class RuntimeAPI(Protocol):
    """What a component can ask of the runtime while it executes (the callback surface)."""

    async def put_blob(self, data: JsonValue, blob_type: str = "data") -> str:
        """Store ``data``; return its blob id. ``blob_type='flow'`` validates it as a flow."""
        ...

    async def get_blob(self, blob_id: str) -> tuple[JsonValue, str]:
        """Return ``(data, blob_type)``. Raises ``GatewayError`` (code 404) for an unknown id."""
        ...

    async def submit_run(
        self,
        flow_id: str,
        inputs: list[JsonValue],
        *,
        wait: bool = True,
        max_concurrency: int | None = None,
        overrides: Mapping[str, Any] | None = None,
        parent: ExecutionContext | None = None,
    ) -> RunInfo:
        """Start a nested run of a stored flow; with ``wait`` return only once every item finished."""
        ...

    async def get_run(
        self,
        run_id: str,
        *,
        wait: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 (public API)
    ) -> RunInfo:
        """Status (and results so far) of a run; with ``wait`` block until it finishes."""
        ...

    async def flow_metadata(self, flow_id: str, step_id: str | None = None) -> dict[str, Any]:
        """``{flow_metadata, step_metadata?}`` of a stored flow (G0 ``flows/get_metadata``)."""
        ...


@dataclass(slots=True)
class ExecutionContext:
    """Everything a plugin may use while executing one component call."""

    runtime: RuntimeAPI
    run_id: str
    flow_id: str
    step_id: str
    item_index: int = 0
    attempt: int = 1
    root_run_id: str | None = None
    """The top-level run of a tree of nested runs (``run_id`` when this run is top level)."""
    cancel_token: Any = None
    """Reserved: an ``anyio.Event`` set when the run is cancelled (plugins may forward cancels)."""
    retry: int = 0
    """How many earlier tries of this step failed and were retried (``onError: retry``)."""
    subruns: int = 0
    """Sub-runs started so far by this call; numbers the next one (its id is derived from it)."""

    @property
    def idempotency_key(self) -> str:
        """``{runId}/{item}/{stepId}``: the same for every try of this step of this item."""
        return f"{self.run_id}/{self.item_index}/{self.step_id}"

    def observability(self) -> dict[str, Any]:
        """The ``observability`` object of ``components/execute`` (protocol.md)."""
        return {
            "run_id": self.run_id,
            "flow_id": self.flow_id,
            "step_id": self.step_id,
            # a string: SDK contexts keep only string fields. With it, a callback of one item of a
            # batch is told apart from the same step's callbacks of the other items.
            "item_index": str(self.item_index),
        }


@dataclass(slots=True)
class PluginContext:
    """What a plugin gets at start."""

    plugin_name: str
    working_directory: Path
    runtime: RuntimeAPI
    environ: Mapping[str, str]
    """The gateway's process environment (for ``${VAR}`` substitution and the child base env)."""
    retry: Any = None
    """The config's ``retry`` section (``config.model.RetryConfig``)."""
    on_components_changed: Callable[[], Awaitable[None] | None] | None = None
    """Call when the plugin's component list changed (e.g. MCP ``tools/list_changed``)."""


@runtime_checkable
class Plugin(Protocol):
    """A running component source. See the module docstring for the lifecycle."""

    config_model: ClassVar[type[PluginConfig]]
    name: str

    async def start(self, ctx: PluginContext) -> None: ...

    async def list_components(self) -> list[ComponentInfo]: ...

    async def execute(self, component: str, input: JsonValue, ctx: ExecutionContext) -> FlowResult: ...

    async def close(self) -> None: ...
