"""The expression language on its own (flow-format.md §5, §7.1): compiled expressions evaluated
against a hand-built scope, so the outcome protocol (value / Failed / Skipped / Pending with the
exact needed steps) is checked directly; plus ``$template`` end to end."""

from __future__ import annotations

from typing import Any

import pytest

from stepflow_gateway.errors import FlowLoadError
from stepflow_gateway.flow.expr import (
    EvalScope,
    Failed,
    Pending,
    Skipped,
    compile_expr,
)

pytestmark = pytest.mark.anyio

STEPS = ("a", "b", "c", "d")


def ev(expr: Any, results: dict[str, Any] | None = None, input: Any = None, variables: Any = None) -> Any:
    return compile_expr(expr).eval(EvalScope(input, results or {}, variables or {}, STEPS))


def needs(outcome: Any) -> list[str]:
    assert type(outcome) is Pending, outcome
    return sorted(set(outcome.needs))


def test_step_ref_needs_the_step_until_it_completes() -> None:
    assert needs(ev({"$step": "a"})) == ["a"]
    assert ev({"$step": "a"}, {"a": 1}) == 1
    unknown = ev({"$step": "zzz"})
    assert type(unknown) is Failed and (unknown.error.code, unknown.error.message) == (
        404,
        "Unknown step: zzz",
    )


def test_if_needs_condition_then_only_the_taken_branch() -> None:
    expr = {"$if": {"$step": "a"}, "then": {"$step": "b"}, "else": {"$step": "c"}}
    assert needs(ev(expr)) == ["a"]
    assert needs(ev(expr, {"a": True})) == ["b"]
    assert needs(ev(expr, {"a": None})) == ["c"]
    assert needs(ev(expr, {"a": Skipped("x")})) == ["c"]
    assert ev(expr, {"a": 0, "b": "B"}) == "B"


def test_coalesce_needs_one_member_at_a_time() -> None:
    expr = {"$coalesce": [{"$step": "a"}, {"$step": "b"}, {"$step": "c"}]}
    assert needs(ev(expr)) == ["a"]
    assert needs(ev(expr, {"a": None})) == ["b"]
    assert needs(ev(expr, {"a": None, "b": Skipped("s")})) == ["c"]
    assert ev(expr, {"a": None, "b": 0}) == 0


def test_objects_and_arrays_need_the_union_and_keep_key_order() -> None:
    expr = {"z": {"$step": "a"}, "y": [{"$step": "b"}, {"$input": "x"}], "x": 1}
    assert needs(ev(expr, input={"x": 2})) == ["a", "b"]
    done = ev(expr, {"a": 1, "b": 2}, input={"x": 3})
    assert done == {"z": 1, "y": [2, 3], "x": 1} and list(done) == ["z", "y", "x"]


def test_first_failure_decides_but_earlier_pending_members_are_waited_for() -> None:
    expr = [{"$step": "a"}, {"$input": "$.missing"}, {"$step": "b"}]
    assert needs(ev(expr, input={})) == ["a"]  # "a" could still fail first
    failed = ev(expr, {"a": 1}, input={})
    assert type(failed) is Failed and failed.error.message == "Input path $.missing not found"


def test_variable_default_is_needed_only_when_used() -> None:
    expr = {"$variable": "v", "default": {"$step": "a"}}
    assert ev(expr, variables={"v": 1}) == 1
    assert needs(ev(expr)) == ["a"]
    assert ev(expr, {"a": "fallback"}) == "fallback"
    missing = ev({"$variable": "v"})
    assert type(missing) is Failed and (missing.error.code, missing.error.message) == (
        1,
        "Undefined variable: v",
    )


def test_template_rendering() -> None:
    expr = {
        "$template": "{{ s }}|{{n}}|{{f}}|{{big}}|{{b}}|{{nul}}|{{obj}}|{{a.b}}|{{s}}",
        "values": {
            "s": "text",
            "n": 3,
            "f": 1.5,
            "big": 1e16,
            "b": True,
            "nul": None,
            "obj": {"k": [1, "é"]},
            "a.b": "dotted",
        },
    }
    assert ev(expr) == 'text|3|1.5|1e16|true|null|{"k":[1,"é"]}|dotted|text'


def test_template_failures_skips_and_needs() -> None:
    missing = ev({"$template": "{{x}}", "values": {}})
    assert type(missing) is Failed and (missing.error.code, missing.error.message) == (
        1,
        "Template value x not found",
    )
    assert type(ev({"$template": "{{x}}"})) is Failed
    assert ev({"$template": "no placeholders {{ }} {x}"}) == "no placeholders {{ }} {x}"
    expr = {"$template": "v={{v}}", "values": {"v": {"$step": "a"}}}
    assert needs(ev(expr)) == ["a"]
    assert type(ev(expr, {"a": Skipped("s")})) is Skipped
    assert ev(expr, {"a": 7}) == "v=7"


def test_template_values_must_be_an_object() -> None:
    with pytest.raises(FlowLoadError) as info:
        compile_expr({"$template": "{{x}}", "values": {"$literal": "not an object"}}, "$.output")
    assert info.value.json_path == "$.output.values"
    with pytest.raises(FlowLoadError):
        compile_expr({"$template": "{{x}}", "values": [1]}, "$.output")
    # a $literal object is fine: its members are not evaluated
    assert ev({"$template": "{{x}}", "values": {"$literal": {"x": {"$step": "a"}}}}) == '{"$step":"a"}'


async def test_template_in_a_flow(open_gw: Any) -> None:
    flow = {
        "steps": [{"id": "count", "component": "/probe/echo", "input": {"total": 4}}],
        "output": {
            "$template": "{{ output_dir }}/report-{{n}}.json",
            "values": {"output_dir": {"$input": "output_dir"}, "n": {"$step": "count", "path": "total"}},
        },
    }
    async with open_gw() as (gw, _):
        r = await gw.run(flow, {"output_dir": "/tmp/out"})
    assert r.to_json() == {"outcome": "success", "result": "/tmp/out/report-4.json"}
