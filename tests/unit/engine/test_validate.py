"""Validation diagnostics (flow-format.md §10): each with its kind, code, level and JSON path."""

from __future__ import annotations

from typing import Any

import pytest

from stepflow_gateway.errors import FlowValidationError
from stepflow_gateway.flow.diagnostics import Diagnostic, summarize
from stepflow_gateway.flow.load import parse_flow
from stepflow_gateway.flow.validate import blocking, validate_flow

pytestmark = pytest.mark.anyio


def diagnose(flow: dict[str, Any]) -> list[Diagnostic]:
    loaded = parse_flow(flow)
    return loaded.diagnostics + validate_flow(loaded.flow)


def found(flow: dict[str, Any], *, named: bool = True) -> set[tuple[str, int, str, str]]:
    if named:
        flow = {"name": "n", "description": "d", **flow}
    return {(d.kind, d.code, d.level, d.path) for d in diagnose(flow)}


def step(step_id: str, input: Any = None, component: str = "/builtin/x", **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "component": component, "input": input, **extra}


def test_clean_flow_has_no_diagnostics() -> None:
    assert found({"steps": [step("a"), step("b", {"$step": "a"})], "output": {"$step": "b"}}) == set()


def test_duplicate_step_id() -> None:
    diags = found({"steps": [step("a"), step("a")], "output": {"$step": "a"}})
    assert diags == {("duplicateStepId", 3000, "fatal", "$.steps[1].id")}


def test_empty_step_id() -> None:
    assert ("emptyStepId", 3001, "fatal", "$.steps[0].id") in found({"steps": [step("")], "output": None})


def test_self_reference_in_input_skip_if_and_depends_on() -> None:
    diags = found(
        {
            "steps": [
                step("a", {"$step": "a"}),
                step("b", skipIf={"$step": "b"}),
                step("c", depends_on=["c"]),
            ],
            "output": [{"$step": "a"}, {"$step": "b"}, {"$step": "c"}],
        }
    )
    assert diags == {
        ("selfReference", 3002, "fatal", "$.steps[0].input"),
        ("selfReference", 3002, "fatal", "$.steps[1].skipIf"),
        ("selfReference", 3002, "fatal", "$.steps[2].depends_on[0]"),
    }


def test_forward_reference_even_in_untaken_branch() -> None:
    diags = found(
        {
            "steps": [step("a", {"$if": False, "then": {"$step": "b"}}), step("b")],
            "output": {"$step": "a"},
        }
    )
    assert diags == {("undefinedStepReference", 3003, "fatal", "$.steps[0].input")}


def test_forward_reference_in_coalesce_template_and_variable_default() -> None:
    flow = {
        "steps": [
            step("a", {"$coalesce": [None, {"$step": "d"}]}),
            step("b", {"$template": "{{x}}", "values": {"x": {"$step": "d"}}}),
            step("c", {"$variable": "v", "default": {"$step": "d"}}),
            step("d"),
        ],
        "output": [{"$step": "a"}, {"$step": "b"}, {"$step": "c"}],
        "schemas": {"properties": {"variables": {"type": "object", "properties": {"v": {}}}}},
    }
    assert found(flow) == {
        ("undefinedStepReference", 3003, "fatal", "$.steps[0].input"),
        ("undefinedStepReference", 3003, "fatal", "$.steps[1].input"),
        ("undefinedStepReference", 3003, "fatal", "$.steps[2].input"),
    }


def test_depends_on_later_or_unknown_step() -> None:
    diags = found({"steps": [step("a", depends_on=["b", "zzz"]), step("b")], "output": {"$step": "a"}})
    assert diags == {
        ("undefinedStepReference", 3003, "fatal", "$.steps[0].depends_on[0]"),
        ("undefinedStepReference", 3003, "fatal", "$.steps[0].depends_on[1]"),
    }


def test_unknown_step_in_output() -> None:
    d = [x for x in diagnose({"name": "n", "description": "d", "steps": [], "output": {"$step": "ghost"}})]
    assert [(x.kind, x.path, x.data) for x in d] == [
        ("undefinedStepReference", "$.output", {"step_id": "ghost"})
    ]
    assert "ghost" in d[0].formatted


def test_undefined_variable_and_missing_variable_schema() -> None:
    with_schema = found(
        {
            "steps": [],
            "output": {"a": {"$variable": "declared"}, "b": {"$variable": "$.undeclared.x"}},
            "schemas": {
                "properties": {
                    "variables": {"type": "object", "properties": {"declared": {"type": "string"}}}
                }
            },
        }
    )
    assert with_schema == {("undefinedVariable", 2004, "error", "$.output")}
    without_schema = found({"steps": [], "output": {"$variable": "anything"}})
    assert without_schema == {("missingVariableSchema", 1004, "warning", "$.output")}


def test_missing_name_and_description() -> None:
    diags = found({"steps": [], "output": 1}, named=False)
    assert diags == {
        ("missingFlowName", 1001, "warning", "$.name"),
        ("missingFlowDescription", 1002, "warning", "$.description"),
    }


def test_unreachable_step() -> None:
    diags = found(
        {
            "steps": [
                step("used"),
                step("unused"),
                step("must", mustExecute=True),
                step("dep"),
                step("x", depends_on=["dep"]),
            ],
            "output": {"$step": "x", "path": "$.a"},
        }
    )
    assert diags == {
        ("unreachableStep", 1000, "warning", "$.steps[1]"),
        ("unreachableStep", 1000, "warning", "$.steps[0]"),
    }


def test_unknown_keys_with_stale_key_hints() -> None:
    diags = diagnose(
        {
            "name": "n",
            "description": "d",
            "inputSchema": {},
            "output_schema": {},
            "variables_schema": {},
            "variables": {},
            "custom": 1,
            "steps": [step("a", on_error={"action": "fail"}, inputSchema={}, extra=1)],
            "output": {"$step": "a"},
        }
    )
    got = {(d.kind, d.code, d.level, d.path): d.formatted for d in diags}
    assert set(got) == {
        ("unknownField", 1090, "warning", p)
        for p in (
            "$.inputSchema",
            "$.output_schema",
            "$.variables_schema",
            "$.variables",
            "$.custom",
            "$.steps[0].on_error",
            "$.steps[0].inputSchema",
            "$.steps[0].extra",
        )
    }
    assert "schemas.properties.input" in got[("unknownField", 1090, "warning", "$.inputSchema")]
    assert "schemas.properties.output" in got[("unknownField", 1090, "warning", "$.output_schema")]
    assert "schemas.properties.variables" in got[("unknownField", 1090, "warning", "$.variables_schema")]
    assert "onError" in got[("unknownField", 1090, "warning", "$.steps[0].on_error")]
    assert "did you mean" not in got[("unknownField", 1090, "warning", "$.custom")]


def test_unknown_keys_next_to_expression_forms_and_unsupported_schema_tag() -> None:
    diags = found(
        {
            "schema": "https://example.com/other.json",
            "steps": [step("a", {"$step": "x", "paht": "$.a"}), step("x")],
            "output": {"$step": "a"},
        }
    )
    assert ("unknownField", 1090, "warning", "$.schema") in diags
    assert ("unknownField", 1090, "warning", "$.steps[0].input.paht") in diags


def test_legacy_from_is_normalised_with_a_warning() -> None:
    loaded = parse_flow(
        {
            "name": "n",
            "description": "d",
            "steps": [step("a", {"x": {"$from": {"workflow": "input"}, "path": "x"}})],
            "output": {"$from": {"step": "a"}, "path": "$.x"},
        }
    )
    assert {(d.kind, d.code, d.path) for d in loaded.diagnostics} == {
        ("legacySyntax", 1091, "$.steps[0].input.x"),
        ("legacySyntax", 1091, "$.output"),
    }
    out = loaded.flow.to_json()
    assert out["steps"][0]["input"] == {"x": {"$input": "$.x"}}
    assert out["output"] == {"$step": "a", "path": "$.x"}


def test_component_names() -> None:
    diags = found(
        {
            "steps": [step("a", component=""), step("b", component="builtin/x")],
            "output": [{"$step": "a"}, {"$step": "b"}],
        }
    )
    assert diags == {
        ("emptyComponentName", 2001, "error", "$.steps[0].component"),
        ("invalidComponent", 2500, "error", "$.steps[1].component"),
    }


def test_invalid_subflow_literal() -> None:
    sub = {"schema": "https://stepflow.org/schemas/v1/flow.json", "steps": [step("s", {"$step": "s"})]}
    diags = found({"steps": [step("a", {"data": {"$literal": sub}})], "output": {"$step": "a"}})
    assert diags == {("invalidSubflowLiteral", 2003, "error", "$.steps[0].input")}


def test_summary_counts_and_blocking_levels() -> None:
    diags = diagnose({"steps": [step("a"), step("a", component="")], "output": {"$variable": "v"}})
    summary = summarize(diags)
    assert summary["numFatal"] == 1 and summary["numError"] == 1 and summary["numWarning"] >= 3
    assert [d.kind for d in blocking(diags, errors_block=False)] == ["duplicateStepId"]
    assert {d.kind for d in blocking(diags, errors_block=True)} == {"duplicateStepId", "emptyComponentName"}
    wire = diags[0].to_json()
    assert list(wire)[:4] == ["kind", "code", "level", "formatted"] and "path" in wire


async def test_gateway_blocks_fatal_but_not_error_diagnostics(open_gw: Any) -> None:
    async with open_gw() as (gw, probe):
        with pytest.raises(FlowValidationError) as info:
            await gw.run(
                {"steps": [step("a", component="/probe/echo"), step("a")], "output": {"$step": "a"}}, None
            )
        assert [d.kind for d in info.value.diagnostics] == ["duplicateStepId"]
        # an error-level diagnostic (undefined variable) does not block a library run
        r = await gw.run(
            {
                "steps": [],
                "output": {"$variable": "nope", "default": 1},
                "schemas": {"properties": {"variables": {"type": "object", "properties": {}}}},
            },
            None,
        )
        assert r.result == 1
    assert probe.calls == []


async def test_gateway_validate_adds_config_checks(open_gw: Any) -> None:
    flow = parse_flow(
        {
            "name": "n",
            "description": "d",
            "steps": [
                step("a", component="/nowhere/x"),
                step("b", component="/mock/missing"),
                step("c", component="/mock/known", input="k"),
            ],
            "output": [{"$step": "a"}, {"$step": "b"}, {"$step": "c"}],
        }
    ).flow
    async with open_gw({"/known": {"behaviors": {"k": {"outcome": "success", "result": 1}}}}) as (gw, _):
        diags = {(d.kind, d.level, d.path) for d in gw.validate(flow)}
    assert ("invalidComponent", "error", "$.steps[0].component") in diags
    assert ("unknownComponent", "error", "$.steps[1].component") in diags
    assert not any(p == "$.steps[2].component" for _k, _l, p in diags)
