"""yaml_loader: serde_yaml scalar rules (flow-format.md §15), keys, tags, duplicates, errors."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from stepflow_gateway.errors import FlowLoadError
from stepflow_gateway.jsonutil import dumps_compact
from stepflow_gateway.yaml_loader import (
    ComplexKeyMap,
    DuplicateKey,
    YamlDocument,
    YamlError,
    load_yaml,
    load_yaml_file,
)


def value_of(scalar: str) -> object:
    return load_yaml(f"v: {scalar}\n").value["v"]


@pytest.mark.parametrize(
    ("scalar", "expected"),
    [
        # YAML 1.1 booleans are strings; only lowercase true/false are booleans
        ("yes", "yes"),
        ("no", "no"),
        ("on", "on"),
        ("off", "off"),
        ("y", "y"),
        ("n", "n"),
        ("True", "True"),
        ("FALSE", "FALSE"),
        ("Yes", "Yes"),
        ("true", True),
        ("false", False),
        # nulls
        ("null", None),
        ("~", None),
        ("", None),
        ("Null", "Null"),
        ("NULL", "NULL"),
        # dates and timestamps stay strings
        ("2024-01-01", "2024-01-01"),
        ("2024-01-01 00:00:00+00:00", "2024-01-01 00:00:00+00:00"),
        ("2001-12-14t21:59:43.10-05:00", "2001-12-14t21:59:43.10-05:00"),
        # floats
        ("1e3", 1000.0),
        ("1.0e5", 100000.0),
        (".5", 0.5),
        ("5.", 5.0),
        ("-.5", -0.5),
        ("+.5", 0.5),
        ("1.5E-3", 0.0015),
        ("15.0", 15.0),
        ("-0.0", -0.0),
        ("017.5", 17.5),
        # ints
        ("+1", 1),
        ("0", 0),
        ("-0", 0),
        ("42", 42),
        ("-42", -42),
        ("0x1F", 31),
        ("0o17", 15),
        ("0b101", 5),
        ("-0x1F", -31),
        ("+0o17", 15),
        ("18446744073709551615", 18446744073709551615),
        ("-9223372036854775808", -9223372036854775808),
        # too wide for serde_json's integers: a float, as serde_yaml reads it
        ("99999999999999999999", 1e20),
        # strings that YAML 1.1 or Python would read as numbers
        ("017", "017"),
        ("-017", "-017"),
        ("00", "00"),
        ("1_000", "1_000"),
        ("1:20", "1:20"),
        ("0X1F", "0X1F"),
        ("0x", "0x"),
        ("0xZZ", "0xZZ"),
        ("+-1", "+-1"),
        ("--1", "--1"),
        ("inf", "inf"),
        ("nan", "nan"),
        ("infinity", "infinity"),
        ("-inf", "-inf"),
        ("1e400", "1e400"),
        ("1e", "1e"),
        (".", "."),
        ("-a", "-a"),
        ("+", "+"),
        ("e5", "e5"),
        ("=", "="),
        ("<<", "<<"),
        # infinities and NaN have no JSON form: null
        (".inf", None),
        ("-.inf", None),
        ("+.inf", None),
        (".Inf", None),
        (".INF", None),
        (".nan", None),
        (".NaN", None),
        (".NAN", None),
        # quoted scalars are always strings
        ("'1'", "1"),
        ('"true"', "true"),
        ("'null'", "null"),
        ('""', ""),
        ("'2024-01-01'", "2024-01-01"),
        # explicit standard tags
        ("!!str 123", "123"),
        ("!!str true", "true"),
        ("!!str", ""),
        ("!!int '5'", 5),
        ("!!int 0x10", 16),
        ("!!float 1", 1.0),
        ("!!float '2.5'", 2.5),
        ("!!bool 'true'", True),
        ("!!null ''", None),
        ("!!null null", None),
        ("!!float .inf", None),
    ],
)
def test_plain_scalar_resolution(scalar: str, expected: object) -> None:
    got = value_of(scalar)
    assert type(got) is type(expected)
    if isinstance(expected, float) and expected == 0:
        assert math.copysign(1, got) == math.copysign(1, expected)  # type: ignore[arg-type]
    assert got == expected


def test_floats_keep_their_kind_and_serialise_back() -> None:
    doc = load_yaml("a: 15.0\nb: 15\nc: 1e3\n")
    assert dumps_compact(doc.value) == '{"a":15.0,"b":15,"c":1000.0}'


def test_timestamp_blob_vector_survives() -> None:
    doc = load_yaml('message: "Hello, blobs!"\nnumber: 42\ntimestamp: 2024-01-01 00:00:00+00:00\n')
    assert dumps_compact(doc.value) == (
        '{"message":"Hello, blobs!","number":42,"timestamp":"2024-01-01 00:00:00+00:00"}'
    )


def test_key_order_is_kept() -> None:
    doc = load_yaml("z: 1\na: 2\nm: {y: 1, b: 2}\n")
    assert list(doc.value) == ["z", "a", "m"]
    assert list(doc.value["m"]) == ["y", "b"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1: a", {"1": "a"}),
        ("true: x", {"true": "x"}),
        ("1.50: x", {"1.50": "x"}),  # the key is its source text, as serde_yaml reads keys
        ("null: x", {"null": "x"}),
        ("'q': x", {"q": "x"}),
        ("!!str 7: x", {"7": "x"}),
        ("yes: x", {"yes": "x"}),
    ],
)
def test_scalar_keys_become_strings(text: str, expected: dict[str, str]) -> None:
    assert load_yaml(text).value == expected


def test_merge_keys_are_not_interpreted() -> None:
    doc = load_yaml("base: &b {x: 1}\nderived:\n  <<: *b\n  y: 2\n")
    assert doc.value == {"base": {"x": 1}, "derived": {"<<": {"x": 1}, "y": 2}}
    assert list(doc.value["derived"]) == ["<<", "y"]


def test_anchors_and_aliases() -> None:
    doc = load_yaml("a: &x [1, {b: 2}]\nc: *x\nd: &s hello\ne: *s\n")
    assert doc.value == {"a": [1, {"b": 2}], "c": [1, {"b": 2}], "d": "hello", "e": "hello"}


def test_complex_keys_build_a_complex_key_map() -> None:
    text = (
        "behaviors:\n"
        '  { input: "a" }:\n    outcome: success\n'
        '  { input: "b", n: 1 }:\n    outcome: failed\n'
        "  [1, 2]: list\n"
        "  7: seven\n"
    )
    behaviors = load_yaml(text).value["behaviors"]
    assert isinstance(behaviors, ComplexKeyMap)
    assert isinstance(behaviors, list)
    assert behaviors == [
        ({"input": "a"}, {"outcome": "success"}),
        ({"input": "b", "n": 1}, {"outcome": "failed"}),
        ([1, 2], "list"),
        (7, "seven"),  # scalar keys keep their resolved value inside a ComplexKeyMap
    ]


def test_complex_key_duplicates_compare_by_json_equality() -> None:
    doc = load_yaml("{a: 1, b: 2}: first\n{b: 2, a: 1}: second\n{a: 1.0, b: 2}: third\n")
    assert doc.value == [({"a": 1, "b": 2}, "second"), ({"a": 1.0, "b": 2}, "third")]
    assert doc.duplicate_keys == [DuplicateKey(path="$", key='{"b":2,"a":1}', line=2)]


def test_duplicate_keys_last_wins_and_are_recorded() -> None:
    text = 'steps:\n  - id: a\n    component: x\n    id: b\n    input: {q: 1, q: 2, "a.b": {z: 1, z: 2}}\n'
    doc = load_yaml(text)
    step = doc.value["steps"][0]
    assert step == {"id": "b", "component": "x", "input": {"q": 2, "a.b": {"z": 2}}}
    assert list(step) == ["id", "component", "input"]  # the first key's position is kept
    assert doc.duplicate_keys == [
        DuplicateKey(path="$.steps[0]", key="id", line=4),
        DuplicateKey(path="$.steps[0].input", key="q", line=5),
        DuplicateKey(path='$.steps[0].input["a.b"]', key="z", line=5),
    ]


def test_top_level_duplicate() -> None:
    doc = load_yaml("steps: []\nname: x\nsteps: [1]\n")
    assert doc.value == {"steps": [1], "name": "x"}
    assert doc.duplicate_keys == [DuplicateKey(path="$", key="steps", line=3)]


def test_json_fast_path() -> None:
    doc = load_yaml('  {"b": [1, 1.0, true, null, "x"], "a": {"c": 1e3, "d": -0}}')
    assert doc == YamlDocument({"b": [1, 1.0, True, None, "x"], "a": {"c": 1000.0, "d": 0}}, [])
    assert type(doc.value["b"][1]) is float
    assert load_yaml("[1, 2]").value == [1, 2]


def test_json_duplicate_falls_back_to_yaml_with_positions() -> None:
    doc = load_yaml('{\n  "a": 1,\n  "b": {"x": 1,\n        "x": 2},\n  "a": 3\n}')
    assert doc.value == {"a": 3, "b": {"x": 2}}
    assert doc.duplicate_keys == [
        DuplicateKey(path="$.b", key="x", line=4),
        DuplicateKey(path="$", key="a", line=5),
    ]


def test_flow_yaml_that_starts_like_json() -> None:
    assert load_yaml("{a: yes, b: 017}").value == {"a": "yes", "b": "017"}
    assert load_yaml('{"a": NaN}').value == {"a": "NaN"}


def test_json_wide_int_matches_yaml_rule() -> None:
    assert load_yaml('{"a": 99999999999999999999}').value == {"a": 1e20}
    assert load_yaml('{"a": 18446744073709551615}').value == {"a": 18446744073709551615}


def test_empty_document_and_explicit_markers() -> None:
    assert load_yaml("").value is None
    assert load_yaml("# only a comment\n").value is None
    assert load_yaml("---\na: 1\n...\n").value == {"a": 1}
    assert load_yaml("\ufeffa: 1\n").value == {"a": 1}


@pytest.mark.parametrize(
    ("text", "fragment", "line", "column"),
    [
        ("a: 1\n---\nb: 2\n", "multi-document YAML is not supported", 2, 1),
        ("a: !custom x\n", "unsupported tag !custom", 1, 4),
        ("a: !!binary eA==\n", "unsupported tag !!binary", 1, 4),
        ("a: !!set {x}\n", "unsupported tag !!set", 1, 4),
        ("!thing {a: 1}\n", "unsupported tag !thing", 1, 1),
        ("? !custom k\n: v\n", "unsupported tag !custom", 1, 3),
        ("a: !!int nope\n", "!!int expects an integer", 1, 4),
        ("a: !!float x\n", "!!float expects a number", 1, 4),
        ("a: !!bool yes\n", "!!bool expects true or false", 1, 4),
        ("a: !!null x\n", "!!null expects null", 1, 4),
        ("a: [1, 2\n", "did not find expected", 2, 1),
        ("a: b: c\n", "mapping values are not allowed", 1, 5),
        ("a:\n\t- b\n", "cannot start any token", 2, 1),
        ("&a [1, *a]\n", "recursive alias", 1, 1),
        ("a: *nope\n", "found undefined alias", 1, 4),
    ],
)
def test_errors_name_source_line_and_column(text: str, fragment: str, line: int, column: int) -> None:
    with pytest.raises(YamlError) as info:
        load_yaml(text, source="flows/x.yaml")
    err = info.value
    assert isinstance(err, FlowLoadError)
    assert fragment in str(err)
    assert str(err).startswith(f"flows/x.yaml: line {line}, column {column}: ")
    assert (err.line, err.column, err.file) == (line, column, "flows/x.yaml")
    assert "\n" not in str(err)


def test_error_without_source() -> None:
    with pytest.raises(YamlError, match=r"^line 1, column 4: unsupported tag !x"):
        load_yaml("a: !x 1")


def test_load_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text("name: é\nn: 1\n", encoding="utf-8")
    assert load_yaml_file(path).value == {"name": "é", "n": 1}
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: !foo 1\n", encoding="utf-8")
    with pytest.raises(YamlError, match=r"bad\.yaml: line 1, column 4"):
        load_yaml_file(str(bad))


def test_load_yaml_file_unreadable(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(YamlError) as info:
        load_yaml_file(missing)
    assert str(missing) in str(info.value) and "cannot read the file" in str(info.value)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"a: \xff\xfe\n")
    with pytest.raises(YamlError, match="not valid UTF-8"):
        load_yaml_file(binary)


def test_upstream_mock_config_parses() -> None:
    path = Path("/work/shared/conformance/upstream/tests/mock/stepflow-config.yml")
    if not path.exists():
        pytest.skip("upstream conformance data not available")
    doc = load_yaml_file(path)
    behaviors = doc.value["plugins"]["mock"]["components"]["/one_output"]["behaviors"]
    assert isinstance(behaviors, ComplexKeyMap)
    assert behaviors[0] == ({"input": "a"}, {"outcome": "success", "result": {"output": "b"}})


def test_all_upstream_files_parse() -> None:
    root = Path("/work/shared/conformance/upstream")
    if not root.exists():
        pytest.skip("upstream conformance data not available")
    files = [p for p in root.rglob("*") if p.suffix in (".yaml", ".yml", ".json")]
    assert files
    for path in files:
        assert isinstance(load_yaml_file(path), YamlDocument)


def test_control_character_error_has_position() -> None:
    with pytest.raises(YamlError, match=r"^s: line 2, column 5: unacceptable character #x0007"):
        load_yaml("x: 1\na: b\x07", source="s")


def test_lone_surrogate_is_a_clear_error() -> None:
    with pytest.raises(YamlError, match="not valid Unicode"):
        load_yaml("a: '\ud800'")


@pytest.mark.parametrize(
    "text",
    [
        "[" * 100_000 + "]" * 100_000,  # past PyYAML >= 6.0.3's own scanner bound (1000 flow levels)
        "x: " + "[" * 600 + "]" * 600,  # past ours (400), under PyYAML's
        "a:\n" + "".join("  " * i + "-\n" for i in range(1, 2000)),  # block style
    ],
)
def test_deep_nesting_is_an_error_not_a_crash(text: str) -> None:
    # libyaml's composer recurses in C: without the depth bound this would overflow the C stack.
    # Whichever bound is hit (ours or PyYAML's, which 6.0.3 added), the error is ours: the file,
    # a line and column, and the limit.
    with pytest.raises(YamlError) as caught:
        load_yaml(text, source="deep.yaml")
    message = str(caught.value)
    assert re.search(r"deep\.yaml.*line \d+, column \d+: the document is nested too deeply", message), message
    assert "(more than 400 levels)" in message
    assert caught.value.line is not None and caught.value.line >= 1


def test_moderate_nesting_is_fine() -> None:
    value = load_yaml("[" * 200 + "x" + "]" * 200).value  # not JSON: the YAML path
    for _ in range(200):
        assert isinstance(value, list)
        value = value[0]
    assert value == "x"
