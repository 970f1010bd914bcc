"""What ``components/execute`` carries on the wire (protocol.md §3.3): ``attempt`` (1-based, one more
on every ``onError: retry`` call) and ``observability`` with the run, flow and step ids.

The server is ``servers/recording_server.py``, a plain stdio JSON-RPC server that logs every execute
it receives and fails the first two.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import pytest

from stepflow_gateway.flow.load import load_flow
from stepflow_gateway.gateway import Gateway

pytestmark = pytest.mark.anyio

RECORDING_SERVER = Path(__file__).with_name("servers") / "recording_server.py"

FLOW = {
    "schema": "https://stepflow.org/schemas/v1/flow.json",
    "name": "flaky",
    "steps": [
        {
            "id": "call_it",
            "component": "/rec/flaky",
            "input": {"n": 1},
            "onError": {"action": "retry", "maxRetries": 3, "backoff": {"type": "constant", "delayMs": 10}},
        }
    ],
    "output": {"$step": "call_it"},
}


async def test_retry_attempts_and_observability_reach_the_server(tmp_path: Path) -> None:
    log = tmp_path / "executes.jsonl"
    config = {
        "plugins": {
            "rec": {
                "type": "stepflow",
                "transport": "stdio",
                "command": sys.executable,
                "args": [str(RECORDING_SERVER), str(log), "2"],
            }
        },
        "routes": {"/rec/{*component}": [{"plugin": "rec"}]},
    }
    config_path = tmp_path / "stepflow-config.yml"
    config_path.write_text(json.dumps(config))
    flow_path = tmp_path / "flow.json"
    flow_path.write_text(json.dumps(FLOW))
    with anyio.fail_after(60):
        async with Gateway.from_config(config_path) as gw:
            handle = await gw.submit(load_flow(flow_path), [{}])
            await handle.done.wait()
    assert handle.results is not None
    assert handle.results[0].to_json() == {"outcome": "success", "result": {"attempt": 3}}
    executes = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["attempt"] for e in executes] == [1, 2, 3]
    for params in executes:
        assert set(params) == {"component", "input", "attempt", "observability"}  # all four, always
        assert params["component"] == "/flaky" and params["input"] == {"n": 1}
        obs = params["observability"]
        assert obs["run_id"] == handle.run_id
        assert obs["step_id"] == "call_it"
        assert len(obs["flow_id"]) == 64
        assert set(obs) <= {"run_id", "flow_id", "step_id", "trace_id", "span_id"}
    assert len({e["observability"]["flow_id"] for e in executes}) == 1
