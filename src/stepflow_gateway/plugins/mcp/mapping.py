"""Owns the translation between MCP and StepFlow values (mcp.md §2–3).

Pure functions, no I/O: a ``Tool`` becomes a ``ComponentInfo``; a ``CallToolResult`` becomes a
step output or a ``FlowResult.failed``; SDK errors become the exact failures and component-error
messages the spec gives. The plugin calls these on the hot path, so they stay lean.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from mcp.types import CallToolResult, TextContent, Tool

from ...core.result import FlowResult
from ...errors import ComponentError
from ..base import ComponentInfo

__all__ = [
    "CONTENT_ARRAY_SCHEMA",
    "OutputMode",
    "component_name",
    "connection_lost_message",
    "content_to_wire",
    "input_to_arguments",
    "mcp_error_result",
    "schema_error_message",
    "timeout_message",
    "tool_error_result",
    "tool_to_component",
    "unknown_component_message",
    "map_call_result",
    "map_plain_call_result",
]

OutputMode = Literal["auto", "structured", "content"]

CONTENT_ARRAY_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {"type": "object", "required": ["type"]},
}
"""The advertised output schema of a tool without ``outputSchema``: a list of content blocks."""


def component_name(tool_name: str) -> str:
    """The plugin-local component name of a tool: ``/`` + its name."""
    return "/" + tool_name


def tool_to_component(tool: Tool) -> ComponentInfo:
    """``ComponentInfo`` for a tool (mcp.md §2 table)."""
    return ComponentInfo(
        name=component_name(tool.name),
        description=tool.description or tool.title or "MCP tool",
        input_schema=tool.input_schema,
        output_schema=tool.output_schema if tool.output_schema is not None else CONTENT_ARRAY_SCHEMA,
    )


def input_to_arguments(tool_name: str, value: Any) -> dict[str, Any]:
    """The ``arguments`` of ``tools/call``: ``null`` is ``{}``; any other non-object is an error."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    raise ComponentError(
        f"MCP tool '{tool_name}' needs an object as input, got {_json_kind(value)}",
    )


def content_to_wire(blocks: Iterable[Any]) -> list[dict[str, Any]]:
    """Content blocks in wire form: camelCase keys, ``None`` fields dropped, order kept."""
    out: list[dict[str, Any]] = []
    for block in blocks:
        # Fast path for the common plain text block (model_dump costs ~10 µs per block).
        if type(block) is TextContent and block.annotations is None and block.meta is None:
            out.append({"type": "text", "text": block.text})
        else:
            out.append(block.model_dump(by_alias=True, mode="json", exclude_none=True))
    return out


def _error_text(blocks: Sequence[Any]) -> str:
    return "\n".join(b.text for b in blocks if getattr(b, "type", None) == "text")


def tool_error_result(tool_name: str, result: CallToolResult) -> FlowResult:
    """``isError: true`` → ``failed {500, "Tool '<t>' returned an error: <text>", data}``."""
    text = _error_text(result.content)
    message = f"Tool '{tool_name}' returned an error"
    if text:
        message = f"{message}: {text}"
    data: dict[str, Any] = {"tool": tool_name, "content": content_to_wire(result.content)}
    if result.structured_content is not None:
        data["structuredContent"] = result.structured_content
    return FlowResult.failed(500, message, data)


def map_call_result(tool_name: str, result: CallToolResult, mode: OutputMode = "auto") -> FlowResult:
    """Step result of a completed ``tools/call`` (mcp.md §3 table; ``mode`` per plugin config).

    Raises:
        ComponentError: ``mode='structured'`` and the tool sent nothing structured.
    """
    if result.is_error:
        return tool_error_result(tool_name, result)
    structured = result.structured_content
    if mode == "auto":
        if structured is not None:
            return FlowResult.success(structured)
        return FlowResult.success(content_to_wire(result.content))
    if mode == "content":
        return FlowResult.success(content_to_wire(result.content))
    if structured is not None:
        return FlowResult.success(structured)
    blocks = result.content
    if len(blocks) == 1 and type(blocks[0]) is TextContent:
        try:
            return FlowResult.success(json.loads(blocks[0].text))
        except ValueError:
            pass
    raise ComponentError(
        f"Tool '{tool_name}' returned no structured content (the plugin's output is 'structured')"
    )


_PLAIN_KEYS = frozenset(("content", "structuredContent", "isError"))


def map_plain_call_result(
    tool_name: str, raw: dict[str, Any], mode: OutputMode = "auto"
) -> FlowResult | None:
    """:func:`map_call_result` straight from a raw ``tools/call`` result, for the plain shape only.

    Plain: keys among ``content``/``structuredContent``/``isError``; ``content`` a list of exact
    ``{"type": "text", "text": <str>}`` blocks; ``structuredContent`` an object or absent;
    ``isError`` absent or ``false``. Such a result always passes the SDK's validation, and gives
    the same step result as :func:`map_call_result` on the validated model. Returns ``None`` for
    anything else (the caller validates and uses :func:`map_call_result`).

    Raises:
        ComponentError: ``mode='structured'`` and the tool sent nothing structured.
    """
    if not _PLAIN_KEYS.issuperset(raw):
        return None
    content = raw.get("content")
    if type(content) is not list or raw.get("isError", False) is not False:
        return None
    structured = raw.get("structuredContent")
    if structured is not None and type(structured) is not dict:
        return None
    blocks: list[dict[str, Any]] = []
    for block in content:
        if type(block) is not dict or len(block) != 2 or block.get("type") != "text":
            return None
        text = block.get("text")
        if type(text) is not str:
            return None
        blocks.append({"type": "text", "text": text})
    if structured is not None and mode != "content":
        return FlowResult.success(structured)
    if mode != "structured":
        return FlowResult.success(blocks)
    if len(blocks) == 1:
        try:
            return FlowResult.success(json.loads(blocks[0]["text"]))
        except ValueError:
            pass
    raise ComponentError(
        f"Tool '{tool_name}' returned no structured content (the plugin's output is 'structured')"
    )


def mcp_error_result(tool_name: str, code: int, message: str, data: Any = None) -> FlowResult:
    """A JSON-RPC error on ``tools/call``: upstream's code and message, plus ``data.mcpError``."""
    mcp_error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        mcp_error["data"] = data
    return FlowResult.failed(
        500, f"Tool '{tool_name}' execution failed", {"tool": tool_name, "mcpError": mcp_error}
    )


def timeout_message(method: str, tool_name: str | None, timeout_ms: int) -> str:
    """Stack entry of a timed-out request (mcp.md §3)."""
    what = f" ({tool_name})" if tool_name else ""
    return f"MCP request '{method}'{what} timed out after {timeout_ms} ms"


def connection_lost_message(detail: str) -> str:
    """Stack entry of a call interrupted by a dead server or a lost connection (mcp.md §3)."""
    return f"MCP connection lost: {detail}"


def schema_error_message(detail: str) -> str:
    """Stack entry of structured output failing the tool's own ``outputSchema`` (mcp.md §3)."""
    return f"structured content does not match the tool's output schema: {detail}"


def unknown_component_message(component: str) -> str:
    """The component error for a name the catalogue does not have (mcp.md §2)."""
    return f"unknown component: {component}"


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__
