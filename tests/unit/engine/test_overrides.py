"""Step overrides (flow-format.md §12.3): RFC 7396 merge patches on serialised steps, layering, errors."""

from __future__ import annotations

from typing import Any

import pytest

from stepflow_gateway.engine.overrides import apply_overrides, merge_patch
from stepflow_gateway.errors import FlowError
from stepflow_gateway.flow.load import parse_flow

pytestmark = pytest.mark.anyio


def base_flow() -> dict[str, Any]:
    return {
        "name": "t",
        "description": "d",
        "steps": [
            {
                "id": "a",
                "component": "/probe/echo",
                "input": {"model": "big", "text": {"$input": "text"}},
                "metadata": {"k": 1},
            },
            {"id": "b", "component": "/probe/boom"},
        ],
        "output": {"a": {"$step": "a"}, "b": {"$step": "b"}},
    }


def test_merge_patch_rfc7396() -> None:
    assert merge_patch({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": None, "e": 4}, "f": [1]}) == {
        "a": 1,
        "b": {"d": 3, "e": 4},
        "f": [1],
    }
    assert merge_patch({"a": 1}, [1, 2]) == [1, 2]
    assert merge_patch("x", {"a": {"b": None}}) == {"a": {}}


async def test_override_input_component_and_on_error(open_gw: Any) -> None:
    overrides = {
        "a": {"value": {"input": {"model": "small"}}},
        "b": {
            "$type": "merge_patch",
            "value": {"onError": {"action": "useDefault", "defaultValue": "fallback"}},
        },
    }
    async with open_gw() as (gw, probe):
        r = await gw.run(base_flow(), {"text": "hi"}, overrides=overrides)
    assert r.result == {"a": {"model": "small", "text": "hi"}, "b": "fallback"}
    assert [c.step_id for c in sorted(probe.calls, key=lambda c: c.step_id)] == ["a", "b"]


async def test_override_replaces_component_and_null_deletes(open_gw: Any) -> None:
    overrides = {
        "steps": {
            "a": {"value": {"input": {"model": None}}},
            "b": {"value": {"component": "/probe/echo", "input": "now echo"}},
        }
    }
    async with open_gw() as (gw, _):
        r = await gw.run(base_flow(), {"text": "hi"}, overrides=overrides)
    assert r.result == {"a": {"text": "hi"}, "b": "now echo"}


async def test_override_skip_and_must_execute(open_gw: Any) -> None:
    f = base_flow()
    f["output"] = {"$step": "a", "onSkip": {"action": "useDefault", "defaultValue": "skipped"}}
    async with open_gw() as (gw, probe):
        r = await gw.run(
            f,
            {"text": "x"},
            overrides={"a": {"value": {"skip": True}}, "b": {"value": {"mustExecute": True}}},
        )
    assert r.result == "skipped"
    assert [c.step_id for c in probe.calls] == ["b"]


async def test_unknown_step_fails_before_the_run(open_gw: Any) -> None:
    async with open_gw() as (gw, probe):
        with pytest.raises(FlowError) as info:
            await gw.run(base_flow(), {"text": "x"}, overrides={"nope": {"value": {"input": 1}}})
    assert info.value.code == 400
    assert "Override for unknown step 'nope'" in str(info.value)
    assert probe.calls == []


async def test_json_patch_is_unsupported(open_gw: Any) -> None:
    async with open_gw() as (gw, _):
        with pytest.raises(FlowError) as info:
            await gw.run(base_flow(), {}, overrides={"a": {"$type": "json_patch", "value": []}})
    assert "Unsupported override type" in str(info.value)
    assert info.value.code == 400


def test_sources_are_applied_in_order_and_the_original_is_untouched() -> None:
    flow = parse_flow(base_flow()).flow
    before = flow.to_json()
    patched = apply_overrides(
        flow,
        {"a": {"value": {"input": {"model": "first", "extra": 1}}}},
        {"steps": {"a": {"value": {"input": {"model": "second"}}}}},
    )
    step = patched.step("a")
    assert step is not None
    assert step.to_json()["input"] == {"model": "second", "text": {"$input": "$.text"}, "extra": 1}
    assert flow.to_json() == before
    assert patched.flow_id != flow.flow_id


def test_override_to_invalid_step_is_a_clear_error() -> None:
    flow = parse_flow(base_flow()).flow
    with pytest.raises(FlowError) as info:
        apply_overrides(flow, {"a": {"value": {"onError": {"action": "explode"}}}})
    assert "unknown onError action" in str(info.value)
    assert "$.steps[0].onError.action" in str(info.value)
    with pytest.raises(FlowError):
        apply_overrides(flow, {"a": "not an object"})
    with pytest.raises(FlowError):
        apply_overrides(flow, ["not", "a", "map"])
