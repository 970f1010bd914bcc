"""Test-fixture MCP servers for behaviour the real peers cannot produce on demand.

Run as a stdio server: ``python fixture_server.py [dynamic|paged]``.

* ``dynamic`` (an ``MCPServer``): ``add`` (structured int result), ``fail`` (``isError``),
  ``sleep`` (reports progress, then sleeps; a cancelled sleep writes ``cancelled`` to its
  marker), ``add_tool`` (adds a tool and announces
  ``list_changed`` in both protocol eras), ``pid`` (the server's process id), ``meta`` (the
  request's ``_meta`` as received).
* ``paged`` (a low-level ``Server``): five tools ``t0``..``t4`` listed two per page, and a
  ``tools/call`` that raises a JSON-RPC error for ``t4``.
"""

from __future__ import annotations

import os
import sys

import anyio
from mcp.server import Server
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ListToolsResult, TextContent, Tool


def dynamic() -> MCPServer:
    server = MCPServer("fixture-dynamic", version="0.0.1")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def fail(message: str) -> str:
        """Always fails with the given message."""
        raise ToolError(message)

    @server.tool()
    async def sleep(seconds: float, ctx: Context, marker: str = "") -> str:
        """Report progress, touch ``marker`` (a file path) if given, then sleep."""
        await ctx.report_progress(1, 2, "half")
        if marker:
            await anyio.Path(marker).write_text("started")  # the request reached the server
        try:
            await anyio.sleep(seconds)
        except anyio.get_cancelled_exc_class():
            if marker:  # the client's notifications/cancelled reached this handler
                with anyio.CancelScope(shield=True):
                    await anyio.Path(marker).write_text("cancelled")
            raise
        return f"slept {seconds}"

    @server.tool()
    def pid() -> int:
        """The server's process id."""
        return os.getpid()

    @server.tool()
    def meta(ctx: Context) -> dict:
        """The ``_meta`` of this request as the server received it."""
        return dict(ctx.request_context.meta or {})

    @server.tool()
    async def add_tool(name: str, ctx: Context) -> str:
        """Add a tool named ``name`` that echoes its input with a prefix."""

        def dyn(x: str) -> str:
            return f"{name}:{x}"

        server.add_tool(dyn, name=name, description="dynamic")
        await ctx.notify_tools_changed()  # 2026-07-28 listen() streams
        try:
            await ctx.session.send_tool_list_changed()  # <= 2025-11-25 connections
        except Exception:  # noqa: BLE001 - no back channel on 2026-07-28
            pass
        return "ok"

    return server


def paged() -> Server:
    tools = [Tool(name=f"t{i}", input_schema={"type": "object", "properties": {}}) for i in range(5)]

    async def on_list_tools(ctx, params):  # type: ignore[no-untyped-def]
        start = int(params.cursor) if params and params.cursor else 0
        nxt = start + 2
        return ListToolsResult(tools=tools[start:nxt], next_cursor=str(nxt) if nxt < len(tools) else None)

    async def on_call_tool(ctx, params):  # type: ignore[no-untyped-def]
        if params.name == "t4":
            raise ValueError("t4 is broken")
        return CallToolResult(content=[TextContent(type="text", text=f"called {params.name}")])

    return Server("fixture-paged", on_list_tools=on_list_tools, on_call_tool=on_call_tool)


if __name__ == "__main__":
    kind = sys.argv[1] if len(sys.argv) > 1 else "dynamic"
    if kind == "dynamic":
        dynamic().run()
    else:
        from mcp.server.stdio import stdio_server

        server = paged()

        async def main() -> None:
            async with stdio_server() as (read, write):
                await server.run(read, write, server.create_initialization_options())

        anyio.run(main)
