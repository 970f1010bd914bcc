"""jsonutil: serde_json-exact compact text, blob ids, kind-sensitive JSON equality (builtins.md §2)."""

from __future__ import annotations

import json
import math
import random
import struct

import pytest

from stepflow_gateway.jsonutil import (
    _compact_bytes_py,
    _format_float,
    blob_id,
    dumps,
    dumps_bytes,
    dumps_compact,
    freeze,
    json_equal,
    loads,
)
from stepflow_gateway.yaml_loader import ComplexKeyMap

BLOB_VECTORS = [
    (
        '{"message":"Hello, blobs!","number":42,"nested":{"array":[1,2,3],"boolean":true}}',
        "868591347a854ba1d0f4875b2dd44e1e8335052af03725a9819f89e0142318b0",
    ),
    (
        '{"simple":"test","complex":{"deeply":{"nested":{"value":"works"}}}}',
        "aa05cc227a02bd66a2a91fde7500be122d28e87c45832d1aa9cb0b432eef7e04",
    ),
    (
        '{"message":"Hello, blobs!","number":42,"timestamp":"2024-01-01 00:00:00+00:00"}',
        "7d1835be19f018f42ad769cab21e7b7c6906045c4a3f5366ee95a2618de608f4",
    ),
    (
        '{"original_message":"Hello, blobs!","number_squared":1764,"processed_by":"python_udf"}',
        "5e7b9e2bb1fb695b22192e82e25b4b6b142f46548509b4c62cd051f0f21b082e",
    ),
    ('{"x":1}', "5041bf1f713df204784353e82f6a4a535931cb64f1f4b4a5aeaffcb720918b22"),
]


@pytest.mark.parametrize(("text", "expected_id"), BLOB_VECTORS)
def test_blob_id_vectors(text: str, expected_id: str) -> None:
    value = json.loads(text)
    assert dumps_compact(value) == text
    assert blob_id(value) == expected_id
    assert _compact_bytes_py(value).decode() == text


FLOATS = [
    (15.0, "15.0"),
    (1.5, "1.5"),
    (12345.678, "12345.678"),
    (1000000000000000.0, "1000000000000000.0"),
    (1e15, "1000000000000000.0"),
    (1e16, "1e16"),
    (1.5e16, "1.5e16"),
    (1.2345678901234568e17, "1.2345678901234568e17"),
    (1e21, "1e21"),
    (1.7976931348623157e308, "1.7976931348623157e308"),
    (0.1, "0.1"),
    (0.0001, "0.0001"),
    (0.00001, "0.00001"),
    (0.000025, "0.000025"),
    (1.2345e-5, "0.000012345"),
    (1e-6, "1e-6"),
    (1.5e-7, "1.5e-7"),
    (5e-324, "5e-324"),
    (2.2250738585072014e-308, "2.2250738585072014e-308"),
    (0.0, "0.0"),
    (-0.0, "-0.0"),
    (-1e16, "-1e16"),
    (-0.00001, "-0.00001"),
    (-1.5e-7, "-1.5e-7"),
    (123456789.0, "123456789.0"),
    (9007199254740993.0, "9007199254740992.0"),
]


@pytest.mark.parametrize(("value", "text"), FLOATS)
def test_float_layout(value: float, text: str) -> None:
    assert dumps_compact(value) == text
    assert dumps_compact([value]) == f"[{text}]"
    assert _format_float(value) == text
    assert float(text) == value


def _reference_layout(value: float) -> str:
    """builtins.md §2's table, written out directly from Python's shortest digits."""
    r = repr(abs(value))
    if "e" in r:
        mantissa, _, e = r.partition("e")
        exp = int(e)  # value = d.ddd x 10^exp
    else:
        mantissa = r
        whole, _, frac = r.partition(".")
        exp = len(whole) - 1 if whole != "0" else -(len(frac) - len(frac.lstrip("0"))) - 1
    digits = mantissa.replace(".", "").strip("0") or "0"
    kk = exp + 1
    sign = "-" if math.copysign(1, value) < 0 else ""
    n = len(digits)
    if n <= kk <= 16:
        return f"{sign}{digits}{'0' * (kk - n)}.0"
    if 0 < kk <= 16:
        return f"{sign}{digits[:kk]}.{digits[kk:]}"
    if -5 < kk <= 0:
        return f"{sign}0.{'0' * -kk}{digits}"
    if n == 1:
        return f"{sign}{digits}e{kk - 1}"
    return f"{sign}{digits[0]}.{digits[1:]}e{kk - 1}"


def test_float_layout_random_sample() -> None:
    rnd = random.Random(20260107)
    values: list[float] = []
    while len(values) < 20000:
        if len(values) % 2:
            value = struct.unpack("<d", rnd.getrandbits(64).to_bytes(8, "little"))[0]
        else:
            value = rnd.uniform(-1, 1) * 10 ** rnd.randint(-30, 30)
        if math.isfinite(value) and value != 0:
            values.append(value)
    for exp in range(-325, 309):
        for mantissa in ("1", "1.5", "9.999999999999999", "2.5"):
            value = float(f"{mantissa}e{exp}")
            if math.isfinite(value) and value != 0:
                values.append(value)
    fast = dumps_compact(values)
    slow = _compact_bytes_py(values).decode()
    reference = "[" + ",".join(_reference_layout(v) for v in values) + "]"
    assert fast == reference
    assert slow == reference


def test_strings_escapes() -> None:
    value = 'q" b\\ \b\f\n\r\t \x00\x01\x1f\x7f / é 😀 \u2028 e+5'
    expected = '"q\\" b\\\\ \\b\\f\\n\\r\\t \\u0000\\u0001\\u001f\x7f / é 😀 \u2028 e+5"'
    assert dumps_compact(value) == expected
    assert _compact_bytes_py(value).decode() == expected
    assert dumps_compact(value) == json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def test_exponent_fix_leaves_strings_alone() -> None:
    value = {"1e+16": 'x 1e+16 \\"e+', "f": 1e16, "g": [2.5e20, "e+"]}
    assert dumps_compact(value) == '{"1e+16":"x 1e+16 \\\\\\"e+","f":1e16,"g":[2.5e20,"e+"]}'


def test_key_order_is_insertion_order() -> None:
    assert dumps_compact({"b": 1, "a": {"z": None, "y": [True, False]}}) == (
        '{"b":1,"a":{"z":null,"y":[true,false]}}'
    )


def test_values_orjson_refuses_use_the_exact_fallback() -> None:
    assert dumps_compact({"big": 2**70, "neg": -(2**64)}) == (
        '{"big":1180591620717411303424,"neg":-18446744073709551616}'
    )
    assert dumps_compact({1: "a", None: 1.5e-7}) == '{"1":"a","null":1.5e-7}'
    assert dumps_compact((1, 2.0)) == "[1,2.0]"


def test_complex_key_map_serialises_as_pairs() -> None:
    pairs = ComplexKeyMap([({"input": "a"}, 1e16)])
    assert dumps_compact(pairs) == '[[{"input":"a"},1e16]]'


def test_non_finite_floats_become_null_as_in_serde_json() -> None:
    value = [float("nan"), float("inf"), {"a": float("-inf")}]
    assert dumps_compact(value) == '[null,null,{"a":null}]'
    assert _compact_bytes_py(value).decode() == '[null,null,{"a":null}]'


def test_dumps_and_loads_round_trip() -> None:
    value = {"a": [1, 1.0, -0.0, 1e16, "é", None, True], "b": {"c": 5e-324}}
    text = dumps(value)
    assert text == dumps_compact(value)
    assert dumps_bytes(value) == text.encode()
    back = loads(text)
    assert back == value and json_equal(back, value)
    assert loads(text.encode()) == value
    assert type(loads("1.0")) is float and type(loads("1")) is int
    assert loads("18446744073709551615") == 2**64 - 1
    assert loads("18446744073709551616") == 1.8446744073709552e19  # wider than u64: a float, as serde


def test_loads_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        loads("{not json")
    with pytest.raises(json.JSONDecodeError):
        loads("[1,")


EQUAL = [
    (1, 1),
    (1.0, 1.0),
    (0.0, -0.0),
    ("a", "a"),
    (None, None),
    (True, True),
    ({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1}),
    ([{"x": 1.5}], [{"x": 1.5}]),
    ([1, 2], (1, 2)),
    ({}, {}),
    ([], []),
    (ComplexKeyMap([({"a": 1}, 1), ("b", 2)]), ComplexKeyMap([("b", 2), ({"a": 1}, 1)])),
]
NOT_EQUAL = [
    (1, 1.0),
    (1, True),
    (0, False),
    (1.0, True),
    (None, False),
    ("1", 1),
    ({"a": 1}, {"a": 1.0}),
    ({"a": 1}, {"a": 1, "b": 2}),
    ({"a": 1}, {"b": 1}),
    ([1, 2], [2, 1]),
    ([1], [1, 1]),
    ([[1]], [[True]]),
    ({"a": None}, {}),
    ([], {}),
    (ComplexKeyMap([({"a": 1}, 1)]), ComplexKeyMap([({"a": 1.0}, 1)])),
]


@pytest.mark.parametrize(("a", "b"), EQUAL)
def test_json_equal_true(a: object, b: object) -> None:
    assert json_equal(a, b) and json_equal(b, a)
    assert freeze(a) == freeze(b)
    assert hash(freeze(a)) == hash(freeze(b))


@pytest.mark.parametrize(("a", "b"), NOT_EQUAL)
def test_json_equal_false(a: object, b: object) -> None:
    assert not json_equal(a, b) and not json_equal(b, a)
    assert freeze(a) != freeze(b)


def test_freeze_as_dict_key() -> None:
    table = {freeze({"input": "a", "n": 1}): "first", freeze({"n": 1.0, "input": "a"}): "second"}
    assert table[freeze({"n": 1, "input": "a"})] == "first"
    assert table[freeze({"input": "a", "n": 1.0})] == "second"
    assert freeze({"n": True, "input": "a"}) not in table


def test_freeze_lists_never_collide_with_tagged_scalars() -> None:
    frozen = {freeze(v) for v in (1.0, [1.0], [[1.0]], True, [True], {"a": 1.0}, [["a", 1.0]], "1.0")}
    assert len(frozen) == 8


def test_not_json_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        freeze(object())
    with pytest.raises(TypeError):
        json_equal(object(), 1)
    with pytest.raises(TypeError):
        dumps_compact({"a": object()})
