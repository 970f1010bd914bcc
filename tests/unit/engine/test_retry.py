"""``onError`` (flow-format.md §8.3): fail, useDefault (with and without ``defaultValue``) and the
gateway's real ``retry`` with increasing ``attempt``, backoff, and the last failure standing."""

from __future__ import annotations

from typing import Any

import pytest
from engine_support import states

from stepflow_gateway.engine.executor import backoff_seconds
from stepflow_gateway.errors import FlowLoadError
from stepflow_gateway.flow.load import parse_flow

pytestmark = pytest.mark.anyio


def flow(output: Any, *steps: dict[str, Any]) -> dict[str, Any]:
    return {"name": "t", "description": "d", "steps": list(steps), "output": output}


FAST = {"type": "constant", "delayMs": 1}


async def test_fail_is_the_default_and_the_failure_stands(open_gw: Any) -> None:
    async with open_gw() as (gw, probe):
        for on_error in (None, {"action": "fail"}):
            step = {"id": "s", "component": "/probe/fail", "input": {"code": 8, "message": "business"}}
            if on_error:
                step["onError"] = on_error
            r = await gw.run(flow({"$step": "s"}, step), None)
            assert r.to_json() == {"outcome": "failed", "error": {"code": 8, "message": "business"}}
    assert len(probe.calls) == 2


@pytest.mark.parametrize("component", ["/probe/boom", "/probe/fail", "/mock/none"])
async def test_use_default_without_value_is_null_and_a_path_on_it_is_null(
    open_gw: Any, component: str
) -> None:
    f = flow(
        {"whole": {"$step": "s"}, "path": {"$step": "s", "path": "$.a.b[2]"}},
        {
            "id": "s",
            "component": component,
            "input": {"code": 3, "message": "m"},
            "onError": {"action": "useDefault"},
        },
    )
    async with open_gw({"/none": {"behaviors": {}}}) as (gw, _):
        handle = await gw.submit(f, [None])
    assert handle.results is not None
    assert handle.results[0].to_json() == {"outcome": "success", "result": {"whole": None, "path": None}}
    assert states(handle)["s"] == "completed"


async def test_use_default_with_value_covers_business_and_component_failures(open_gw: Any) -> None:
    f = flow(
        {
            "business": {"$step": "b", "path": "x"},
            "error": {"$step": "e", "path": "x"},
            "missing": {"$step": "e", "path": "y"},
        },
        {
            "id": "b",
            "component": "/probe/fail",
            "input": {"code": 3, "message": "m"},
            "onError": {"action": "useDefault", "defaultValue": {"x": 15.0}},
        },
        {
            "id": "e",
            "component": "/probe/boom",
            "onError": {"action": "useDefault", "defaultValue": {"x": False}},
        },
    )
    async with open_gw() as (gw, _):
        r = (await gw.run(f, None)).to_json()
    # the whole output fails on the first failing member: the default has no "y"
    assert r == {"outcome": "failed", "error": {"code": 1, "message": "Path $.y not found"}}
    f["output"] = {"business": {"$step": "b", "path": "x"}, "error": {"$step": "e", "path": "x"}}
    async with open_gw() as (gw, _):
        r = (await gw.run(f, None)).to_json()
    assert r == {"outcome": "success", "result": {"business": 15.0, "error": False}}
    assert type(r["result"]["business"]) is float


async def test_use_default_with_inline_mock_plugin(open_gw: Any) -> None:
    mock = {
        "/err": {
            "behaviors": {
                "x": {"error": "bad"},
                "y": {"outcome": "failed", "error": {"code": 4, "message": "no"}},
            }
        }
    }
    f = flow(
        [{"$step": "a"}, {"$step": "b"}],
        {
            "id": "a",
            "component": "/mock/err",
            "input": "x",
            "onError": {"action": "useDefault", "defaultValue": 1},
        },
        {
            "id": "b",
            "component": "/mock/err",
            "input": "y",
            "onError": {"action": "useDefault", "defaultValue": 2},
        },
    )
    async with open_gw(mock) as (gw, _):
        assert (await gw.run(f, None)).result == [1, 2]


async def test_retry_retries_with_increasing_attempt_until_success(open_gw: Any) -> None:
    f = flow(
        {"$step": "s"},
        {
            "id": "s",
            "component": "/probe/flaky",
            "input": {"succeed_on": 3},
            "onError": {"action": "retry", "maxRetries": 5, "backoff": FAST},
        },
    )
    async with open_gw() as (gw, probe):
        r = await gw.run(f, None)
    assert r.to_json() == {"outcome": "success", "result": {"attempt": 3}}
    assert [c.attempt for c in probe.calls] == [1, 2, 3]


@pytest.mark.parametrize("business", [False, True])
async def test_retry_exhausted_last_failure_stands(open_gw: Any, business: bool) -> None:
    f = flow(
        {"$step": "s"},
        {
            "id": "s",
            "component": "/probe/flaky",
            "input": {"business": business},
            "onError": {"action": "retry", "maxRetries": 2, "backoff": FAST},
        },
    )
    async with open_gw() as (gw, probe):
        r = (await gw.run(f, None)).to_json()
    assert [c.attempt for c in probe.calls] == [1, 2, 3]
    if business:
        assert r == {"outcome": "failed", "error": {"code": 7, "message": "attempt 3 failed"}}
    else:
        assert r["error"]["message"] == 'step "s" failed'
        assert r["error"]["data"]["stack"][1] == {"error": "attempt 3 failed"}


async def test_retry_defaults_to_three_retries(open_gw: Any) -> None:
    f = flow(
        {"$step": "s"},
        {"id": "s", "component": "/probe/boom", "onError": {"action": "retry", "backoff": FAST}},
    )
    async with open_gw() as (gw, probe):
        r = await gw.run(f, None)
    assert r.outcome == "failed"
    assert [c.attempt for c in probe.calls] == [1, 2, 3, 4]


async def test_retry_zero_means_one_call(open_gw: Any) -> None:
    f = flow(
        {"$step": "s"},
        {"id": "s", "component": "/probe/boom", "onError": {"action": "retry", "maxRetries": 0}},
    )
    async with open_gw() as (gw, probe):
        assert (await gw.run(f, None)).outcome == "failed"
    assert len(probe.calls) == 1


async def test_retry_of_inline_mock_component(open_gw: Any) -> None:
    mock = {"/err": {"behaviors": {"x": {"error": "always"}}}}
    f = flow(
        {"$step": "s"},
        {
            "id": "s",
            "component": "/mock/err",
            "input": "x",
            "onError": {"action": "retry", "maxRetries": 1, "backoff": FAST},
        },
    )
    async with open_gw(mock) as (gw, _):
        r = (await gw.run(f, None)).to_json()
    assert r["error"]["message"] == 'step "s" failed'


async def test_retry_waits_the_backoff_between_attempts(open_gw: Any) -> None:
    f = flow(
        {"$step": "s"},
        {
            "id": "s",
            "component": "/probe/flaky",
            "input": {"succeed_on": 3},
            "onError": {"action": "retry", "maxRetries": 3, "backoff": {"type": "constant", "delayMs": 60}},
        },
    )
    async with open_gw() as (gw, probe):
        await gw.run(f, None)
    times = [c.at for c in probe.calls]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(gaps) == 2 and all(g >= 0.06 * 0.9 - 0.002 for g in gaps), gaps


async def test_inputs_failure_is_not_retried(open_gw: Any) -> None:
    f = flow(
        {"$step": "s"},
        {
            "id": "s",
            "component": "/probe/echo",
            "input": {"$input": "$.missing"},
            "onError": {"action": "retry", "backoff": FAST},
        },
    )
    async with open_gw() as (gw, probe):
        r = await gw.run(f, {})
    assert r.to_json() == {
        "outcome": "failed",
        "error": {"code": 1, "message": "Input path $.missing not found"},
    }
    assert probe.calls == []


def test_backoff_shapes() -> None:
    def ms(spec: Any, n: int) -> float:
        return backoff_seconds(spec, None, n) * 1000

    assert 90 <= ms({"type": "constant", "delayMs": 100}, 7) <= 110
    exp = {"type": "exponential", "minDelayMs": 10, "maxDelayMs": 100, "factor": 3}
    assert 9 <= ms(exp, 1) <= 11 and 27 <= ms(exp, 2) <= 33 and 90 <= ms(exp, 5) <= 110
    fib = {"type": "fibonacci", "minDelayMs": 10, "maxDelayMs": 45}
    expected = [10, 10, 20, 30, 45, 45]
    for n, want in enumerate(expected, 1):
        assert want * 0.9 <= ms(fib, n) <= want * 1.1
    # default: fibonacci 1000 → 10000
    assert 900 <= ms(None, 1) <= 1100 and 9000 <= ms(None, 50) <= 11000


def test_on_error_shapes_load() -> None:
    step = {"id": "s", "component": "/x"}
    for bad in (
        {"action": "skip"},
        {"action": "terminate"},
        {"action": "continue"},
        {"action": "default_output"},
        {},
    ):
        with pytest.raises(FlowLoadError) as info:
            parse_flow({"steps": [{**step, "onError": bad}]})
        assert info.value.json_path == "$.steps[0].onError.action"
        assert info.value.step_id == "s"
    with pytest.raises(FlowLoadError):
        parse_flow({"steps": [{**step, "onError": {"action": "retry", "maxRetries": -1}}]})
    for backoff in ({"type": "linear"}, {"delayMs": 5}, {"type": "constant", "delayMs": "soon"}, "fast"):
        with pytest.raises(FlowLoadError) as info:
            parse_flow({"steps": [{**step, "onError": {"action": "retry", "backoff": backoff}}]})
        assert (info.value.json_path or "").startswith("$.steps[0].onError.backoff")
    loaded = parse_flow({"steps": [{**step, "onError": {"action": "fail", "defaultValue": 1}}]})
    assert [(d.kind, d.path) for d in loaded.diagnostics] == [
        ("unknownField", "$.steps[0].onError.defaultValue")
    ]


# -- upstream HEAD's shape and codes, with the mock plugin ---------------------------------------------

ERROR_MOCK = {
    "/error": {
        "behaviors": {
            "succeed": {"outcome": "success", "result": {"output": "succeeded"}},
            "named": {"outcome": "failed", "error": {"code": "COMPONENT_FAILED", "message": "error"}},
            "resource": {"outcome": "failed", "error": {"code": "RESOURCE_UNAVAILABLE", "message": "busy"}},
            "custom": {"outcome": "failed", "error": {"code": "MY_OWN_CODE", "message": "custom"}},
            "numeric": {"outcome": "failed", "error": {"code": 42, "message": "numeric"}},
            "invalid": {"outcome": "failed", "error": {"code": "INVALID_INPUT", "message": "bad input"}},
            "timeout": {"outcome": "failed", "error": {"code": "TIMEOUT", "message": "slow"}},
            "unreachable": {"outcome": "failed", "error": {"code": "UNREACHABLE", "message": "gone"}},
            "not_found": {"outcome": "failed", "error": {"code": "COMPONENT_NOT_FOUND", "message": "?"}},
            "boom": {"error": "component error"},
        }
    }
}


@pytest.fixture
def mock_attempts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The ``attempt`` of every call the mock plugin serves (retries take its async path)."""
    from stepflow_gateway.plugins.mock import MockPlugin

    attempts: list[int] = []
    original = MockPlugin.execute

    async def counting(self: MockPlugin, component: str, input: Any, ctx: Any) -> Any:
        attempts.append(ctx.attempt)
        return await original(self, component, input, ctx)

    monkeypatch.setattr(MockPlugin, "execute", counting)
    return attempts


def retry_flow(mode: str, on_error: dict[str, Any]) -> dict[str, Any]:
    return flow(
        {"result": {"$step": "retry_step"}},
        {"id": "retry_step", "component": "/mock/error", "onError": on_error, "input": mode},
    )


async def test_mock_string_code_retried_up_to_max_retries_then_stands(
    open_gw: Any, mock_attempts: list[int]
) -> None:
    async with open_gw(ERROR_MOCK) as (gw, _):
        r = await gw.run(retry_flow("named", {"action": "retry", "maxRetries": 2, "backoff": FAST}), None)
        assert r.to_json() == {"outcome": "failed", "error": {"code": "COMPONENT_FAILED", "message": "error"}}
        assert mock_attempts == [1, 2, 3]  # maxRetries + 1 calls, attempt increasing
        mock_attempts.clear()
        r = await gw.run(retry_flow("succeed", {"action": "retry", "maxRetries": 2, "backoff": FAST}), None)
        assert r.to_json() == {"outcome": "success", "result": {"result": {"output": "succeeded"}}}
        assert mock_attempts == [1]  # a success is not retried


@pytest.mark.parametrize("on_error", [{"action": "retry"}, {"action": "retry", "maxRetries": None}])
async def test_mock_retry_defaults_to_three_retries(
    open_gw: Any, mock_attempts: list[int], on_error: dict[str, Any]
) -> None:
    async with open_gw(ERROR_MOCK) as (gw, _):
        r = await gw.run(retry_flow("named", {**on_error, "backoff": FAST}), None)
    assert r.outcome == "failed"
    assert mock_attempts == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("mode", "calls"),
    [
        ("resource", 3),  # RESOURCE_UNAVAILABLE: retried, like COMPONENT_FAILED
        ("custom", 3),  # a string that is not a TaskErrorCode: treated as a component failure
        ("numeric", 3),  # 0.9.0-era integer codes: always retried
        ("boom", 3),  # a component error (code 500)
        ("invalid", 1),  # upstream HEAD never retries these
        ("not_found", 1),
        ("timeout", 1),  # transport codes: the plugin's own retry policy, not onError's budget
        ("unreachable", 1),
    ],
)
async def test_which_failures_are_retried(
    open_gw: Any, mock_attempts: list[int], mode: str, calls: int
) -> None:
    async with open_gw(ERROR_MOCK) as (gw, _):
        r = await gw.run(retry_flow(mode, {"action": "retry", "maxRetries": 2, "backoff": FAST}), None)
    assert r.outcome == "failed"
    assert len(mock_attempts) == calls
    if mode not in ("boom",):
        code = ERROR_MOCK["/error"]["behaviors"][mode]["error"]["code"]
        assert r.to_json()["error"]["code"] == code  # passed through with its JSON kind


def test_upstream_head_retry_shape_loads_and_normalises() -> None:
    from stepflow_gateway.flow.load import parse_flow as parse

    def on_error(value: dict[str, Any]) -> Any:
        return parse({"steps": [{"id": "s", "component": "/x", "onError": value}]}).flow.steps[0]

    plain = on_error({"action": "retry"})
    null = on_error({"action": "retry", "maxRetries": None})
    two = on_error({"action": "retry", "maxRetries": 2})
    assert (plain.on_error.max_retries, null.on_error.max_retries, two.on_error.max_retries) == (3, 3, 2)
    # as upstream HEAD serialises it: a defaulted maxRetries is omitted, a given one kept
    assert plain.to_json()["onError"] == {"action": "retry"}
    assert null.to_json()["onError"] == {"action": "retry"}
    assert two.to_json()["onError"] == {"action": "retry", "maxRetries": 2}
    assert on_error({"action": "retry", "maxRetries": 3}).to_json()["onError"] == {
        "action": "retry",
        "maxRetries": 3,
    }
    assert on_error({"action": "retry", "maxRetries": 2**32 - 1}).on_error.max_retries == 2**32 - 1
    for bad in (-1, 2**32, 1.0, True, "3"):
        with pytest.raises(FlowLoadError) as info:
            on_error({"action": "retry", "maxRetries": bad})
        assert info.value.json_path == "$.steps[0].onError.maxRetries"
    # the same flow with and without an explicit null gets the same flow id
    ids = {
        parse({"steps": [{"id": "s", "component": "/x", "onError": oe}], "output": None}).flow.flow_id
        for oe in ({"action": "retry"}, {"action": "retry", "maxRetries": None})
    }
    assert len(ids) == 1
