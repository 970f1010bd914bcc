"""``/mcp``: stored flows as MCP tools over streamable HTTP (rest-api.md §6).

Owns the tool catalogue (``FlowCatalogue``: which stored flows are tools, under which names, in
which order) and the MCP server around it: the mcp SDK's low-level ``Server`` with
``tools/list``/``tools/call`` handlers, driven by a ``StreamableHTTPSessionManager`` whose
``run()`` the app lifespan holds open. Both protocol eras are served by the SDK.

* The catalogue is persisted in the state store as one gateway-owned record (blob id
  ``CATALOGUE_KEY``, type ``gateway``) listing the flow ids stored through ``POST /flows`` in
  store order, so tool names survive a restart. (The ``StateStore`` seam has no "list blobs".)
* A tool call is one recorded run (``ServerRuntime.start_run``), visible in ``GET /runs``. The
  run executes in the app task group; if the client cancels (``notifications/cancelled``) the
  handler is cancelled and cancels the run.
* Catalogue changes send ``notifications/tools/list_changed`` to handshake-era connections that
  listed tools, and ``ToolsListChanged`` on 2026-07-28 ``subscriptions/listen`` streams.
* With ``mcp_components`` every reachable registry component is a tool too
  (``component.<public path with / as .>``), run as a one-step flow.
"""

from __future__ import annotations

import json
import weakref
from contextlib import asynccontextmanager
from typing import Any

import anyio
import mcp_types as types
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ToolsListChanged
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from starlette.types import Receive, Scope, Send

from ..core.result import FlowResult
from ..flow.load import parse_flow
from ..gateway import RunHandle
from ..logging import get_logger
from ..state.base import RunRecord
from .catalogue import CATALOGUE_KEY, FlowCatalogue, FlowTool, tool_name

__all__ = ["CATALOGUE_KEY", "FlowCatalogue", "McpFacade", "tool_name"]

log = get_logger(__name__)

VARIABLES_META_KEY = "stepflow/variables"
NOTIFY_TIMEOUT_S = 2.0
"""A list_changed notification to one connection may take this long; a stuck client is skipped."""


def _component_tool(entry: Any) -> FlowTool:
    """A reachable registry component as a one-step flow tool."""
    path = entry.public_path
    flow = parse_flow(
        {
            "name": "component." + path.strip("/").replace("/", "."),
            "description": entry.info.description or f"Component {path}",
            "schemas": (
                {"type": "object", "properties": {"input": entry.info.input_schema}}
                if isinstance(entry.info.input_schema, dict)
                else None
            ),
            "steps": [{"id": "call", "component": path, "input": {"$input": "$"}}],
            "output": {"$step": "call"},
        }
    ).flow
    return FlowTool(flow)


def call_result(result: FlowResult | None, tool: FlowTool) -> types.CallToolResult:
    """rest-api.md §6.2's table: a flow outcome as a ``CallToolResult``."""
    if result is None:
        return types.CallToolResult(
            content=[types.TextContent(text="error(500): Run was cancelled")], is_error=True
        )
    if result.outcome == "success":
        value = result.result
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        content: list[Any] = [types.TextContent(text=text)]
        if isinstance(value, dict):
            return types.CallToolResult(content=content, structured_content=value)
        if not tool.has_output_schema:
            return types.CallToolResult(content=content, structured_content={"result": value})
        return types.CallToolResult(content=content)
    if result.outcome == "skipped":
        return types.CallToolResult(content=[types.TextContent(text=f"Flow skipped: {result.reason or ''}")])
    assert result.error is not None
    return types.CallToolResult(
        content=[types.TextContent(text=f"error({result.error.code}): {result.error.message}")], is_error=True
    )


class _GatewayMcpServer(Server[Any]):
    """Advertises ``tools.listChanged`` on handshake-era sessions (the SDK default says false)."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options or NotificationOptions(tools_changed=True),
            experimental_capabilities,
            extensions,
        )


class McpFacade:
    """The MCP server for one app: handlers, session manager and change notifications."""

    def __init__(self, runtime: Any) -> None:
        self.rt = runtime
        self._connections: weakref.WeakSet[Any] = weakref.WeakSet()
        self._bus = InMemorySubscriptionBus()
        self._tg: Any = None
        self.server = _GatewayMcpServer(
            "stepflow-gateway",
            version=runtime.settings.version,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            on_subscriptions_listen=ListenHandler(self._bus),
            get_tool_input_schema=self._input_schema,
        )
        host = runtime.settings.host
        security = None
        if host in ("127.0.0.1", "localhost", "::1"):  # DNS-rebinding protection, as the SDK does
            security = TransportSecuritySettings(
                enable_dns_rebinding_protection=True,
                allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
                allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
            )
        self.manager = StreamableHTTPSessionManager(
            app=self.server,
            security_settings=security,
            max_request_body_size=runtime.settings.max_body_bytes,
        )
        if runtime.catalogue is not None:
            runtime.catalogue.on_change(self._catalogue_changed)

    @asynccontextmanager
    async def run(self) -> Any:
        async with anyio.create_task_group() as tg, self.manager.run():
            self._tg = tg
            try:
                yield self
            finally:
                self._tg = None
                tg.cancel_scope.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI endpoint mounted at ``/mcp``."""
        await self.manager.handle_request(scope, receive, send)

    # -- catalogue ----------------------------------------------------------------------------------
    def _all_tools(self) -> dict[str, FlowTool]:
        tools = self.rt.catalogue.tools() if self.rt.catalogue is not None else {}
        if self.rt.settings.mcp_components:
            for entry in self.rt.gw.components():
                if entry.public_path is not None:
                    t = _component_tool(entry)
                    tools.setdefault(t.name, t)
        return tools

    def _find(self, name: str) -> FlowTool | None:
        if self.rt.catalogue is not None:
            t: FlowTool | None = self.rt.catalogue.find(name)
            if t is not None:
                return t
        if self.rt.settings.mcp_components:
            return self._all_tools().get(name)
        return None

    def _input_schema(self, name: str) -> dict[str, Any] | None:
        t = self._find(name)
        return t.input_schema if t is not None else None

    def _catalogue_changed(self) -> None:
        if self._tg is not None:
            self._tg.start_soon(self._notify_changed)

    async def _notify_changed(self) -> None:
        await self._bus.publish(ToolsListChanged())
        for conn in list(self._connections):
            with anyio.move_on_after(NOTIFY_TIMEOUT_S):
                try:
                    await conn.send_tool_list_changed()
                except Exception:  # a closed connection is simply forgotten
                    self._connections.discard(conn)

    # -- handlers -----------------------------------------------------------------------------------
    async def _list_tools(self, ctx: Any, params: Any) -> types.ListToolsResult:
        conn = getattr(ctx.session, "_connection", None)
        if conn is not None and getattr(conn, "has_standalone_channel", False):
            self._connections.add(conn)
        return types.ListToolsResult(tools=[t.tool for t in self._all_tools().values()])

    async def _call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        tool = self._find(params.name)
        if tool is None:
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
        arguments = params.arguments or {}
        meta = params.meta or {}
        variables = meta.get(VARIABLES_META_KEY) if isinstance(meta, dict) else None
        if variables is not None and not isinstance(variables, dict):
            return types.CallToolResult(
                content=[
                    types.TextContent(text=f"error(400): _meta['{VARIABLES_META_KEY}'] must be an object")
                ],
                is_error=True,
            )
        wants_progress = (
            isinstance(meta, dict) and meta.get("progress_token", meta.get("progressToken")) is not None
        )
        send, receive = anyio.create_memory_object_stream[str](256)

        def on_event(ev: Any) -> None:
            if ev.kind == "step_completed" and ev.step_id is not None:
                try:
                    send.send_nowait(ev.step_id)
                except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
                    pass  # progress is best effort

        started = await self.rt.start_run(
            tool.flow,
            [tool.input_of(arguments)],
            variables=variables,
            listener=on_event if wants_progress else None,
        )
        if isinstance(started, RunRecord):
            send.close()
            return call_result(started.items[0].result if started.items else None, tool)
        handle: RunHandle = started
        try:
            if wants_progress:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._report_progress, ctx, receive)
                    await handle.done.wait()
                    send.close()
            else:
                await handle.done.wait()
        except BaseException:
            # the client cancelled the call (or the server is stopping): cancel the run too
            handle.cancel()
            raise
        finally:
            send.close()
        return call_result(handle.results[0] if handle.results else None, tool)

    async def _report_progress(self, ctx: Any, receive: Any) -> None:
        count = 0
        async with receive:
            async for step_id in receive:
                count += 1
                with anyio.move_on_after(NOTIFY_TIMEOUT_S):
                    try:
                        await ctx.session.report_progress(count, None, step_id)
                    except Exception:
                        return
