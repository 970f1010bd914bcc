"""Support for the engine semantics tests: a real ``Gateway`` with builtin, mock and probe plugins.

The *probe* plugin is a tiny test-only implementation of the plugin API (``plugins/base.py``). The
config declares a plugin named ``probe`` (of type ``builtin``, so the config loader accepts it) and
routes ``/probe/{*component}`` to it; once the gateway has started, the started builtin object is
replaced by a ``ProbePlugin`` in the plugin set, which the dispatcher shares. Everything else — the
router, the executor, the mock and builtin plugins — is the real thing.

Probe components (plugin-local names):

* ``/echo``: returns its input.
* ``/gate``: ``{gate: name, n: k}`` waits until ``k`` calls of that gate are in flight at once, then
  returns its input. It can only finish if the calls really overlap.
* ``/slow``: ``{ms?: int}`` yields for a few ms and returns its input; tracks peak concurrency.
* ``/flaky``: ``{succeed_on?: int, business?: bool}`` fails until ``attempt == succeed_on``
  (always, without it); returns ``{attempt}`` on success.
* ``/fail``: ``{code, message}`` returns that business failure.
* ``/boom``: raises ``ComponentError``.
* ``/skipme``: returns a skipped result.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import anyio

from stepflow_gateway.config.load import load_config, parse_config
from stepflow_gateway.core.result import FlowResult
from stepflow_gateway.errors import ComponentError
from stepflow_gateway.gateway import Gateway
from stepflow_gateway.plugins.base import ComponentInfo, ExecutionContext, PluginConfig, PluginContext


@dataclass(slots=True)
class Call:
    step_id: str
    component: str
    input: Any
    attempt: int
    item_index: int
    at: float


@dataclass
class ProbePlugin:
    """A test plugin that records every call (see the module docstring)."""

    config_model: ClassVar[type[PluginConfig]] = PluginConfig
    name: str = "probe"
    calls: list[Call] = field(default_factory=list)
    in_flight: int = 0
    peak: int = 0
    gates: dict[str, int] = field(default_factory=dict)
    gate_events: dict[str, anyio.Event] = field(default_factory=dict)

    async def start(self, ctx: PluginContext) -> None:
        return None

    async def list_components(self) -> list[ComponentInfo]:
        return [ComponentInfo(n) for n in ("/echo", "/gate", "/slow", "/flaky", "/fail", "/boom", "/skipme")]

    def called(self, step_id: str) -> list[Call]:
        return [c for c in self.calls if c.step_id == step_id]

    async def execute(self, component: str, input: Any, ctx: ExecutionContext) -> FlowResult:
        self.calls.append(Call(ctx.step_id, component, input, ctx.attempt, ctx.item_index, time.monotonic()))
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            return await self._execute(component, input, ctx)
        finally:
            self.in_flight -= 1

    async def _execute(self, component: str, input: Any, ctx: ExecutionContext) -> FlowResult:
        if component == "/echo":
            return FlowResult.success(input)
        if component == "/gate":
            name, n = input["gate"], input["n"]
            self.gates[name] = self.gates.get(name, 0) + 1
            event = self.gate_events.setdefault(name, anyio.Event())
            if self.gates[name] >= n:
                event.set()
            with anyio.fail_after(5):
                await event.wait()
            return FlowResult.success(input)
        if component == "/slow":
            ms = (input or {}).get("ms", 5) if isinstance(input, dict) else 5
            await anyio.sleep(ms / 1000)
            return FlowResult.success(input)
        if component == "/flaky":
            succeed_on = input.get("succeed_on") if isinstance(input, dict) else None
            if succeed_on is not None and ctx.attempt >= succeed_on:
                return FlowResult.success({"attempt": ctx.attempt})
            if isinstance(input, dict) and input.get("business"):
                return FlowResult.failed(7, f"attempt {ctx.attempt} failed")
            raise ComponentError(f"attempt {ctx.attempt} failed")
        if component == "/fail":
            return FlowResult.failed(input["code"], input["message"])
        if component == "/boom":
            raise ComponentError("kaboom")
        if component == "/skipme":
            return FlowResult.skipped("probe skipped")
        raise ComponentError(f"probe has no component {component}")

    async def close(self) -> None:
        return None


BASE_ROUTES = {
    "/builtin/{*component}": [{"plugin": "builtin"}],
    "/mock/{*component}": [{"plugin": "mock"}],
    "/probe/{*component}": [{"plugin": "probe"}],
}


def base_config(mock_components: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "plugins": {
            "builtin": {"type": "builtin"},
            "mock": {"type": "mock", "components": mock_components or {}},
            "probe": {"type": "builtin"},
        },
        "routes": dict(BASE_ROUTES),
    }


def mock_behaviours(component: str, table: dict[Any, Any]) -> dict[str, Any]:
    """``{component: {behaviors: {input: {outcome: success, result: output}}}}`` for string/number inputs."""
    return {component: {"behaviors": {k: {"outcome": "success", "result": v} for k, v in table.items()}}}


OpenGateway = Callable[..., Any]


def make_open_gw(tmp_path: Path) -> OpenGateway:
    """``async with open_gw(mock_components=..., config_yaml=...) as (gw, probe)``.

    ``config_yaml`` (a complete config file text) is for object-keyed mock behaviours; it must
    declare the ``probe`` plugin (type builtin) and its route when the probe is used.
    """

    @asynccontextmanager
    async def _open(
        mock_components: dict[str, Any] | None = None, *, config_yaml: str | None = None
    ) -> AsyncIterator[tuple[Gateway, ProbePlugin]]:
        if config_yaml is not None:
            path = tmp_path / "stepflow-config.yml"
            path.write_text(config_yaml, encoding="utf-8")
            config = load_config(path, default_working_dir=tmp_path).config
        else:
            config = parse_config(base_config(mock_components), source=None, working_dir=tmp_path).config
        probe = ProbePlugin()
        # One bound for start, the test body and shutdown (the gateway's own task groups must be
        # entered and exited inside the same cancel scope).
        with anyio.fail_after(60):
            async with Gateway(config) as gw:
                assert gw.plugin_set is not None and gw.dispatch is not None
                if "probe" in gw.plugin_set.plugins:
                    gw.plugin_set.plugins["probe"] = probe
                    assert gw.dispatch.plugins["probe"] is probe
                yield gw, probe

    return _open


def states(handle: Any, item: int = 0) -> dict[str, str]:
    """``{step id: status}`` of one item of a finished run."""
    return {step.id: status for it, _i, step, status, *_ in handle.execution.step_states() if it == item}
