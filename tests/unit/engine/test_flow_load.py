"""Load errors (flow-format.md §1, §4, §5, §15): each a ``FlowLoadError`` whose ``str()`` names the file
and the JSON path (and the step, when there is one), never a traceback-only message."""

from __future__ import annotations

from pathlib import Path

import pytest

from stepflow_gateway.errors import FlowLoadError
from stepflow_gateway.flow.load import load_flow

HEAD = "schema: https://stepflow.org/schemas/v1/flow.json\nname: t\n"


def load_error(tmp_path: Path, text: str, name: str = "flow.yaml") -> FlowLoadError:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FlowLoadError) as info:
        load_flow(path)
    message = str(info.value)
    assert str(path) in message, message
    assert "\n" not in message
    return info.value


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    err = load_error(tmp_path, HEAD + "steps:\n  - id: a\n    component: [unclosed\n")
    assert "line" in str(err)


def test_multi_document_yaml_is_rejected(tmp_path: Path) -> None:
    load_error(tmp_path, HEAD + "steps: []\n---\nname: second\n")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    err = load_error(tmp_path, "- just\n- a list\n")
    assert err.json_path == "$"


def test_step_reference_must_be_a_string(tmp_path: Path) -> None:
    err = load_error(
        tmp_path, HEAD + "steps:\n  - id: a\n    component: /x\n    input: {v: {$step: {step: b}}}\n"
    )
    assert err.json_path == "$.steps[0].input.v.$step"
    assert err.step_id == "a"
    assert "step 'a'" in str(err) and "$.steps[0].input.v.$step" in str(err)


def test_unknown_on_error_action(tmp_path: Path) -> None:
    err = load_error(tmp_path, HEAD + "steps:\n  - id: a\n    component: /x\n    onError: {action: skip}\n")
    assert err.json_path == "$.steps[0].onError.action"
    assert "unknown onError action 'skip'" in str(err)


@pytest.mark.parametrize("path", ["'$[abc]'", "'$abc'", "'$.a[-1]'", "'$.a[1:2]'", "'$.a[0'"])
def test_bad_paths(tmp_path: Path, path: str) -> None:
    # A bare "[abc]" (no leading "$") is one literal key, as upstream; "[abc]" as a segment is an error.
    err = load_error(tmp_path, HEAD + f"steps: []\noutput: {{x: {{$input: {path}}}}}\n")
    assert err.json_path == "$.output.x.$input"
    assert "invalid path" in str(err)


def test_bad_step_path(tmp_path: Path) -> None:
    err = load_error(
        tmp_path,
        HEAD + "steps:\n  - id: a\n    component: /x\n  - id: b\n    component: /x\n"
        "    input: {$step: a, path: '$[abc]'}\n",
    )
    assert err.json_path == "$.steps[1].input.path" and err.step_id == "b"


def test_path_must_be_a_string(tmp_path: Path) -> None:
    err = load_error(tmp_path, HEAD + "steps: []\noutput: {$input: 3}\n")
    assert err.json_path == "$.output.$input"


def test_bare_bracket_text_is_a_literal_key(tmp_path: Path) -> None:
    path = tmp_path / "bare.yaml"
    path.write_text(HEAD + "steps: []\noutput: {$input: '[abc]'}\n", encoding="utf-8")
    assert load_flow(path).flow.to_json()["output"] == {"$input": '$["[abc]"]'}


@pytest.mark.parametrize(
    ("body", "json_path"),
    [
        ("steps: {a: 1}\n", "$.steps"),
        ("steps: [3]\n", "$.steps[0]"),
        ("steps:\n  - component: /x\n", "$.steps[0]"),
        ("steps:\n  - {id: 3, component: /x}\n", "$.steps[0].id"),
        ("steps:\n  - {id: a, component: 3}\n", "$.steps[0].component"),
        ("steps:\n  - {id: a, component: /x, mustExecute: yes}\n", "$.steps[0].mustExecute"),
        ("steps:\n  - {id: a, component: /x, depends_on: b}\n", "$.steps[0].depends_on"),
        ("steps:\n  - {id: a, component: /x, onError: fail}\n", "$.steps[0].onError"),
        ("output: {$if: true}\n", "$.output"),
        ("output: {$coalesce: 1}\n", "$.output"),
        ("output: {$template: 1}\n", "$.output.$template"),
        ("output: {$step: a, onSkip: {action: explode}}\n", "$.output.onSkip"),
        ("output: {$from: {nothing: 1}}\n", "$.output.$from"),
        ("schemas: []\n", "$.schemas"),
        ("name: [1]\n", "$.name"),
    ],
)
def test_structural_errors_name_the_json_path(tmp_path: Path, body: str, json_path: str) -> None:
    err = load_error(tmp_path, "schema: https://stepflow.org/schemas/v1/flow.json\n" + body)
    assert err.json_path == json_path, str(err)


def test_duplicate_structural_key_is_an_error_but_value_duplicate_a_warning(tmp_path: Path) -> None:
    err = load_error(tmp_path, HEAD + "steps: []\nsteps: []\n")
    assert "duplicate key 'steps'" in str(err)
    path = tmp_path / "dup_value.yaml"
    path.write_text(HEAD + "steps: []\noutput: {a: 1, a: 2}\n", encoding="utf-8")
    loaded = load_flow(path)
    assert loaded.flow.to_json()["output"] == {"a": 2}
    assert [(d.kind, d.path) for d in loaded.diagnostics] == [("unknownField", "$.output.a")]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FlowLoadError) as info:
        load_flow(tmp_path / "absent.yaml")
    assert "absent.yaml" in str(info.value)


def test_json_flow_file(tmp_path: Path) -> None:
    path = tmp_path / "flow.json"
    path.write_text('{"name": "j", "steps": [], "output": {"$input": "a.b"}}', encoding="utf-8")
    loaded = load_flow(path)
    assert loaded.flow.to_json() == {"name": "j", "output": {"$input": '$["a.b"]'}}
    assert loaded.flow.source == str(path)
    assert not loaded.has_schema_tag
