"""Flow-level runs through ``Gateway`` with the MCP example flows and ``config/mcp-demo.yaml``."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import peers
import pytest

from stepflow_gateway.gateway import Gateway

pytestmark = pytest.mark.anyio

REPO = peers.REPO
CONFIG = REPO / "config" / "mcp-demo.yaml"


@pytest.fixture
def demo_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    npm = peers.node_modules() / "@modelcontextprotocol"
    peers.require(
        peers.mcp_time_command()[0],
        npm / "server-everything",
        npm / "server-filesystem",
        npm / "server-memory",
        why="MCP demo servers",
    )
    data = (tmp_path / "data").resolve()
    data.mkdir()
    monkeypatch.setenv("PEERS", str(peers.PEERS))
    monkeypatch.setenv("DATA_DIR", str(data))
    return data


async def test_mcp_example_flows(demo_env: Path) -> None:
    with anyio.fail_after(90):
        async with Gateway.from_config(CONFIG) as gw:
            time_input = json.loads((REPO / "examples" / "mcp-time-input.json").read_text())
            timed = await gw.run(REPO / "examples" / "mcp-time.yaml", time_input)
            assert timed.to_json() == {
                "outcome": "success",
                "result": {"kathmandu": "+5.75h", "kolkata": "+5.5h", "sum": "The sum of 2 and 40 is 42."},
            }

            notes = await gw.run(REPO / "examples" / "mcp-notes.yaml", {"dir": str(demo_env)})
            assert notes.outcome == "success", notes.to_json()
            day = notes.result["same_day"]
            assert notes.result == {
                "read_back": day,
                "same_day": day,
                "mars": "unknown",
                "remembered": "last_note",
            }
            assert (demo_env / "now.txt").read_text() == day
            assert "last_note" in (demo_env / "memory.jsonl").read_text()

            registry = {c.public_path: c.plugin for c in gw.components()}
            assert registry["/time/convert_time"] == "time"
            assert registry["/everything/get-sum"] == "everything"
            assert registry["/fs/write_file"] == "fs"
            assert registry.get("/fs/move_file") is None  # componentDeny: listed as unreachable


async def test_tool_error_fails_the_flow_with_the_servers_text(demo_env: Path) -> None:
    flow = {
        "schema": "https://stepflow.org/schemas/v1/flow.json",
        "name": "mcp-error",
        "steps": [
            {"id": "mars", "component": "/time/get_current_time", "input": {"timezone": "Mars/Olympus"}},
        ],
        "output": {"$step": "mars"},
    }
    with anyio.fail_after(90):
        async with Gateway.from_config(CONFIG) as gw:
            result = await gw.run(flow, {})
    assert result.outcome == "failed" and result.error is not None
    assert result.error.code == 500
    assert result.error.message.startswith(
        "Tool 'get_current_time' returned an error: Error executing tool get_current_time: Invalid timezone:"
    )
