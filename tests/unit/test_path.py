"""jsonpath: the JSON path syntax, lookup and display of flow-format.md §5.2."""

from __future__ import annotations

import pytest

from stepflow_gateway.errors import FlowLoadError
from stepflow_gateway.jsonpath import MISSING, JsonPath, PathSyntaxError, parse_path


@pytest.mark.parametrize(
    ("text", "segments"),
    [
        (None, ()),
        ("", ()),
        ("$", ()),
        ("  $  ", ()),
        ("a", ("a",)),
        ("a.b", ("a.b",)),  # a bare string is ONE literal key
        ("items[0]", ("items[0]",)),
        (" x", (" x",)),  # kept as written
        ("$.a", ("a",)),
        ("$.a.b", ("a", "b")),
        ("$..a", ("a",)),  # empty `.` segments are skipped
        ("$.a..b.", ("a", "b")),
        ("$[0]", (0,)),
        ("$.a[12].b", ("a", 12, "b")),
        ("$[ 3 ]", (3,)),
        ('$["a.b"]', ("a.b",)),
        ("$['a.b']", ("a.b",)),
        ('$[ "x" ]', ("x",)),
        ('$["a"]["b"][0]', ("a", "b", 0)),
        ('$["a]b"]', ("a]b",)),
        ('$["a"b"]', ('a"b',)),
        ('$[""]', ("",)),
        ("  $.a", ("a",)),
        ("$.a b", ("a b",)),
        ("$.0", ("0",)),  # `.0` is the key "0", never an index
    ],
)
def test_parse(text: str | None, segments: tuple[str | int, ...]) -> None:
    assert parse_path(text).segments == segments


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("$abc", "expected '.' or '[' at position 1, found 'a'"),
        ("$[0]x", "expected '.' or '[' at position 4, found 'x'"),
        ("$[abc]", "expected a non-negative index or a quoted key inside [...], found 'abc'"),
        ("$[-1]", "found '-1'"),
        ("$[1.5]", "found '1.5'"),
        ("$[]", "found ''"),
        ("$[0", "'[' at position 1 is never closed"),
        ('$["a"', "never closed"),
        ("$['a\"]", "found"),
    ],
)
def test_syntax_errors(text: str, fragment: str) -> None:
    with pytest.raises(PathSyntaxError) as info:
        parse_path(text)
    assert isinstance(info.value, FlowLoadError)
    assert fragment in str(info.value)
    assert repr(text) in str(info.value)


@pytest.mark.parametrize("bad", [5, ["$.a"], {"a": 1}, True])
def test_non_string_is_an_error(bad: object) -> None:
    with pytest.raises(PathSyntaxError, match="expected a path string"):
        parse_path(bad)  # type: ignore[arg-type]


def test_parse_is_cached() -> None:
    assert parse_path("$.cached.path") is parse_path("$.cached.path")


@pytest.mark.parametrize(
    ("text", "display"),
    [
        (None, "$"),
        ("", "$"),
        ("x", "$.x"),
        ("a.b", '$["a.b"]'),
        ("items[0]", '$["items[0]"]'),
        ("$..a", "$.a"),
        ("$['b'][2]", "$.b[2]"),
        ('$["a"b"]', '$.a"b'),
        ("$['a\".b']", "$['a\".b']"),
        ('$[""]', '$[""]'),
        (" x", '$[" x"]'),
        ("$.x.y[0]", "$.x.y[0]"),
    ],
)
def test_display(text: str | None, display: str) -> None:
    path = parse_path(text)
    assert path.display() == display
    assert str(path) == display
    assert parse_path(display) == path  # the display form reads back to the same path


DATA = {"a": {"b": [10, {"c": None}], "a.b": 1, "0": "zero"}, "list": [[1, 2]], "n": None}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$", DATA),
        ("a", DATA["a"]),
        ("$.a.b[0]", 10),
        ("$.a.b[1].c", None),  # a present null is a value, not MISSING
        ('$.a["a.b"]', 1),
        ("$.a.0", "zero"),
        ("$.list[0][1]", 2),
        ("n", None),
        ("$.missing", MISSING),
        ("a.b", MISSING),  # the literal key "a.b" does not exist at the top
        ("$.a.b[2]", MISSING),  # out of range
        ("$.a[0]", MISSING),  # index on an object
        ("$.list.x", MISSING),  # key on an array
        ("$.list[0][0].x", MISSING),  # key on a number
        ("$.n.x", MISSING),  # key on null
        ("$.n[0]", MISSING),
    ],
)
def test_lookup(text: str, expected: object) -> None:
    got = parse_path(text).lookup(DATA)
    if expected is MISSING:
        assert got is MISSING
    else:
        assert got == expected


def test_int_segment_never_matches_dict_key_and_vice_versa() -> None:
    assert JsonPath((0,)).lookup({0: "x", "0": "y"}) is MISSING
    assert JsonPath(("0",)).lookup(["x"]) is MISSING
    assert JsonPath((0,)).lookup(["x"]) == "x"


def test_helpers() -> None:
    root = parse_path("$")
    assert root.is_root
    assert root.child("a").child(0) == parse_path("$.a[0]")
    assert repr(MISSING) == "MISSING"
