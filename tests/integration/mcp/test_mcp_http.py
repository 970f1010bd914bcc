"""The MCP plugin over streamable HTTP and HTTP+SSE, against server-everything on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from mcp_support import HttpEverything, assert_long_calls_overlap, exec_ctx, running_plugin, wait_until

from stepflow_gateway.errors import ComponentError

pytestmark = pytest.mark.anyio

SUM_42 = [{"type": "text", "text": "The sum of 2 and 40 is 42."}]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_streamable_http_get_sum(
    tmp_path: Path, http_everything: Callable[[str], HttpEverything], mode: str
) -> None:
    server = http_everything("streamableHttp")
    config = {"url": server.url, "mode": mode, "headers": {"Authorization": "Bearer none"}}
    async with running_plugin(config, tmp_path, name="everything_http") as plugin:
        assert plugin.config.transport == "http"
        result = await plugin.execute("/get-sum", {"a": 2, "b": 40}, exec_ctx())
        assert result.result == SUM_42
        weather = await plugin.execute("/get-structured-content", {"location": "Chicago"}, exec_ctx())
        assert set(weather.result) == {"temperature", "conditions", "humidity"}


async def test_sse_get_sum(tmp_path: Path, http_everything: Callable[[str], HttpEverything]) -> None:
    server = http_everything("sse")
    async with running_plugin(
        {"transport": "sse", "url": server.url}, tmp_path, name="everything_sse"
    ) as plugin:
        result = await plugin.execute("/get-sum", {"a": 2, "b": 40}, exec_ctx())
        assert result.result == SUM_42


async def test_http_calls_overlap(tmp_path: Path, http_everything: Callable[[str], HttpEverything]) -> None:
    server = http_everything("streamableHttp")
    async with running_plugin({"url": server.url, "mode": "legacy"}, tmp_path) as plugin:
        await assert_long_calls_overlap(plugin)


async def test_http_server_restart_reinitialises_session(
    tmp_path: Path, http_everything: Callable[[str], HttpEverything]
) -> None:
    # A restarted server no longer knows our Mcp-Session-Id (HTTP 404): the plugin opens a new
    # session and re-sends the call, which the old server never ran.
    server = http_everything("streamableHttp")
    async with running_plugin({"url": server.url, "mode": "legacy"}, tmp_path) as plugin:
        assert (await plugin.execute("/echo", {"message": "one"}, exec_ctx())).outcome == "success"
        server.stop()
        server.start()
        echoed = await plugin.execute("/echo", {"message": "two"}, exec_ctx())
        assert echoed.result == [{"type": "text", "text": "Echo: two"}]


async def test_http_server_down_then_back(
    tmp_path: Path, http_everything: Callable[[str], HttpEverything]
) -> None:
    server = http_everything("streamableHttp")
    async with running_plugin({"url": server.url, "mode": "legacy", "timeoutMs": 5000}, tmp_path) as plugin:
        server.stop()
        with pytest.raises(ComponentError) as info:
            with anyio.fail_after(15):
                await plugin.execute("/echo", {"message": "lost"}, exec_ctx())
        assert info.value.stack[0]["error"].startswith(
            ("MCP connection lost", "MCP server 'mcp' is unavailable")
        )
        await wait_until(lambda: not plugin.connected)
        server.start()
        with anyio.fail_after(15):
            echoed = await plugin.execute("/echo", {"message": "back"}, exec_ctx())
        assert echoed.result == [{"type": "text", "text": "Echo: back"}]
