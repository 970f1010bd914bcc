"""flow-format.md §16, "Semantics that are easy to get wrong": one test (at least) per item, 1–21.

Every test drives the public API (``Gateway.run`` / ``Gateway.submit``) with the real router,
executor and builtin/mock plugins; the probe plugin (``engine_support``) echoes inputs and records
calls so that "did it run" is an observable fact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from engine_support import states

from stepflow_gateway.errors import FlowValidationError
from stepflow_gateway.flow.load import load_flow, parse_flow
from stepflow_gateway.jsonutil import blob_id
from stepflow_gateway.testing import run_tests

pytestmark = pytest.mark.anyio

TAG = "https://stepflow.org/schemas/v1/flow.json"


def echo(step_id: str, input: Any, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "component": "/probe/echo", "input": input, **extra}


def out(output: Any, *steps: dict[str, Any]) -> dict[str, Any]:
    return {"name": "t", "description": "d", "steps": list(steps), "output": output}


def ok(result: Any) -> dict[str, Any]:
    return {"outcome": "success", "result": result}


def failed(code: int, message: str) -> dict[str, Any]:
    return {"outcome": "failed", "error": {"code": code, "message": message}}


# 1 ------------------------------------------------------------------------------------------------
async def test_01_bare_path_is_one_literal_key(open_gw: Any) -> None:
    data = {"a.b": "literal key", "a": {"b": "nested"}, "items[0]": "bracket key", "items": ["first"]}
    flow = out(
        {
            "bare": {"$input": "a.b"},
            "deep": {"$input": "$.a.b"},
            "double_dot": {"$input": "$..a"},
            "bare_bracket": {"$input": "items[0]"},
            "index": {"$input": "$.items[0]"},
            "quoted": {"$input": '$["a.b"]'},
        }
    )
    async with open_gw() as (gw, _):
        r = await gw.run(flow, data)
    assert r.to_json() == ok(
        {
            "bare": "literal key",
            "deep": "nested",
            "double_dot": {"b": "nested"},
            "bare_bracket": "bracket key",
            "index": "first",
            "quoted": "literal key",
        }
    )


async def test_01_bare_step_path_is_one_literal_key(open_gw: Any) -> None:
    flow = out(
        {"bare": {"$step": "s", "path": "a.b"}, "deep": {"$step": "s", "path": "$.a.b"}},
        echo("s", {"a.b": 1, "a": {"b": 2}}),
    )
    async with open_gw() as (gw, _):
        assert (await gw.run(flow, None)).to_json() == ok({"bare": 1, "deep": 2})


# 2 ------------------------------------------------------------------------------------------------
async def test_02_input_takes_its_path_as_its_value(open_gw: Any) -> None:
    flow = out({"$input": "x", "path": "y"})
    loaded = parse_flow(flow)
    # the ignored sibling is reported, not silently dropped
    assert [(d.kind, d.path) for d in loaded.diagnostics] == [("unknownField", "$.output.path")]
    async with open_gw() as (gw, _):
        r = await gw.run(flow, {"x": {"y": "deeper"}, "y": "sibling"})
    assert r.to_json() == ok({"y": "deeper"})


# 3 ------------------------------------------------------------------------------------------------
async def test_03_missing_input_path_fails_with_code_1(open_gw: Any) -> None:
    async with open_gw() as (gw, _):
        r = await gw.run(out({"v": {"$input": "$.x"}}), {"y": 1})
    assert r.to_json() == failed(1, "Input path $.x not found")


async def test_03_missing_step_path_fails_and_null_step_gives_null(open_gw: Any) -> None:
    async with open_gw() as (gw, _):
        missing = await gw.run(out({"$step": "s", "path": "x"}, echo("s", {"y": 1})), None)
        # a bare "x" is displayed normalised as $.x
        assert missing.to_json() == failed(1, "Path $.x not found")
        null = await gw.run(out({"$step": "s", "path": "$.deep[3].x"}, echo("s", None)), None)
        assert null.to_json() == ok(None)
        index = await gw.run(out({"$step": "s", "path": "$[5]"}, echo("s", [1])), None)
        assert index.to_json() == failed(1, "Path $[5] not found")
        wrong_kind = await gw.run(out({"$step": "s", "path": "$.a"}, echo("s", [1])), None)
        assert wrong_kind.to_json() == failed(1, "Path $.a not found")


# 4 ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cond", "taken"),
    [
        (0, "then"),
        ("", "then"),
        ([], "then"),
        ({}, "then"),
        ("false", "then"),
        (None, "else"),
        (False, "else"),
    ],
)
async def test_04_truthiness(open_gw: Any, cond: Any, taken: str) -> None:
    flow = out({"$if": {"$input": "c"}, "then": "then", "else": "else"})
    async with open_gw() as (gw, _):
        assert (await gw.run(flow, {"c": cond})).to_json() == ok(taken)


async def test_04_failing_condition_means_false(open_gw: Any) -> None:
    flow = out(
        {
            "missing_input": {"$if": {"$input": "$.nope"}, "then": "then", "else": "else"},
            "failed_step": {"$if": {"$step": "f"}, "then": "then", "else": "else"},
            "no_else": {"$if": {"$step": "f"}, "then": "then"},
        },
        {"id": "f", "component": "/probe/fail", "input": {"code": 9, "message": "nope"}},
    )
    async with open_gw() as (gw, _):
        r = await gw.run(flow, {})
    assert r.to_json() == ok({"missing_input": "else", "failed_step": "else", "no_else": None})


# 5 ------------------------------------------------------------------------------------------------
async def test_05_coalesce_passes_null_and_stops_at_failure(open_gw: Any) -> None:
    async with open_gw() as (gw, _):
        r = await gw.run(
            out({"$coalesce": [None, {"$input": "$.a"}, {"$input": "$.b"}]}), {"a": None, "b": 2}
        )
        assert r.to_json() == ok(2)
        r = await gw.run(out({"$coalesce": [None, {"$input": "$.missing"}, "never"]}), {})
        assert r.to_json() == failed(1, "Input path $.missing not found")
        r = await gw.run(out({"$coalesce": [None, {"$input": "$.a"}]}), {"a": None})
        assert r.to_json() == ok(None)
        r = await gw.run(out({"$coalesce": [False, "x"]}), {})
        assert r.to_json() == ok(False)  # only null is passed over


# 6 ------------------------------------------------------------------------------------------------
async def test_06_key_precedence(open_gw: Any) -> None:
    flow = out(
        {
            "literal_over_if": {"$literal": {"$input": "a"}, "$if": True, "then": "no"},
            "if_over_coalesce": {"$if": True, "then": "if", "$coalesce": ["no"]},
            "coalesce_over_step": {"$coalesce": ["coalesce"], "$step": "s"},
            "step_over_input": {"$step": "s", "$input": "a"},
            "input_over_variable": {"$input": "a", "$variable": "v"},
            "variable_over_template": {"$variable": "v", "default": "var", "$template": "no"},
            "template_over_from": {"$template": "t{{x}}", "values": {"x": 1}, "$from": {"step": "s"}},
            "other_dollar_key_is_data": {"$custom": {"$input": "a"}},
        },
        echo("s", "step"),
    )
    flow["schemas"] = {
        "properties": {"variables": {"type": "object", "properties": {"v": {"type": "object"}}}}
    }
    async with open_gw() as (gw, _):
        r = await gw.run(flow, {"a": "input"})
    assert r.to_json() == ok(
        {
            "literal_over_if": {"$input": "a"},
            "if_over_coalesce": "if",
            "coalesce_over_step": "coalesce",
            "step_over_input": "step",
            "input_over_variable": "input",
            "variable_over_template": "var",
            "template_over_from": "t1",
            "other_dollar_key_is_data": {"$custom": "input"},
        }
    )


async def test_06_nested_literal_is_not_evaluated(open_gw: Any) -> None:
    async with open_gw() as (gw, _):
        r = await gw.run(out({"$literal": {"$literal": {"$step": "x"}}}), None)
    assert r.to_json() == ok({"$literal": {"$step": "x"}})


# 7 ------------------------------------------------------------------------------------------------
async def test_07_unreferenced_steps_never_run_but_must_execute_and_depends_on_do(open_gw: Any) -> None:
    flow = out(
        {"$step": "used"},
        echo("side_effect", "ignored"),
        echo("must", "m", mustExecute=True),
        echo("ordered", "o"),
        echo("used", "u", depends_on=["ordered"]),
    )
    async with open_gw() as (gw, probe):
        handle = await gw.submit(flow, [None])
    assert handle.results is not None and handle.results[0].to_json() == ok("u")
    assert sorted(c.step_id for c in probe.calls) == ["must", "ordered", "used"]
    st = states(handle)
    assert st["side_effect"] == "blocked" and st["must"] == "completed" and st["ordered"] == "completed"
    # depends_on orders: "ordered" finished before "used" started
    assert probe.called("ordered")[0].at <= probe.called("used")[0].at


# 8 ------------------------------------------------------------------------------------------------
async def test_08_no_early_abort(open_gw: Any) -> None:
    flow = out(
        {"$step": "fine"},
        {"id": "bad", "component": "/probe/boom", "mustExecute": True},
        {
            "id": "bad_business",
            "component": "/probe/fail",
            "input": {"code": 3, "message": "x"},
            "mustExecute": True,
        },
        echo("fine", "still ran"),
    )
    async with open_gw() as (gw, probe):
        handle = await gw.submit(flow, [None])
    assert handle.results is not None and handle.results[0].to_json() == ok("still ran")
    st = states(handle)
    assert st == {"bad": "failed", "bad_business": "failed", "fine": "completed"}
    assert len(probe.calls) == 3


# 9 ------------------------------------------------------------------------------------------------
async def test_09_dependent_of_failed_step_inherits_error_and_ignores_its_own_on_error(open_gw: Any) -> None:
    flow = out(
        {"$step": "child"},
        {"id": "parent", "component": "/probe/fail", "input": {"code": 42, "message": "parent broke"}},
        echo(
            "child", {"x": {"$step": "parent"}}, onError={"action": "useDefault", "defaultValue": "not used"}
        ),
    )
    async with open_gw() as (gw, probe):
        handle = await gw.submit(flow, [None])
    assert handle.results is not None
    assert handle.results[0].to_json() == failed(42, "parent broke")
    assert probe.called("child") == []
    assert states(handle)["child"] == "failed"


async def test_09_component_error_is_inherited_verbatim_with_its_stack(open_gw: Any) -> None:
    flow = out(
        {"$step": "child"}, {"id": "parent", "component": "/probe/boom"}, echo("child", {"$step": "parent"})
    )
    async with open_gw() as (gw, _):
        r = (await gw.run(flow, None)).to_json()
    assert r["outcome"] == "failed"
    assert r["error"]["code"] == 500 and r["error"]["message"] == 'step "parent" failed'
    stack = r["error"]["data"]["stack"]
    assert stack[0] == {
        "error": 'step "parent" failed',
        "attachments": ["Component: /boom", "Component execution failed for step 'parent'"],
    }
    assert stack[1]["error"] == "kaboom"


# 10 -----------------------------------------------------------------------------------------------
async def test_10_use_default_value_is_a_literal(open_gw: Any) -> None:
    default = {"$input": "x", "$step": "other", "nested": [{"$literal": 1}]}
    flow = out(
        {"$step": "s"},
        {"id": "s", "component": "/probe/boom", "onError": {"action": "useDefault", "defaultValue": default}},
    )
    async with open_gw() as (gw, _):
        assert (await gw.run(flow, {"x": "no"})).to_json() == ok(default)


# 11 -----------------------------------------------------------------------------------------------
async def test_11_implicit_variable_defaults_beat_inline_defaults(open_gw: Any) -> None:
    flow = out(
        {
            "s": {"$variable": "s", "default": "x"},
            "n": {"$variable": "n", "default": 5},
            "b": {"$variable": "b", "default": True},
            "nullable": {"$variable": "nullable", "default": "x"},
            "required": {"$variable": "req", "default": "inline"},
            "object": {"$variable": "obj", "default": "inline"},
        }
    )
    flow["schemas"] = {
        "properties": {
            "variables": {
                "type": "object",
                "properties": {
                    "s": {"type": "string"},
                    "n": {"type": "number"},
                    "b": {"type": "boolean"},
                    "nullable": {"type": ["string", "null"]},
                    "req": {"type": "string"},
                    "obj": {"type": "object"},
                },
                "required": ["req"],
            }
        }
    }
    async with open_gw() as (gw, _):
        r = await gw.run(flow, None)
    assert r.to_json() == ok(
        {"s": "", "n": 0, "b": False, "nullable": None, "required": "inline", "object": "inline"}
    )


# 12 -----------------------------------------------------------------------------------------------
async def test_12_forward_reference_is_fatal_even_in_an_untaken_branch(open_gw: Any) -> None:
    flow = out(
        {"$step": "a"},
        echo("a", {"$if": False, "then": {"$step": "b"}, "else": 1}),
        echo("b", 2),
    )
    async with open_gw() as (gw, probe):
        with pytest.raises(FlowValidationError) as info:
            await gw.run(flow, None)
    assert probe.calls == []
    assert [(d.kind, d.path) for d in info.value.diagnostics] == [
        ("undefinedStepReference", "$.steps[0].input")
    ]
    assert "comes later" in str(info.value)


# 13 -----------------------------------------------------------------------------------------------
async def test_13_blob_ids_hash_data_flow_ids_hash_normalised_flow_and_eval_runs_by_id(open_gw: Any) -> None:
    inner = {"schema": TAG, "name": "inner", "steps": [], "output": {"$input": "v"}}
    flow = out(
        {
            "data_id": {"$step": "data", "path": "blob_id"},
            "flow_id": {"$step": "store", "path": "blob_id"},
            "evaluated": {"$step": "run", "path": "$.result"},
        },
        {"id": "data", "component": "/builtin/put_blob", "input": {"data": {"x": 1}, "blob_type": "data"}},
        {
            "id": "store",
            "component": "/builtin/put_blob",
            "input": {"data": {"$literal": inner}, "blob_type": "flow"},
        },
        {
            "id": "run",
            "component": "/builtin/eval",
            "input": {"flow_id": {"$step": "store", "path": "blob_id"}, "input": {"v": 15.0}},
        },
    )
    async with open_gw() as (gw, _):
        r = (await gw.run(flow, None)).to_json()
    assert r["outcome"] == "success"
    assert r["result"]["data_id"] == "5041bf1f713df204784353e82f6a4a535931cb64f1f4b4a5aeaffcb720918b22"
    # the flow blob is keyed by the flow id (normalised: "v" -> "$.v", no schema tag)
    normalised = {"name": "inner", "output": {"$input": "$.v"}}
    assert r["result"]["flow_id"] == blob_id(normalised) == parse_flow(inner).flow.flow_id
    assert r["result"]["flow_id"] != blob_id(inner)
    evaluated = r["result"]["evaluated"]
    assert evaluated == {"outcome": "success", "result": 15.0}
    assert type(evaluated["result"]) is float


# 14 -----------------------------------------------------------------------------------------------
MOCK_KINDS = """
plugins:
  mock:
    type: mock
    components:
      /kind:
        behaviors:
          { n: 1 }: { outcome: success, result: int }
          { n: 1.0 }: { outcome: success, result: float }
          { n: true }: { outcome: success, result: bool }
routes:
  "/mock/{*component}": [ { plugin: mock } ]
"""


async def test_14_numbers_keep_their_kind_in_lookup_and_results(open_gw: Any) -> None:
    flow = out(
        {"int": {"$step": "i"}, "float": {"$step": "f"}, "bool": {"$step": "b"}, "raw": {"$input": "$"}},
        {"id": "i", "component": "/mock/kind", "input": {"n": {"$input": "i"}}},
        {"id": "f", "component": "/mock/kind", "input": {"n": {"$input": "f"}}},
        {"id": "b", "component": "/mock/kind", "input": {"n": {"$input": "b"}}},
    )
    async with open_gw(config_yaml=MOCK_KINDS) as (gw, _):
        r = (await gw.run(flow, {"i": 1, "f": 1.0, "b": True})).to_json()
    assert r["result"]["int"] == "int" and r["result"]["float"] == "float" and r["result"]["bool"] == "bool"
    assert type(r["result"]["raw"]["f"]) is float


# 15 -----------------------------------------------------------------------------------------------
async def test_15_test_matching_partial_objects_exact_arrays(tmp_path: Path) -> None:
    flow = tmp_path / "f.yaml"
    flow.write_text(
        f"""
schema: {TAG}
name: match
steps: []
output: {{ obj: {{ a: 1, b: 2 }}, arr: [1, 2], n: 15 }}
test:
  config:
    plugins: {{ builtin: {{ type: builtin }} }}
    routes: {{ "/builtin/{{*component}}": [ {{ plugin: builtin }} ] }}
  cases:
    - name: partial object
      input: {{}}
      output: {{ outcome: success, result: {{ obj: {{ a: 1 }} }} }}
    - name: extra array element
      input: {{}}
      output: {{ outcome: success, result: {{ arr: [1] }} }}
    - name: float is not int
      input: {{}}
      output: {{ outcome: success, result: {{ n: 15.0 }} }}
""",
        encoding="utf-8",
    )
    lines: list[str] = []
    summary = await run_tests([flow], write=lines.append)
    text = "\n".join(lines)
    assert (summary.passed, summary.failed) == (1, 2), text
    assert summary.exit_code == 1
    assert f"{flow}: 1/3 passed" in text


# 16 -----------------------------------------------------------------------------------------------
async def test_16_eval_run_id_is_the_calling_runs_id(open_gw: Any) -> None:
    inner = {"schema": TAG, "steps": [], "output": 1}
    flow = out(
        {"$step": "run"},
        {
            "id": "store",
            "component": "/builtin/put_blob",
            "input": {"data": {"$literal": inner}, "blob_type": "flow"},
        },
        {
            "id": "run",
            "component": "/builtin/eval",
            "input": {"flow_id": {"$step": "store", "path": "blob_id"}, "input": None},
        },
    )
    async with open_gw() as (gw, _):
        handle = await gw.submit(flow, [None])
    assert handle.results is not None
    result = handle.results[0].to_json()["result"]
    assert result["run_id"] == handle.run_id
    assert result["result"] == ok(1)


# 17 -----------------------------------------------------------------------------------------------
async def test_17_error_messages_byte_for_byte(open_gw: Any) -> None:
    weird = 'we"ird\\id'
    mock = {"/strict": {"behaviors": {"known": {"outcome": "success", "result": 1}}}}
    async with open_gw(mock) as (gw, _):
        r = await gw.run(
            out({"$step": weird}, {"id": weird, "component": "/mock/strict", "input": "other"}), None
        )
    err = r.to_json()["error"]
    assert err["message"] == 'step "we\\"ird\\\\id" failed'
    assert err["data"]["stack"] == [
        {
            "error": 'step "we\\"ird\\\\id" failed',
            "attachments": [
                "Component: /strict",
                "Component execution failed for step 'we\"ird\\id'",
                'No behavior defined for /strict on "other"',
            ],
        },
        {"error": "error executing user-defined function"},
    ]


# 18 -----------------------------------------------------------------------------------------------
async def test_18_schema_tag_needed_by_test_runner_but_not_by_run(open_gw: Any, tmp_path: Path) -> None:
    untagged = tmp_path / "untagged.yaml"
    untagged.write_text(
        "name: untagged\nsteps: []\noutput: {$input: x}\n"
        "test:\n  cases:\n    - name: c\n      input: {x: 1}\n      output: {outcome: success, result: 2}\n",
        encoding="utf-8",
    )
    lines: list[str] = []
    summary = await run_tests([untagged], write=lines.append)
    assert summary.exit_code == 0 and summary.passed == 0 and summary.failed == 0  # skipped, not run
    async with open_gw() as (gw, _):
        assert (await gw.run(str(untagged), {"x": 1})).to_json() == ok(1)


# 19 -----------------------------------------------------------------------------------------------
async def test_19_flow_id_ignores_schema_tag_and_normal_form_omits_it() -> None:
    body = {"name": "x", "steps": [{"id": "a", "component": "/builtin/eval", "input": {"$input": "q"}}]}
    with_tag = parse_flow({"schema": TAG, **body}).flow
    without = parse_flow(body).flow
    assert with_tag.flow_id == without.flow_id
    assert "schema" not in with_tag.to_json()
    assert list(with_tag.to_json(with_schema=True))[0] == "schema"


# 20 -----------------------------------------------------------------------------------------------
async def test_20_single_input_runs_are_not_sequential(open_gw: Any) -> None:
    # both gate calls must be in flight at once to finish (upstream's default would deadlock)
    flow = out(
        [{"$step": "a"}, {"$step": "b"}],
        {"id": "a", "component": "/probe/gate", "input": {"gate": "g", "n": 2}},
        {"id": "b", "component": "/probe/gate", "input": {"gate": "g", "n": 2}},
    )
    async with open_gw() as (gw, probe):
        r = await gw.run(flow, None)
    assert r.outcome == "success" and probe.peak == 2


# 21 -----------------------------------------------------------------------------------------------
async def test_21_yaml_scalars_stay_strings_and_blob_hash_matches(open_gw: Any, tmp_path: Path) -> None:
    path = tmp_path / "blob.yaml"
    path.write_text(
        "name: y\nsteps:\n  - id: put\n    component: /builtin/put_blob\n    input:\n      blob_type: data\n"
        "      data:\n        message: Hello, blobs!\n        number: 42\n"
        "        timestamp: 2024-01-01 00:00:00+00:00\n"
        "output:\n  id: {$step: put, path: blob_id}\n  flags: [yes, no, on, off, 2024-01-01, 017, 1e3]\n",
        encoding="utf-8",
    )
    async with open_gw() as (gw, _):
        r = (await gw.run(str(path), None)).to_json()
    assert r["result"]["id"] == "7d1835be19f018f42ad769cab21e7b7c6906045c4a3f5366ee95a2618de608f4"
    assert r["result"]["flags"] == ["yes", "no", "on", "off", "2024-01-01", "017", 1000.0]


async def test_21_mapping_keys_can_be_mappings(open_gw: Any) -> None:
    config = """
plugins:
  mock:
    type: mock
    components:
      /one_output:
        behaviors:
          { input: "a" }: { outcome: success, result: { output: b } }
routes:
  "/mock/{*component}": [ { plugin: mock } ]
"""
    flow = out(
        {"$step": "s", "path": "output"},
        {"id": "s", "component": "/mock/one_output", "input": {"input": "a"}},
    )
    async with open_gw(config_yaml=config) as (gw, _):
        assert (await gw.run(flow, None)).to_json() == ok("b")


async def test_flow_file_round_trip_keeps_key_order(tmp_path: Path) -> None:
    path = tmp_path / "order.yaml"
    path.write_text("name: o\nsteps: []\noutput: {z: 1, a: 2, m: {$input: $}}\n", encoding="utf-8")
    flow = load_flow(path).flow
    assert list(flow.to_json()["output"]) == ["z", "a", "m"]
