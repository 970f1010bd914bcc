"""Normalised form and flow ids (flow-format.md §13): the two upstream 0.9.0 vectors, path
normalisation (``"x"`` and ``"$.x"`` give the same id), key order and omitted keys."""

from __future__ import annotations

import json
from pathlib import Path

from stepflow_gateway.flow.load import load_flow, parse_flow
from stepflow_gateway.jsonutil import blob_id

TAG = "https://stepflow.org/schemas/v1/flow.json"

VECTOR_1 = (
    '{"name":"blob-demo","steps":[{"id":"put","component":"/builtin/put_blob","input":{"data":{"$input":"payload"},'
    '"blob_type":"data"}},{"id":"get","component":"/builtin/get_blob","input":{"blob_id":{"$step":"put","path":'
    '"blob_id"}}}],"output":{"blob_id":{"$step":"put","path":"blob_id"},"roundtrip":{"$step":"get","path":"data"}}}'
)
VECTOR_2 = (
    '{"schema":"https://stepflow.org/schemas/v1/flow.json","name":"t","steps":[{"id":"a","component":'
    '"/builtin/create_messages","input":{"user_prompt":"hi"}},{"id":"u","component":"/builtin/create_messages",'
    '"input":{"user_prompt":"unused"}}],"output":{"$step":"a"}}'
)


def flow_id(text: str) -> str:
    return parse_flow(json.loads(text)).flow.flow_id


def test_vector_1() -> None:
    assert flow_id(VECTOR_1) == "7a7da94768824f9031d957ac163245c882b9929b24e4f59767d193c030353d34"


def test_vector_2_with_and_without_schema() -> None:
    expected = "71ec5370137a0734ae42779f40fe3ccc920267def08cc9260ef4f1eb90192d02"
    assert flow_id(VECTOR_2) == expected
    without = json.loads(VECTOR_2)
    del without["schema"]
    assert flow_id(json.dumps(without)) == expected


def test_bare_and_dollar_paths_give_the_same_id() -> None:
    bare = json.loads(VECTOR_1)
    dollar = json.loads(VECTOR_1.replace('"payload"', '"$.payload"').replace('"blob_id"}', '"$.blob_id"}'))
    assert dollar != bare
    assert parse_flow(bare).flow.flow_id == parse_flow(dollar).flow.flow_id
    assert (
        parse_flow({"steps": [], "output": {"$input": "x"}}).flow.flow_id
        == parse_flow({"steps": [], "output": {"$input": "$.x"}}).flow.flow_id
    )
    assert (
        parse_flow({"steps": [], "output": {"$input": "$..x"}}).flow.flow_id
        == parse_flow({"steps": [], "output": {"$input": "$['x']"}}).flow.flow_id
    )


def test_id_is_sha256_of_the_compact_normalised_form() -> None:
    flow = parse_flow(json.loads(VECTOR_1)).flow
    normalised = flow.to_json()
    assert normalised["steps"][0]["input"]["data"] == {"$input": "$.payload"}
    assert normalised["output"]["blob_id"] == {"$step": "put", "path": "$.blob_id"}
    assert flow.flow_id == blob_id(normalised)


def test_normalised_key_order_and_omissions() -> None:
    flow = parse_flow(
        {
            "metadata": {},
            "output": None,
            "steps": [
                {
                    "input": None,
                    "depends_on": [],
                    "metadata": {"m": 1},
                    "skip": {"$input": "s"},
                    "mustExecute": False,
                    "onError": {"action": "useDefault", "defaultValue": 0},
                    "component": "/c",
                    "id": "a",
                    "junk": 1,
                },
            ],
            "schemas": {
                "properties": {
                    "steps": {"properties": {"a": {"type": "string"}}},
                    "input": {"type": "object"},
                },
                "$defs": {},
            },
            "version": "1",
            "description": "d",
            "name": "n",
            "schema": TAG,
            "inputSchema": {},
        }
    ).flow
    out = flow.to_json()
    assert list(out) == ["name", "description", "version", "schemas", "steps"]
    assert list(out["schemas"]) == ["type", "properties"]
    assert list(out["schemas"]["properties"]) == ["input", "steps"]
    assert out["schemas"]["properties"]["steps"] == {
        "type": "object",
        "properties": {"a": {"type": "string"}},
    }
    assert list(out["steps"][0]) == ["id", "component", "onError", "mustExecute", "skipIf", "metadata"]
    assert out["steps"][0]["skipIf"] == {"$input": "$.s"}


def test_empty_flow_and_key_that_needs_brackets() -> None:
    assert parse_flow({}).flow.to_json() == {}
    out = parse_flow({"steps": [], "output": {"$input": "$[\"a.b\"][0]['c]']"}}).flow.to_json()
    assert out["output"] == {"$input": '$["a.b"][0]["c]"]'}
    again = parse_flow(out).flow.to_json()
    assert again == out  # round-trips


def test_yaml_file_and_json_value_give_the_same_id(tmp_path: Path) -> None:
    path = tmp_path / "v.yaml"
    path.write_text(
        "schema: https://stepflow.org/schemas/v1/flow.json\nname: t\nsteps:\n"
        "  - id: a\n    component: /builtin/create_messages\n    input: {user_prompt: hi}\n"
        "  - id: u\n    component: /builtin/create_messages\n    input:\n      user_prompt: unused\n"
        "output: {$step: a}\n",
        encoding="utf-8",
    )
    assert load_flow(path).flow.flow_id == "71ec5370137a0734ae42779f40fe3ccc920267def08cc9260ef4f1eb90192d02"


def test_floats_keep_their_kind_in_the_id() -> None:
    a = parse_flow({"steps": [], "output": 15}).flow.flow_id
    b = parse_flow({"steps": [], "output": 15.0}).flow.flow_id
    assert a != b
    assert b == blob_id({"output": 15.0})
