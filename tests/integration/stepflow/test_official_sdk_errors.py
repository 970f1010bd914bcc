"""A component error from the official stepflow-py 0.7.0 `/udf` server fails the step.

`useDefault` recovers.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import peers
import pytest

from stepflow_gateway.config.load import parse_config
from stepflow_gateway.gateway import Gateway

pytestmark = pytest.mark.anyio

CODE = "def f(input):\n    if input['boom']:\n        return 1 / 0\n    return {'ok': True}\n\nf\n"


def _flow(on_error: dict | None) -> dict:
    udf = {
        "id": "udf",
        "component": "/python/udf",
        "input": {"blob_id": {"$step": "code", "path": "blob_id"}, "input": {"boom": {"$input": "boom"}}},
    }
    if on_error is not None:
        udf["onError"] = on_error
    return {
        "name": "udf-errors",
        "steps": [
            {
                "id": "code",
                "component": "/builtin/put_blob",
                "input": {"blob_type": "data", "data": {"input_schema": {"type": "object"}, "code": CODE}},
            },
            udf,
        ],
        "output": {"$step": "udf"},
    }


async def test_udf_error_fails_step_and_use_default_recovers(tmp_path: Path) -> None:
    peers.require(peers.sf07_stepflow_py(), why="needs the official stepflow-py 0.7.0 /udf server")
    cfg = parse_config(
        {
            "plugins": {
                "builtin": {"type": "builtin"},
                "python": {
                    "type": "stepflow",
                    "transport": "stdio",
                    "command": str(peers.sf07_stepflow_py()),
                },
            },
            "routes": {
                "/builtin/{*component}": [{"plugin": "builtin"}],
                "/python/{*component}": [{"plugin": "python"}],
            },
        },
        source=None,
        working_dir=tmp_path,
    ).config
    with anyio.fail_after(60):
        async with Gateway(cfg) as gw:
            ok = await gw.run(_flow(None), {"boom": False})
            failed = await gw.run(_flow(None), {"boom": True})
            recovered = await gw.run(
                _flow({"action": "useDefault", "defaultValue": {"ok": "fallback"}}), {"boom": True}
            )
    assert ok.to_json() == {"outcome": "success", "result": {"ok": True}}
    assert failed.outcome == "failed" and failed.error is not None
    assert failed.error.code == 500 and failed.error.message == 'step "udf" failed'
    stack = failed.error.data["stack"]
    assert stack[0]["attachments"][:2] == ["Component: /udf", "Component execution failed for step 'udf'"]
    assert stack[1] == {"error": "error executing component"}
    assert stack[2]["error"].startswith("component server error(-32003): ")
    assert "division by zero" in stack[2]["error"]
    assert recovered.to_json() == {"outcome": "success", "result": {"ok": "fallback"}}
