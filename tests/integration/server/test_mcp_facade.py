"""The ``/mcp`` façade with the mcp SDK client over real streamable HTTP (rest-api.md §6)."""

from __future__ import annotations

from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp.client.client import Client
from mcp.shared.exceptions import MCPError

from .conftest import GREET

pytestmark = pytest.mark.anyio

BAD = {
    "name": "bad",
    "steps": [{"id": "get", "component": "/builtin/get_blob", "input": {"blob_id": "0" * 64}}],
    "output": {"$step": "get"},
}
WRAPPED = {
    "name": "wrap me!",
    "schemas": {"type": "object", "properties": {"input": {"type": "string"}}},
    "steps": [],
    "output": {"$input": "$"},
}
UNNAMED = {"steps": [], "output": {"$literal": 7}}


def text_of(result: types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_flows_are_tools(start_server, mode: str) -> None:
    server = start_server()
    async with httpx2.AsyncClient(base_url=server.api, timeout=30) as rest:
        ids = {}
        for flow in (GREET, BAD, WRAPPED, UNNAMED):
            body = (await rest.post("/flows", json={"flow": flow})).json()
            assert body["stored"], body
            ids[flow.get("name")] = body["flowId"]

        with anyio.fail_after(60):
            async with Client(f"{server.url}/mcp", mode=mode) as mcp:
                tools = {t.name: t for t in (await mcp.list_tools()).tools}
                unnamed = f"flow_{ids[None][:12]}"
                assert set(tools) == {"greet", "bad", "wrap_me_", unnamed}
                assert tools["greet"].input_schema["required"] == ["q"]
                assert tools["greet"].description == "Greets someone"
                assert tools["wrap_me_"].input_schema == {
                    "type": "object",
                    "properties": {"input": {"type": "string"}},
                    "required": ["input"],
                }
                assert tools["wrap_me_"].title == "wrap me!"
                assert tools[unnamed].description == f"StepFlow flow {ids[None]}"

                ok = await mcp.call_tool("greet", {"q": "hi"})
                assert not ok.is_error
                assert ok.structured_content == {
                    "messages": [{"role": "system", "content": "calm"}, {"role": "user", "content": "hi"}]
                }
                assert '"role":"user"' in text_of(ok)

                toned = await mcp.call_tool(
                    "greet", {"q": "hi"}, meta={"stepflow/variables": {"tone": "brisk"}}
                )
                assert toned.structured_content["messages"][0]["content"] == "brisk"

                invalid = await mcp.call_tool("greet", {"q": 3})
                assert invalid.is_error and text_of(invalid).startswith(
                    "error(400): Input validation failed at $.q"
                )

                failed = await mcp.call_tool("bad", {})
                assert failed.is_error and text_of(failed) == 'error(500): step "get" failed'

                wrapped = await mcp.call_tool("wrap_me_", {"input": "hello"})
                assert wrapped.structured_content == {"result": "hello"} and text_of(wrapped) == '"hello"'

                seven = await mcp.call_tool(unnamed, {})
                assert seven.structured_content == {"result": 7}

                with pytest.raises(MCPError) as info:
                    await mcp.call_tool("nope", {})
                assert "Unknown tool: nope" in str(info.value.message)

        runs = (await rest.get("/runs", params={"flowName": "greet"})).json()["runs"]
        assert len(runs) == 3  # every tool call is a recorded run


async def test_catalogue_changes_notify_and_survive_restart(start_server, tmp_path) -> None:
    server = start_server()
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        root = getattr(message, "root", message)
        if isinstance(root, types.ToolListChangedNotification):
            changed.set()

    async with httpx2.AsyncClient(base_url=server.api, timeout=30) as rest:
        first = (await rest.post("/flows", json={"flow": GREET})).json()["flowId"]
        with anyio.fail_after(60):
            async with Client(f"{server.url}/mcp", mode="legacy", message_handler=on_message) as mcp:
                assert [t.name for t in (await mcp.list_tools()).tools] == ["greet"]
                # a newer flow with the same name takes the name over
                newer = {**GREET, "description": "newer greeting"}
                second = (await rest.post("/flows", json={"flow": newer})).json()["flowId"]
                await changed.wait()
                tools = (await mcp.list_tools()).tools
                assert [t.description for t in tools] == ["newer greeting"]
                # deleting it hands the name back to the older flow
                assert (await rest.delete(f"/flows/{second}")).status_code == 200
                tools = (await mcp.list_tools()).tools
                assert [t.description for t in tools] == ["Greets someone"]
        assert first

    assert server.stop() == 0
    again = start_server(workdir=tmp_path)
    with anyio.fail_after(60):
        async with Client(f"{again.url}/mcp") as mcp:
            assert [t.name for t in (await mcp.list_tools()).tools] == ["greet"]
            r = await mcp.call_tool("greet", {"q": "again"})
            assert r.structured_content["messages"][1]["content"] == "again"


async def test_every_stored_flow_stays_a_tool_across_restarts(start_server, tmp_path) -> None:
    # Regression: the catalogue was a content-addressed blob, which is never overwritten, so after
    # a restart only the flows listed at its first write were still tools.
    def named(name: str) -> dict[str, Any]:
        return {**GREET, "name": name, "description": f"flow {name}"}

    server = start_server()
    with httpx2.Client(base_url=server.api, timeout=30) as rest:
        for name in ("alpha", "beta"):
            assert rest.post("/flows", json={"flow": named(name)}).status_code == 200
    assert server.stop() == 0
    again = start_server(workdir=tmp_path)
    with httpx2.Client(base_url=again.api, timeout=30) as rest:
        assert rest.post("/flows", json={"flow": named("gamma")}).status_code == 200
    assert again.stop() == 0
    third = start_server(workdir=tmp_path)
    with anyio.fail_after(60):
        async with Client(f"{third.url}/mcp") as mcp:
            names = sorted(t.name for t in (await mcp.list_tools()).tools)
    assert names == ["alpha", "beta", "gamma"]
