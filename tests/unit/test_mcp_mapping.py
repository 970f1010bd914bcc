"""MCP ↔ StepFlow value mapping, the plugin config model and catalogue lookup (mcp.md §2–3)."""

from __future__ import annotations

import datetime

import pytest
from mcp.types import CallToolResult, ImageContent, ServerCapabilities, TextContent, Tool
from pydantic import ValidationError

from stepflow_gateway.errors import ComponentError
from stepflow_gateway.plugins.mcp import McpPluginConfig
from stepflow_gateway.plugins.mcp._catalogue import build_catalogue, json_path
from stepflow_gateway.plugins.mcp._connection import child_env
from stepflow_gateway.plugins.mcp.mapping import (
    CONTENT_ARRAY_SCHEMA,
    content_to_wire,
    input_to_arguments,
    map_call_result,
    mcp_error_result,
    timeout_message,
    tool_to_component,
)

SCHEMA = {"type": "object", "properties": {"a": {"type": "number"}}, "required": ["a"]}


def _text(text: str) -> TextContent:
    return TextContent(type="text", text=text)


def test_tool_to_component() -> None:
    plain = tool_to_component(Tool(name="echo", input_schema=SCHEMA, description="Echoes"))
    assert plain.to_json() == {
        "component": "/echo",
        "description": "Echoes",
        "input_schema": SCHEMA,
        "output_schema": CONTENT_ARRAY_SCHEMA,
    }
    titled = tool_to_component(
        Tool(name="t", title="Title", input_schema=SCHEMA, output_schema={"type": "object"})
    )
    assert titled.description == "Title" and titled.output_schema == {"type": "object"}
    assert tool_to_component(Tool(name="x", input_schema=SCHEMA)).description == "MCP tool"


def test_success_prefers_structured_content() -> None:
    result = CallToolResult(content=[_text('{"t": 1}')], structured_content={"t": 1})
    assert map_call_result("w", result).to_json() == {"outcome": "success", "result": {"t": 1}}
    assert map_call_result("w", result, "content").result == [{"type": "text", "text": '{"t": 1}'}]
    assert map_call_result("w", result, "structured").result == {"t": 1}


def test_success_without_structured_content_is_the_content_array() -> None:
    image = ImageContent(type="image", data="AAAA", mime_type="image/png")
    result = CallToolResult(content=[_text("hi"), image])
    assert map_call_result("echo", result).result == [
        {"type": "text", "text": "hi"},
        {"type": "image", "data": "AAAA", "mimeType": "image/png"},
    ]


def test_structured_mode_parses_a_lone_json_text_block() -> None:
    assert map_call_result("q", CallToolResult(content=[_text("[1, 2]")]), "structured").result == [1, 2]
    with pytest.raises(ComponentError, match="Tool 'q' returned no structured content"):
        map_call_result("q", CallToolResult(content=[_text("not json")]), "structured")


def test_is_error_becomes_a_failure_with_the_servers_text() -> None:
    result = CallToolResult(content=[_text("bad zone"), _text("second line")], is_error=True)
    assert map_call_result("get_time", result).to_json() == {
        "outcome": "failed",
        "error": {
            "code": 500,
            "message": "Tool 'get_time' returned an error: bad zone\nsecond line",
            "data": {
                "tool": "get_time",
                "content": [{"type": "text", "text": "bad zone"}, {"type": "text", "text": "second line"}],
            },
        },
    }
    no_text = CallToolResult(content=[], structured_content={"why": "x"}, is_error=True)
    failed = map_call_result("t", no_text)
    assert failed.error is not None
    assert failed.error.message == "Tool 't' returned an error"
    assert failed.error.data == {"tool": "t", "content": [], "structuredContent": {"why": "x"}}


def test_json_rpc_error_keeps_upstream_code_and_message() -> None:
    assert mcp_error_result("t", -32602, "Unknown tool: t", {"x": 1}).to_json() == {
        "outcome": "failed",
        "error": {
            "code": 500,
            "message": "Tool 't' execution failed",
            "data": {
                "tool": "t",
                "mcpError": {"code": -32602, "message": "Unknown tool: t", "data": {"x": 1}},
            },
        },
    }
    assert "data" not in mcp_error_result("t", -1, "m").error.data["mcpError"]  # type: ignore[union-attr]


def test_arguments_and_messages() -> None:
    assert input_to_arguments("t", None) == {}
    assert input_to_arguments("t", {"a": 1}) == {"a": 1}
    with pytest.raises(ComponentError, match="needs an object as input, got a string"):
        input_to_arguments("t", "x")
    assert (
        timeout_message("tools/call", "slow", 500) == "MCP request 'tools/call' (slow) timed out after 500 ms"
    )


def test_content_to_wire_keeps_annotations_and_meta() -> None:
    block = TextContent(type="text", text="hi", annotations={"priority": 0.5}, _meta={"k": "v"})
    assert content_to_wire([block]) == [
        {"type": "text", "text": "hi", "annotations": {"priority": 0.5}, "_meta": {"k": "v"}}
    ]


def test_config_shapes() -> None:
    stdio = McpPluginConfig.model_validate({"command": "srv", "args": ["--x"], "env": {"A": "1"}})
    assert stdio.transport == "stdio" and stdio.timeout_s == 30.0 and stdio.mode == "auto"
    http = McpPluginConfig.model_validate(
        {"url": "http://127.0.0.1:1/mcp", "timeoutMs": 0, "maxConcurrency": 2}
    )
    assert http.transport == "http" and http.timeout_s is None and http.max_concurrency == 2
    # an unquoted YAML 1.1 date
    dated = McpPluginConfig.model_validate({"command": "srv", "mode": datetime.date(2026, 7, 28)})
    assert dated.mode == "2026-07-28"
    for bad, why in (
        ({"command": "a", "url": "http://x"}, "not both"),
        ({"transport": "sse"}, "needs 'url'"),
        ({"command": "a", "mode": "fast"}, "mode must be one of"),
        ({"command": "a", "timeoutMs": -1}, "greater than or equal"),
    ):
        with pytest.raises(ValidationError, match=why):
            McpPluginConfig.model_validate(bad)
    assert McpPluginConfig.model_validate({"command": "a", "bogus": 1}).model_extra == {"bogus": 1}


def test_child_env_is_the_minimal_base_plus_configured() -> None:
    environ = {"PATH": "/bin", "HOME": "/h", "SECRET": "x", "TERM": "dumb"}
    assert child_env(environ, {"TERM": "xterm", "TZ": "UTC"}) == {
        "HOME": "/h",
        "PATH": "/bin",
        "TERM": "xterm",
        "TZ": "UTC",
    }


def test_catalogue_lookup_and_validation() -> None:
    tools = [Tool(name="get-sum", input_schema=SCHEMA), Tool(name="read", input_schema={"type": "object"})]
    caps = ServerCapabilities(resources={"subscribe": False})
    catalogue = build_catalogue(tools, caps)
    names = [c.name for c in catalogue.components]
    assert names == ["/get-sum", "/read", "/resources/list", "/resources/read"]
    assert catalogue.resolve("/get-sum") == (True, "get-sum")
    assert catalogue.resolve("/resources/read") == (False, "/resources/read")  # extra before tail rule
    assert catalogue.resolve("/x/y/get-sum") == (True, "get-sum")  # upstream's last-segment rule
    assert catalogue.resolve("/nope") is None
    assert catalogue.validate("get-sum", {"a": "x"}) == ["$.a: 'x' is not of type 'number'"]
    assert json_path(["a", 0, "b c"]) == "$.a[0]['b c']"
