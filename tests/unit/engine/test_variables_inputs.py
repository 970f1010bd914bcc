"""Flow inputs (§11: defaults, ``$ref`` to ``#/schemas/$defs``, validation), variables (§12.1:
resolution order, implicit defaults) and batch runs (§12.4)."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.anyio


def flow(output: Any, *steps: dict[str, Any], schemas: Any = None) -> dict[str, Any]:
    f: dict[str, Any] = {"name": "t", "description": "d", "steps": list(steps), "output": output}
    if schemas is not None:
        f["schemas"] = schemas
    return f


INPUT_SCHEMAS = {
    "$defs": {
        "Address": {
            "type": "object",
            "properties": {"city": {"type": "string", "default": "Paris"}, "zip": {"type": "string"}},
            "required": ["zip"],
        },
    },
    "properties": {
        "input": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "default": "anon"},
                "count": {"type": "integer", "default": 3},
                "address": {"$ref": "#/schemas/$defs/Address", "default": {"zip": "75000"}},
                "numbers": {
                    "type": "object",
                    "properties": {"a": {"type": "integer"}, "b": {"type": "integer", "default": 2}},
                },
                "choice": {"oneOf": [{"type": "object", "properties": {"x": {"default": 1}}}]},
            },
            "required": ["numbers"],
        },
    },
}


async def test_defaults_are_applied_recursively_through_refs(open_gw: Any) -> None:
    async with open_gw() as (gw, _):
        r = await gw.run(flow({"$input": "$"}, schemas=INPUT_SCHEMAS), {"numbers": {"a": 1}, "choice": {}})
    assert r.to_json() == {
        "outcome": "success",
        "result": {
            "numbers": {"a": 1, "b": 2},
            "choice": {},  # no defaults from oneOf branches
            "name": "anon",
            "count": 3,
            "address": {"zip": "75000", "city": "Paris"},  # a default object gets its own defaults
        },
    }


async def test_supplied_values_are_kept_and_defaults_are_deep_copies(open_gw: Any) -> None:
    async with open_gw() as (gw, _):
        first, second = await gw.run_batch(
            flow({"$input": "$.address"}, schemas=INPUT_SCHEMAS),
            [{"numbers": {}, "address": {"zip": "1", "city": "Lyon"}}, {"numbers": {}}],
        )
    assert first.result == {"zip": "1", "city": "Lyon"}
    assert second.result == {"zip": "75000", "city": "Paris"}
    assert INPUT_SCHEMAS["properties"]["input"]["properties"]["address"]["default"] == {"zip": "75000"}


async def test_validation_failure_names_the_json_path(open_gw: Any) -> None:
    f = flow({"$step": "s"}, {"id": "s", "component": "/probe/echo", "input": 1}, schemas=INPUT_SCHEMAS)
    async with open_gw() as (gw, probe):
        r = (await gw.run(f, {"numbers": {"a": "x"}})).to_json()
    assert r["outcome"] == "failed"
    assert r["error"]["code"] == 400
    assert r["error"]["message"] == "Input validation failed at $.numbers.a: 'x' is not of type 'integer'"
    assert r["error"]["data"]["errors"][0] == {
        "path": "$.numbers.a",
        "message": "'x' is not of type 'integer'",
    }
    assert probe.calls == []  # no step runs


async def test_validation_through_ref_and_required(open_gw: Any) -> None:
    async with open_gw() as (gw, _):
        missing = (await gw.run(flow(1, schemas=INPUT_SCHEMAS), {})).to_json()
        bad_ref = (
            await gw.run(flow(1, schemas=INPUT_SCHEMAS), {"numbers": {}, "address": {"city": "x"}})
        ).to_json()
    assert missing["error"]["message"] == "Input validation failed at $: 'numbers' is a required property"
    assert bad_ref["error"]["message"] == "Input validation failed at $.address: 'zip' is a required property"


async def test_batch_items_are_isolated_and_in_order(open_gw: Any) -> None:
    f = flow({"$input": "$.numbers.a"}, schemas=INPUT_SCHEMAS)
    items = [{"numbers": {"a": 1}}, {"numbers": {"a": "bad"}}, {"numbers": {}}, {"numbers": {"a": 4}}]
    async with open_gw() as (gw, _):
        results = await gw.run_batch(f, items)
    assert [r.to_json() for r in results] == [
        {"outcome": "success", "result": 1},
        {
            "outcome": "failed",
            "error": {
                "code": 400,
                "message": "Input validation failed at $.numbers.a: 'bad' is not of type 'integer'",
                "data": {"errors": [{"path": "$.numbers.a", "message": "'bad' is not of type 'integer'"}]},
            },
        },
        {"outcome": "failed", "error": {"code": 1, "message": "Input path $.numbers.a not found"}},
        {"outcome": "success", "result": 4},
    ]


async def test_no_input_schema_means_no_validation(open_gw: Any) -> None:
    async with open_gw() as (gw, _):
        assert (await gw.run(flow({"$input": "$"}), "anything")).result == "anything"


async def test_schema_dialect_is_honoured(open_gw: Any) -> None:
    schemas = {
        "properties": {
            "input": {
                "$schema": "http://json-schema.org/draft-04/schema#",
                "type": "object",
                "properties": {"n": {"type": "number", "maximum": 5, "exclusiveMaximum": True}},
            }
        }
    }
    async with open_gw() as (gw, _):
        ok = await gw.run(flow({"$input": "n"}, schemas=schemas), {"n": 4})
        bad = await gw.run(flow({"$input": "n"}, schemas=schemas), {"n": 5})
    assert ok.result == 4
    assert bad.outcome == "failed" and bad.error is not None and bad.error.code == 400


# -- variables --------------------------------------------------------------------------------------
VARIABLES = {
    "properties": {
        "variables": {
            "type": "object",
            "properties": {
                "explicit": {"type": "string", "default": "schema default"},
                "implicit": {"type": "integer"},
                "config": {"type": "object"},
                "needed": {"type": "string"},
                "token": {"type": "string", "is_secret": True},
            },
            "required": ["needed", "config"],
        }
    }
}


async def test_resolution_order_supplied_then_schema_then_inline(open_gw: Any) -> None:
    f = flow(
        {
            "explicit": {"$variable": "explicit", "default": "inline"},
            "implicit": {"$variable": "implicit", "default": 99},
            "config_inline": {"$variable": "config", "default": {"from": "inline"}},
            "needed_inline": {"$variable": "needed", "default": {"$input": "fallback"}},
        },
        schemas=VARIABLES,
    )
    async with open_gw() as (gw, _):
        defaults = await gw.run(f, {"fallback": "from input"})
        supplied = await gw.run(
            f,
            {"fallback": "from input"},
            variables={"explicit": "given", "implicit": 7, "config": {"x": 1}, "needed": "n"},
        )
    assert defaults.result == {
        "explicit": "schema default",
        "implicit": 0,
        "config_inline": {"from": "inline"},
        "needed_inline": "from input",
    }
    assert supplied.result == {
        "explicit": "given",
        "implicit": 7,
        "config_inline": {"x": 1},
        "needed_inline": "n",
    }


async def test_variable_sub_paths_and_inline_default_on_miss(open_gw: Any) -> None:
    f = flow(
        {
            "deep": {"$variable": "$.config.db.host"},
            "miss": {"$variable": "$.config.db.port", "default": 5432},
        },
        schemas=VARIABLES,
    )
    async with open_gw() as (gw, _):
        r = await gw.run(f, None, variables={"config": {"db": {"host": "h"}}})
    assert r.result == {"deep": "h", "miss": 5432}


async def test_missing_required_variable_fails_only_where_evaluated(open_gw: Any) -> None:
    async with open_gw() as (gw, probe):
        unused = await gw.run(
            flow({"$step": "s"}, {"id": "s", "component": "/probe/echo", "input": 1}, schemas=VARIABLES), None
        )
        used = await gw.run(flow({"v": {"$variable": "needed"}}, schemas=VARIABLES), None)
        sub = await gw.run(
            flow({"$variable": "$.config.x"}, schemas=VARIABLES), None, variables={"config": {}}
        )
    assert unused.result == 1
    assert used.to_json() == {
        "outcome": "failed",
        "error": {"code": 1, "message": "Undefined variable: needed"},
    }
    assert sub.to_json() == {
        "outcome": "failed",
        "error": {"code": 1, "message": "Undefined variable: config"},
    }


async def test_variables_reach_step_inputs_and_secrets_pass_unchanged(open_gw: Any) -> None:
    f = flow(
        {"$step": "s"},
        {"id": "s", "component": "/probe/echo", "input": {"auth": {"$variable": "token"}}},
        schemas=VARIABLES,
    )
    async with open_gw() as (gw, probe):
        r = await gw.run(f, None, variables={"token": "s3cret", "needed": "x", "config": {}})
    assert r.result == {"auth": "s3cret"}
    assert probe.calls[0].input == {"auth": "s3cret"}


async def test_legacy_from_variable_with_default(open_gw: Any) -> None:
    f = flow(
        {"$from": {"variable": "config", "default": {"$input": "not evaluated"}}, "path": "$.x"},
        schemas=VARIABLES,
    )
    async with open_gw() as (gw, _):
        given = await gw.run(f, None, variables={"config": {"x": 1}})
        default = await gw.run(f, None)
    assert given.result == 1
    assert default.result == {"$input": "not evaluated"}


async def test_nested_runs_get_no_variables(open_gw: Any) -> None:
    inner = {
        "schema": "https://stepflow.org/schemas/v1/flow.json",
        "steps": [],
        "output": {"$variable": "v", "default": "inner default"},
        "schemas": {"properties": {"variables": {"type": "object", "properties": {"v": {"type": "object"}}}}},
    }
    f = flow(
        {"outer": {"$variable": "v"}, "inner": {"$step": "run", "path": "$.result.result"}},
        {
            "id": "store",
            "component": "/builtin/put_blob",
            "input": {"data": {"$literal": inner}, "blob_type": "flow"},
        },
        {
            "id": "run",
            "component": "/builtin/eval",
            "input": {"flow_id": {"$step": "store", "path": "blob_id"}, "input": {}},
        },
        schemas={"properties": {"variables": {"type": "object", "properties": {"v": {"type": "object"}}}}},
    )
    async with open_gw() as (gw, _):
        r = await gw.run(f, None, variables={"v": {"parent": True}})
    assert r.result == {"outer": {"parent": True}, "inner": "inner default"}
