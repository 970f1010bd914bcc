"""Owns the non-tool components of an MCP plugin: resources and prompts.

mcp.md names no components for them, so the gateway picks these plugin-local names (listed only
when the server advertises the capability, and never shadowing a tool of the same name):

| component | input | output |
|---|---|---|
| ``/resources/list`` | ``{}`` | ``{"resources": [...]}`` (all pages, wire form) |
| ``/resources/read`` | ``{uri}`` | ``{"contents": [...]}`` (wire form) |
| ``/prompts/list`` | ``{}`` | ``{"prompts": [...]}`` (all pages, wire form) |
| ``/prompts/get`` | ``{name, arguments?}`` | ``{"description"?, "messages": [...]}`` (wire form) |
"""

from __future__ import annotations

from typing import Any

from mcp import Client

from ...core.result import FlowResult
from ...errors import ComponentError, ProtocolError
from ..base import ComponentInfo

__all__ = ["EXTRA_COMPONENTS", "call_extra"]

_MAX_PAGES = 1000
_EMPTY_INPUT = {"type": "object", "properties": {}}

EXTRA_COMPONENTS: tuple[ComponentInfo, ...] = (
    ComponentInfo(
        "/resources/list",
        "List the MCP server's resources (all pages)",
        _EMPTY_INPUT,
        {"type": "object", "properties": {"resources": {"type": "array"}}, "required": ["resources"]},
    ),
    ComponentInfo(
        "/resources/read",
        "Read one MCP resource by URI",
        {"type": "object", "properties": {"uri": {"type": "string"}}, "required": ["uri"]},
        {"type": "object", "properties": {"contents": {"type": "array"}}, "required": ["contents"]},
    ),
    ComponentInfo(
        "/prompts/list",
        "List the MCP server's prompts (all pages)",
        _EMPTY_INPUT,
        {"type": "object", "properties": {"prompts": {"type": "array"}}, "required": ["prompts"]},
    ),
    ComponentInfo(
        "/prompts/get",
        "Render one MCP prompt",
        {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "arguments": {"type": "object", "additionalProperties": {"type": "string"}},
            },
            "required": ["name"],
        },
        {"type": "object", "properties": {"messages": {"type": "array"}}, "required": ["messages"]},
    ),
)

_WIRE = {"by_alias": True, "mode": "json", "exclude_none": True}


def _dump(items: Any) -> list[dict[str, Any]]:
    return [item.model_dump(**_WIRE) for item in items]


def _require_str(value: dict[str, Any], key: str, component: str) -> str:
    got = value.get(key)
    if not isinstance(got, str):
        raise ComponentError(f"{component} needs a string '{key}' in its input")
    return got


async def call_extra(client: Client, component: str, value: Any) -> FlowResult:
    """Run one extra component on ``client``; ``MCPError`` and timeouts propagate to the caller.

    Raises:
        ComponentError: the input has the wrong shape.
    """
    args: dict[str, Any] = {} if value is None else value
    if not isinstance(args, dict):
        raise ComponentError(f"{component} needs an object as input")
    if component == "/resources/read":
        result = await client.read_resource(_require_str(args, "uri", component), cache_mode="bypass")
        return FlowResult.success({"contents": _dump(result.contents)})
    if component == "/prompts/get":
        prompt_args = args.get("arguments")
        if prompt_args is not None and not (
            isinstance(prompt_args, dict) and all(isinstance(v, str) for v in prompt_args.values())
        ):
            raise ComponentError(f"{component}: 'arguments' must be an object of strings")
        got = await client.get_prompt(_require_str(args, "name", component), prompt_args)
        out: dict[str, Any] = {}
        if got.description is not None:
            out["description"] = got.description
        out["messages"] = _dump(got.messages)
        return FlowResult.success(out)
    if component == "/resources/list":
        return FlowResult.success({"resources": await _all_pages(client.list_resources, "resources")})
    if component == "/prompts/list":
        return FlowResult.success({"prompts": await _all_pages(client.list_prompts, "prompts")})
    raise ComponentError(f"unknown component: {component}")


async def _all_pages(fetch: Any, attr: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    seen: set[str] = set()
    for _ in range(_MAX_PAGES):
        page = await fetch(cursor=cursor, cache_mode="bypass")
        items.extend(_dump(getattr(page, attr)))
        cursor = page.next_cursor
        if cursor is None:
            return items
        if cursor in seen:
            raise ProtocolError(f"{attr}/list returned the cursor {cursor!r} twice")
        seen.add(cursor)
    raise ProtocolError(f"{attr}/list did not end after {_MAX_PAGES} pages")
