"""``Context.evaluate_flow`` of our SDK: a failed nested run raises ``FlowFailed`` with the flow
error's code as it came, an upstream HEAD string code or a 0.9.0-era integer."""

from __future__ import annotations

from typing import Any

import pytest

from stepflow_gateway.sdk import Context, FlowFailed

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def context_answering(error: dict[str, Any]) -> Context:
    async def send(method: str, params: Any) -> Any:
        assert method == "runs/submit"
        result = {"outcome": "failed", "error": error}
        return {"runId": "r", "results": [{"itemIndex": 0, "status": "failed", "result": result}]}

    return Context(send)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ({"code": "COMPONENT_FAILED", "message": "error"}, "COMPONENT_FAILED"),
        ({"code": 500, "message": "error"}, 500),
        ({"code": 500.0, "message": "error"}, 500),
        ({"message": "error"}, 500),
    ],
)
async def test_flow_failed_keeps_the_code(error: dict[str, Any], code: Any) -> None:
    with pytest.raises(FlowFailed) as info:
        await context_answering(error).evaluate_flow("f" * 64, {})
    assert info.value.code == code and type(info.value.code) is type(code)
    assert info.value.message == "error"
