"""Plugin types from entry points, and the set of started plugins that makes the discovery registry.

Owns: finding plugin types (the four types this package ships resolve from a static table, without
an ``importlib.metadata`` scan; any other type from the entry-point group ``stepflow_gateway.plugins``;
only the types a config uses are imported; a type that fails to import is reported, not fatal to
listing), creating
and starting each configured plugin (in config order, in the caller's task, so that every plugin's
resources are entered and exited in one task), listing components, and closing everything.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from ..errors import ConfigError, GatewayError, PluginStartError, unwrap_exception_group
from ..logging import get_logger
from .base import ComponentInfo, Plugin, PluginContext

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

__all__ = [
    "BUILTIN_TYPES",
    "ENTRY_POINT_GROUP",
    "PluginSet",
    "RegisteredComponent",
    "available_plugin_types",
    "load_plugin_type",
]

log = get_logger(__name__)

ENTRY_POINT_GROUP = "stepflow_gateway.plugins"
DEFAULT_START_TIMEOUT_S = 30.0


BUILTIN_TYPES: dict[str, str] = {
    "builtin": "stepflow_gateway.plugins.builtin:BuiltinPlugin",
    "mock": "stepflow_gateway.plugins.mock:MockPlugin",
    "stepflow": "stepflow_gateway.plugins.stepflow.plugin:StepflowPlugin",
    "mcp": "stepflow_gateway.plugins.mcp.plugin:McpPlugin",
}
"""The types this package ships (also registered as entry points, see pyproject.toml). Resolving
them here skips the entry-point scan (``importlib.metadata`` costs ~15-40 ms at start-up)."""


def available_plugin_types() -> dict[str, EntryPoint]:
    """Installed plugin types by ``type:`` name (an entry-point scan)."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _load_builtin_type(type_name: str, plugin_name: str) -> type[Any]:
    import importlib

    target = BUILTIN_TYPES[type_name]
    module_name, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)  # type: ignore[no-any-return]
    except Exception as exc:
        raise ConfigError(
            f"plugin type '{type_name}' ({target}) failed to import: {type(exc).__name__}: {exc}",
            plugin=plugin_name,
        ) from exc


def load_plugin_type(type_name: str, plugin_name: str) -> type[Any]:
    """Import the class for ``type_name``. Raises ``ConfigError`` naming the type and plugin."""
    if type_name in BUILTIN_TYPES:
        return _load_builtin_type(type_name, plugin_name)
    eps = available_plugin_types()
    ep = eps.get(type_name)
    if ep is None:
        known = ", ".join(sorted(eps)) or "none"
        raise ConfigError(
            f"unknown plugin type '{type_name}' (installed types: {known})",
            plugin=plugin_name,
            json_path=f"$.plugins.{plugin_name}.type",
        )
    try:
        return ep.load()  # type: ignore[no-any-return]
    except Exception as exc:
        raise ConfigError(
            f"plugin type '{type_name}' ({ep.value}) failed to import: {type(exc).__name__}: {exc}",
            plugin=plugin_name,
        ) from exc


@dataclass(slots=True)
class RegisteredComponent:
    """A component in the discovery registry."""

    public_path: str | None
    plugin: str
    info: ComponentInfo

    @property
    def reachable(self) -> bool:
        return self.public_path is not None

    def to_json(self) -> dict[str, Any]:
        out = self.info.to_json()
        out["component"] = self.public_path or self.info.name
        out["plugin"] = self.plugin
        out["localComponent"] = self.info.name
        if self.public_path is None:
            out["reachable"] = False
        return out


def _pydantic_message(exc: Any, plugin: str) -> str:
    parts = []
    for err in exc.errors():
        loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.get("loc", ()))
        parts.append(f"$.plugins.{plugin}{loc}: {err.get('msg')}")
    return "; ".join(parts)


class PluginSet:
    """The started plugins of one gateway. Use ``async with``; ``start_all`` may be bounded by a timeout."""

    def __init__(
        self,
        config: Any,
        runtime: Any,
        *,
        environ: Mapping[str, str] | None = None,
        only: set[str] | None = None,
    ) -> None:
        self.config = config
        self.runtime = runtime
        self.environ = dict(os.environ if environ is None else environ)
        # Configs may launch component servers written with our SDK under "the gateway's own
        # Python" without knowing where it lives; only used for ${...} substitution.
        self.environ.setdefault("STEPFLOW_GATEWAY_PYTHON", sys.executable)
        self.only = only
        self.plugins: dict[str, Plugin] = {}
        self.components: dict[str, list[ComponentInfo]] = {}
        self.failed: dict[str, str] = {}
        self._stops: dict[str, tuple[anyio.Event, anyio.Event]] = {}
        self._tg: Any = None

    def build(self, name: str, entry: Any) -> Plugin:
        from ..config.envsubst import substitute_plugin_options

        cls = load_plugin_type(entry.type, name)
        options = substitute_plugin_options(dict(entry.options), self.environ, plugin=name)
        if not options and getattr(cls, "config_optional", False):
            # A type that declares ``config_optional`` takes ``config=None`` for "no keys": no
            # config model to build or validate (``type: builtin`` is the common case).
            return cls(name, None)  # type: ignore[no-any-return]
        model = getattr(cls, "config_model", None)
        cfg: Any = options
        if model is not None:
            from pydantic import ValidationError

            try:
                cfg = model.model_validate(options)
            except ValidationError as exc:
                raise ConfigError(_pydantic_message(exc, name), plugin=name) from None
        return cls(name, cfg)  # type: ignore[no-any-return]

    async def start_all(self) -> None:
        """Build and start every configured plugin in config order; raise on the first failure.

        Each plugin lives in its own owner task in this set's task group, so that whatever
        ``start`` enters (task groups, subprocesses, sessions) is exited by ``close`` in that same
        task, and the start timeout's cancel scope never straddles the plugin's own scopes.
        """
        assert self._tg is not None, "use 'async with PluginSet(...)'"
        for name, entry in self.config.plugins.items():
            if self.only is not None and name not in self.only:
                continue
            plugin = self.build(name, entry)
            await self._start(name, plugin, entry)

    async def _start(self, name: str, plugin: Plugin, entry: Any) -> None:
        timeout = DEFAULT_START_TIMEOUT_S
        opt = entry.options.get("startTimeoutMs") if isinstance(entry.options, dict) else None
        if isinstance(opt, (int, float)) and opt > 0:
            timeout = opt / 1000.0
        ctx = PluginContext(
            plugin_name=name,
            working_directory=self.config.working_directory,
            runtime=self.runtime,
            environ=self.environ,
            retry=getattr(self.config, "retry", None),
            on_components_changed=lambda: self.refresh(name),
        )
        try:
            with anyio.fail_after(timeout):
                await self._tg.start(self._owner, name, plugin, ctx)
        except TimeoutError:
            raise PluginStartError(f"did not start within {timeout:g} s", plugin=name) from None
        except GatewayError as exc:
            if exc.plugin is None:
                exc.plugin = name
            raise
        except Exception as exc:
            raise PluginStartError(f"failed to start: {type(exc).__name__}: {exc}", plugin=name) from exc
        log.debug("plugin started", plugin=name, components=len(self.components[name]))

    async def _owner(self, name: str, plugin: Plugin, ctx: PluginContext, *, task_status: Any) -> None:
        stop = anyio.Event()
        closed = anyio.Event()
        try:
            try:
                await plugin.start(ctx)
                self.components[name] = list(await plugin.list_components())
            except BaseException:
                try:
                    await plugin.close()
                except Exception:
                    pass
                raise
            self.plugins[name] = plugin
            self._stops[name] = (stop, closed)
            task_status.started()
            await stop.wait()
        finally:
            if name in self.plugins:
                # No new cancel scope around close(): a plugin may exit scopes here that it entered
                # in start(), which is only legal when they are the innermost ones of this task.
                # Plugins bound their own shutdown waits.
                try:
                    await plugin.close()
                except Exception as exc:
                    log.warning("plugin close failed", plugin=name, error=str(exc))
                self.plugins.pop(name, None)
            closed.set()

    async def refresh(self, name: str) -> None:
        """Re-list one plugin's components (called on change notifications)."""
        plugin = self.plugins.get(name)
        if plugin is None:
            return
        try:
            with anyio.fail_after(DEFAULT_START_TIMEOUT_S):
                self.components[name] = list(await plugin.list_components())
        except Exception as exc:  # a failed refresh keeps the old list
            log.warning("component refresh failed", plugin=name, error=str(exc))

    async def close(self) -> None:
        """Close every plugin, last started first; errors are logged, never raised."""
        for name in reversed(list(self._stops)):
            stop, closed = self._stops.pop(name)
            stop.set()
            with anyio.CancelScope(shield=True), anyio.move_on_after(20):
                await closed.wait()

    async def __aenter__(self) -> PluginSet:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        try:
            await self.start_all()
        except BaseException as exc:
            await self.close()
            tg, self._tg = self._tg, None
            tg.cancel_scope.cancel()
            try:
                await tg.__aexit__(type(exc), exc, exc.__traceback__)
            except BaseExceptionGroup as group:
                # The task group wraps the start failure; callers want the error itself.
                raise unwrap_exception_group(group) from None
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self.close()
        finally:
            tg, self._tg = self._tg, None
            if tg is not None:
                tg.cancel_scope.cancel()
                await tg.__aexit__(None, None, None)

    def registry(self, router: Any) -> list[RegisteredComponent]:
        """Every component of every started plugin with its public path (``None`` if unreachable)."""
        out = []
        for name, comps in self.components.items():
            for info in comps:
                path = router.public_path(name, info.name) if router is not None else None
                out.append(RegisteredComponent(path, name, info))
        out.sort(key=lambda c: (c.public_path or c.info.name, c.plugin))
        return out
