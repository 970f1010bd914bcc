"""The mock plugin: behaviour lookup by JSON equality and the exact stacks of builtins.md §11.

The main fixture is upstream's own ``tests/mock/stepflow-config.yml`` (mapping keys that are
mappings), read with the gateway's YAML loader exactly as the config loader will.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from stepflow_gateway.core.result import FlowResult
from stepflow_gateway.errors import ComponentError, ConfigError
from stepflow_gateway.plugins.base import ExecutionContext, PluginContext
from stepflow_gateway.plugins.mock import MockPlugin, MockPluginConfig
from stepflow_gateway.yaml_loader import ComplexKeyMap, load_yaml

pytestmark = pytest.mark.anyio

UPSTREAM_CONFIG = Path("/work/shared/conformance/upstream/tests/mock/stepflow-config.yml")
UDF = {"error": "error executing user-defined function"}


class NoRuntime:
    """The mock never calls back into the runtime; any use is a bug."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"mock plugin used runtime.{name}")


CTX = ExecutionContext(runtime=NoRuntime(), run_id="r", flow_id="f", step_id="step1")  # type: ignore[arg-type]


def plugin_from_yaml(text: str, name: str = "mock") -> MockPlugin:
    """Build the plugin as the registry does: the plugin's mapping minus ``type``, validated."""
    mapping = dict(load_yaml(text).value["plugins"][name])
    assert mapping.pop("type") == "mock"
    return MockPlugin(name, MockPlugin.config_model.model_validate(mapping))


@pytest.fixture
def upstream() -> MockPlugin:
    return plugin_from_yaml(UPSTREAM_CONFIG.read_text(encoding="utf-8"))


def no_match(plugin: MockPlugin, component: str, input: Any) -> ComponentError:
    with pytest.raises(ComponentError) as info:
        plugin.execute_inline(component, input, CTX)
    return info.value


async def test_upstream_config_components_and_schemas(upstream: MockPlugin) -> None:
    await upstream.start(PluginContext("mock", Path("."), NoRuntime(), dict(os.environ)))  # type: ignore[arg-type]
    infos = await upstream.list_components()
    assert [i.name for i in infos] == ["/one_output", "/two_outputs", "/error", "/handle_skip"]
    assert all(i.description is None for i in infos)
    assert infos[0].input_schema == {"type": "object", "properties": {"input": {"type": "string"}}}
    assert infos[1].output_schema["properties"] == {"x": {"type": "integer"}, "y": {"type": "integer"}}
    assert infos[0].to_json()["component"] == "/one_output"
    await upstream.close()


async def test_upstream_behaviours(upstream: MockPlugin) -> None:
    run = upstream.execute_inline
    assert run("/one_output", {"input": "a"}, CTX) == FlowResult.success({"output": "b"})
    assert run("/two_outputs", {"input": "world"}, CTX) == FlowResult.success({"x": 2, "y": 8})
    assert run("/error", {"mode": "error"}, CTX) == FlowResult.failed(8, "error")
    assert run("/error", {"mode": "succeed"}, CTX) == FlowResult.success({"output": "succeeded"})
    assert run("/handle_skip", {"input": None}, CTX) == FlowResult.success({"output": "received null"})
    # The async path answers the same.
    with anyio.fail_after(10):
        assert await upstream.execute("/two_outputs", {"input": "b"}, CTX) == FlowResult.success(
            {"x": 1, "y": 2}
        )


async def test_no_behaviour_exact_stack(upstream: MockPlugin) -> None:
    err = no_match(upstream, "/one_output", {"input": "world"})
    assert err.stack == [UDF]
    assert err.attachments == ['No behavior defined for /one_output on {"input":"world"}']
    # The compact JSON keeps insertion order and does not escape non-ASCII.
    err = no_match(upstream, "/one_output", {"z": [1, 2.5], "input": "é"})
    assert err.attachments == ['No behavior defined for /one_output on {"z":[1,2.5],"input":"é"}']
    # Missing key, extra key and null-vs-absent all miss.
    assert no_match(upstream, "/one_output", {}).stack == [UDF]
    assert no_match(upstream, "/one_output", {"input": "a", "extra": 1}).stack == [UDF]
    assert no_match(upstream, "/handle_skip", {}).stack == [UDF]


async def test_unknown_component_stack(upstream: MockPlugin) -> None:
    err = no_match(upstream, "/nope", {"input": "a"})
    assert err.stack == [{"error": "error importing user-defined function"}]
    with pytest.raises(ComponentError):
        with anyio.fail_after(10):
            await upstream.execute("/nope", {}, CTX)


async def test_json_equality_key_order_and_number_kinds() -> None:
    plugin = plugin_from_yaml(
        """
plugins:
  m:
    type: mock
    components:
      /c:
        behaviors:
          { a: 1, b: [1, 2] }: { outcome: success, result: int }
          { a: 1.0, b: [1, 2] }: { outcome: success, result: float }
          { a: true, b: [1, 2] }: { outcome: success, result: bool }
          { input: "boom" }: { error: "internal failure" }
          { input: "skip" }: { outcome: skipped, reason: why }
          { input: "data" }: { outcome: failed, error: { code: 42, message: m, data: { k: [1] } } }
          "plain": { outcome: success, result: { nested: true } }
""",
        name="m",
    )
    run = plugin.execute_inline
    assert run("/c", {"b": [1, 2], "a": 1}, CTX).result == "int"  # key order does not matter
    assert run("/c", {"a": 1.0, "b": [1, 2]}, CTX).result == "float"  # 1 and 1.0 differ
    assert run("/c", {"a": True, "b": [1, 2]}, CTX).result == "bool"  # true and 1 differ
    assert no_match(plugin, "/c", {"a": 1, "b": [2, 1]}).stack == [UDF]  # arrays are ordered
    assert run("/c", "plain", CTX) == FlowResult.success({"nested": True})  # scalar keys mix in
    assert run("/c", {"input": "skip"}, CTX) == FlowResult.skipped("why")
    assert run("/c", {"input": "data"}, CTX) == FlowResult.failed(42, "m", {"k": [1]})
    err = no_match(plugin, "/c", {"input": "boom"})
    # ``{error: text}``: component error, the text is not in the stack.
    assert err.stack == [UDF]
    assert err.attachments == []
    assert "internal failure" not in json.dumps(err.stack)


async def test_default_schemas_and_json_config() -> None:
    # A JSON config (string keys only) built from plain data, schemas defaulted [gw].
    plugin = MockPlugin(
        "m",
        {
            "components": {
                "/echo": {
                    "behaviors": {"hi": {"outcome": "success", "result": "hello"}},
                    "inputSchema": {"ignored": True},
                }
            }
        },
    )
    [info] = await plugin.list_components()
    assert info.input_schema == {"type": "object"}
    assert info.output_schema == {"type": "object"}
    assert plugin.config.components["/echo"].model_extra == {"inputSchema": {"ignored": True}}
    assert plugin.execute_inline("/echo", "hi", CTX) == FlowResult.success("hello")
    assert MockPlugin("empty").config.components == {}


def test_string_error_codes_pass_through() -> None:
    # upstream HEAD's mock configs carry TaskErrorCode names (upstream issue #773)
    plugin = plugin_from_yaml(
        """
plugins:
  m:
    type: mock
    components:
      /error:
        behaviors:
          { mode: "error" }:
            outcome: failed
            error: {code: COMPONENT_FAILED, message: "error"}
          { mode: "old" }:
            outcome: failed
            error: {code: 500, message: "numeric", data: {k: 1}}
""",
        name="m",
    )
    got = plugin.execute_inline("/error", {"mode": "error"}, CTX)
    assert got == FlowResult.failed("COMPONENT_FAILED", "error")
    assert got.to_json() == {"outcome": "failed", "error": {"code": "COMPONENT_FAILED", "message": "error"}}
    old = plugin.execute_inline("/error", {"mode": "old"}, CTX)
    assert old.to_json()["error"] == {"code": 500, "message": "numeric", "data": {"k": 1}}
    assert type(old.to_json()["error"]["code"]) is int


def test_complex_key_map_is_accepted_directly() -> None:
    behaviors = ComplexKeyMap([({"input": "a"}, {"outcome": "success", "result": 1})])
    plugin = MockPlugin(
        "m", MockPluginConfig.model_validate({"components": {"/c": {"behaviors": behaviors}}})
    )
    assert plugin.execute_inline("/c", {"input": "a"}, CTX) == FlowResult.success(1)


@pytest.mark.parametrize(
    ("behaviour", "fragment"),
    [
        ({"outcome": "maybe"}, "expected {outcome: success"),
        ({"outcome": "failed", "error": {"code": 8.0, "message": "x"}}, "integer or string 'code'"),
        ({"outcome": "failed", "error": {"code": None, "message": "x"}}, "integer or string 'code'"),
        ({"outcome": "failed", "error": {"code": True, "message": "x"}}, "integer or string 'code'"),
        ({"outcome": "failed", "error": {"code": "X", "message": 1}}, "string 'message'"),
        ({"outcome": "failed"}, "needs 'error"),
        ("just text", "expected an object"),
    ],
)
def test_invalid_behaviour_is_a_config_error(behaviour: Any, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        MockPlugin("m", {"components": {"/c": {"behaviors": {"k": behaviour}}}})
    text = str(info.value)
    assert fragment in text
    assert "plugin 'm'" in text
    assert "$.plugins.m.components['/c'].behaviors[\"k\"]" in text


def test_behaviours_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError) as info:
        MockPlugin("m", {"components": {"/c": {"behaviors": [1, 2]}}})
    assert "expected a mapping" in str(info.value)
