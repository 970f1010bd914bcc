"""One flow mixing two real MCP servers, a StepFlow component server (our SDK) and a builtin."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import peers
import pytest

from stepflow_gateway.gateway import Gateway

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    peers.require(peers.mcp_time_command()[0], peers.node_modules(), why="the mixed flow uses MCP peers")
    monkeypatch.setenv("PEERS", str(peers.PEERS))


async def test_mixed_flow_runs_across_four_sources(env: None) -> None:
    inp = json.loads((REPO / "examples/mixed-input.json").read_text())
    with anyio.fail_after(90):
        async with Gateway.from_config(REPO / "config/mixed.yaml") as gw:
            comps = {c.public_path: c.plugin for c in gw.components()}
            result = await gw.run(REPO / "examples/mixed.yaml", inp)
    assert comps["/time/convert_time"] == "time"
    assert comps["/everything/get-sum"] == "everything"
    assert comps["/text/transform"] == "text"
    assert comps["/builtin/create_messages"] == "builtin"
    assert result.outcome == "success", result
    out = result.result
    assert out["local_time"].endswith("T17:45:00+05:45")
    assert out["sum_text"] == "The sum of 2 and 40 is 42."
    assert out["messages"][0] == {"role": "system", "content": "BRING THE SLIDES"}
    assert out["messages"][1]["content"].endswith("(+5.75h). The sum of 2 and 40 is 42.")


async def test_mixed_flow_failure_names_the_step(env: None) -> None:
    inp = {"time": "12:00", "zone": "Not/AZone", "a": 1, "b": 2, "note": "x"}
    with anyio.fail_after(90):
        async with Gateway.from_config(REPO / "config/mixed.yaml") as gw:
            result = await gw.run(REPO / "examples/mixed.yaml", inp)
    assert result.outcome == "failed"
    assert result.error is not None and result.error.code == 500
    assert "convert" in result.error.message


async def test_validate_checks_mcp_literal_inputs_and_unknown_tools(env: None) -> None:
    from stepflow_gateway.flow.load import parse_flow

    flow = parse_flow(
        {
            "name": "bad",
            "description": "d",
            "steps": [
                {"id": "total", "component": "/everything/get-sum", "input": {"a": "two", "b": 40}},
                {"id": "nope", "component": "/everything/no-such-tool", "input": {}},
            ],
            "output": {"a": {"$step": "total"}, "b": {"$step": "nope"}},
        }
    ).flow
    with anyio.fail_after(90):
        async with Gateway.from_config(REPO / "config/mixed.yaml") as gw:
            diags = gw.validate(flow)
    by_kind = {d.kind: d for d in diags if d.level == "error"}
    assert by_kind["invalidStepInput"].path == "$.steps[0].input"
    assert "$.a: 'two' is not of type 'number'" in by_kind["invalidStepInput"].formatted
    assert by_kind["unknownComponent"].path == "$.steps[1].component"
