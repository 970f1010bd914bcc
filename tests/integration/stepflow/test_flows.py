"""Flow-level runs through ``Gateway``: the stepflow examples and upstream class-C flows served by our
companion server (plugins/conformance_server) over stdio and HTTP."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio
import pytest

from stepflow_gateway.flow.load import load_flow
from stepflow_gateway.gateway import Gateway

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[3]
UPSTREAM = Path("/work/shared/conformance/upstream")


@pytest.fixture
def venv_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPFLOW_GATEWAY_PYTHON", sys.executable)


async def test_stepflow_examples(venv_python: None) -> None:
    with anyio.fail_after(90):
        async with Gateway.from_config(REPO / "config" / "stepflow-demo.yaml") as gw:
            text = await gw.run(
                load_flow(REPO / "examples" / "stepflow-text.yaml"),
                json.loads((REPO / "examples" / "stepflow-text-input.json").read_text()),
            )
            errors = await gw.run(load_flow(REPO / "examples" / "stepflow-errors.yaml"), {"text": "abc"})
    assert text.to_json() == {
        "outcome": "success",
        "result": {
            "shouted": "THE CAT AND THE HAT",
            "words": 5,
            "top_words": [["the", 2], ["cat", 1], ["and", 1]],
            "roundtrip": "THE CAT AND THE HAT",
        },
    }
    assert errors.to_json() == {"outcome": "success", "result": {"bad": "(transform failed)", "good": "cba"}}


def _companion_config(tmp_path: Path, transport: str) -> Path:
    server = {
        "type": "stepflow",
        "command": sys.executable,
        "args": ["-m", "conformance_server"],
        "cwd": str(REPO / "plugins"),
    }
    if transport == "stdio":
        server["transport"] = "stdio"
    else:
        server["args"] = [*server["args"], "--http"]
    config = {
        "plugins": {"builtin": {"type": "builtin"}, "python": server, "test": server},
        "routes": {
            "/builtin/{*component}": [{"plugin": "builtin"}],
            "/python/{*component}": [{"plugin": "python"}],
            "/test/{*component}": [{"plugin": "test"}],
        },
    }
    path = tmp_path / "stepflow-config.yml"
    path.write_text(json.dumps(config))
    return path


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_upstream_class_c_flows(tmp_path: Path, transport: str) -> None:
    if not UPSTREAM.exists():  # noqa: ASYNC240
        pytest.skip("upstream conformance data not available")
    with anyio.fail_after(120):
        async with Gateway.from_config(_companion_config(tmp_path, transport)) as gw:
            iterate = await gw.run(
                load_flow(UPSTREAM / "examples/loop-components/iterate.yaml"), {"current": 0, "target": 5}
            )
            mapped = await gw.run(
                load_flow(UPSTREAM / "examples/loop-components/map_example.yaml"), {"items": [1, 2, 3]}
            )
            bidi = await gw.run(
                load_flow(UPSTREAM / "tests/http/bidirectional_http.yaml"),
                {
                    "data_points": [1.0, 2.0, 3.0, 4.0, 5.0],
                    "analysis_type": "statistics",
                    "processing_steps": ["uppercase_strings", "multiply_numbers", "add_metadata"],
                },
            )
            error = await gw.run(
                load_flow(UPSTREAM / "tests/http/error_handling.yaml"),
                {"mode": "error", "message": "test error message"},
            )
    assert iterate.to_json() == {
        "outcome": "success",
        "result": {"result": "Reached target 5", "iterations": 6, "terminated": False},
    }
    assert mapped.to_json()["result"] == [2.0, 4.0, 6.0]
    assert all(isinstance(v, float) for v in mapped.result)
    assert bidi.result["analysis_summary"] == "Statistics for 5 data points: mean=3.00, std_dev=1.41"
    assert bidi.result["analysis_type"] == "statistics"
    assert bidi.result["processing_result"]["final_result"]["analysis_summary"] == (
        "STATISTICS FOR 5 DATA POINTS: MEAN=3.00, STD_DEV=1.41"
    )
    err = error.to_json()
    assert err["outcome"] == "failed"
    assert err["error"]["code"] == 500 and err["error"]["message"] == 'step "error_step" failed'
    assert err["error"]["data"]["stack"][1:] == [
        {"error": "error executing component"},
        {
            "error": "component server error(-32003): Component execution failed: "
            "Component error: test error message"
        },
    ]
