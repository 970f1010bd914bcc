"""JSON text and JSON equality: serde_json-exact serialisation, blob ids, kind-sensitive comparison.

Owns:

* :func:`dumps_compact` — the byte-exact compact form serde_json writes (builtins.md §2): insertion
  order, no spaces, non-ASCII unescaped, ``\\u001f``-style control escapes, and ryu's float layout
  (``15.0``, ``1e16``, ``1.5e-7``, ``0.00001``). Blob and flow ids hash this text.
* :func:`blob_id` — sha256 hex of that text.
* :func:`json_equal` / :func:`freeze` — JSON equality where key order does not matter but the number
  kind does (``1`` != ``1.0`` != ``true``), and a hashable form consistent with it.
* :func:`dumps` / :func:`loads` — fast general-purpose JSON for I/O.

orjson does the work when installed: its output equals serde_json's except that it writes a ``+`` in
positive float exponents (``1e+16``), which is removed afterwards. Checked against the layout rules on
millions of random floats (tests/unit/test_jsonutil.py keeps a sample). Values orjson refuses (ints
wider than 64 bits, non-string keys) go through a pure-Python encoder with the same output rules.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Hashable
from typing import Any

from .types import ComplexKeyMap

try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is a dependency; keep a slow but exact fallback
    _orjson = None  # type: ignore[assignment]

__all__ = ("blob_id", "dumps", "dumps_bytes", "dumps_compact", "freeze", "json_equal", "loads")


# -- serialisation ----------------------------------------------------------------------------------

# A JSON string literal (skipped unchanged) or the `e+` of a float exponent (rewritten to `e`).
_EXP_PLUS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|e\+', re.DOTALL)


def _drop_exp_plus(match: re.Match[bytes]) -> bytes:
    text = match.group()
    return b"e" if text == b"e+" else text


def _format_float(value: float) -> str:
    """A finite float in serde_json's (ryu's) layout, from Python's shortest round-trip digits."""
    text = repr(value)
    if "e" not in text:
        if "n" in text:  # inf, -inf, nan
            return "null"  # no JSON form: serde_json writes null, and so does orjson
        return text  # Python and ryu agree on the fixed layout for 1e-4 <= |x| < 1e16
    mantissa, _, exponent = text.partition("e")
    sign = ""
    if mantissa[0] == "-":
        sign, mantissa = "-", mantissa[1:]
    digits = mantissa.replace(".", "")
    point = int(exponent) + 1  # the value is 0.<digits> x 10^point
    if -5 < point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if len(digits) == 1:
        return f"{sign}{digits}e{point - 1}"
    return f"{sign}{digits[0]}.{digits[1:]}e{point - 1}"


_encode_str = json.encoder.encode_basestring  # C-accelerated, ensure_ascii=False


def _encode_py(value: Any, out: list[str]) -> None:
    """Pure-Python compact encoder with serde_json's output rules."""
    if isinstance(value, str):
        out.append(_encode_str(value))
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        out.append(_format_float(value))
    elif isinstance(value, dict):
        out.append("{")
        first = True
        for key, item in value.items():
            if not first:
                out.append(",")
            first = False
            out.append(_encode_str(_key_text(key)))
            out.append(":")
            _encode_py(item, out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode_py(item, out)
        out.append("]")
    else:
        raise TypeError(f"{type(value).__name__} is not a JSON value")


def _key_text(key: Any) -> str:
    """Object keys must be strings; scalars are converted as json.dumps does."""
    if isinstance(key, str):
        return key
    if key is None:
        return "null"
    if key is True:
        return "true"
    if key is False:
        return "false"
    if isinstance(key, int):
        return int.__repr__(key)
    if isinstance(key, float):
        return _format_float(key)
    raise TypeError(f"object keys must be strings, found {type(key).__name__}")


def _compact_bytes_py(value: Any) -> bytes:
    out: list[str] = []
    _encode_py(value, out)
    return "".join(out).encode("utf-8", "surrogatepass")


if _orjson is not None:
    _orjson_dumps = _orjson.dumps
    _OrjsonError = _orjson.JSONEncodeError

    def dumps_bytes(value: Any) -> bytes:
        """Compact serde_json-exact JSON as UTF-8 bytes (see :func:`dumps_compact`)."""
        try:
            data = _orjson_dumps(value)
        except _OrjsonError:
            return _compact_bytes_py(value)  # wide ints, non-string keys, lone surrogates
        if b"e+" in data:
            data = _EXP_PLUS.sub(_drop_exp_plus, data)
        return data

    _orjson_loads = _orjson.loads

    def loads(text: str | bytes) -> Any:
        """Parse JSON text (str or UTF-8 bytes). Raises ``json.JSONDecodeError`` (a ``ValueError``).

        Like serde_json, an integer wider than 64 bits is read as a float.
        """
        return _orjson_loads(text)


else:  # pragma: no cover

    def dumps_bytes(value: Any) -> bytes:
        """Compact serde_json-exact JSON as UTF-8 bytes (see :func:`dumps_compact`)."""
        return _compact_bytes_py(value)

    def loads(text: str | bytes) -> Any:
        """Parse JSON text (str or UTF-8 bytes). Raises ``json.JSONDecodeError`` (a ``ValueError``)."""
        return json.loads(text)


def dumps_compact(value: Any) -> str:
    """The byte-exact compact JSON text serde_json writes (builtins.md §2).

    NaN and infinities are written as ``null``, as serde_json does.

    Raises:
        TypeError: the value is not made of JSON types.
    """
    return dumps_bytes(value).decode("utf-8", "surrogatepass")


def dumps(value: Any) -> str:
    """Fast general-purpose JSON text for I/O (compact; same text as :func:`dumps_compact`)."""
    return dumps_bytes(value).decode("utf-8", "surrogatepass")


def blob_id(value: Any) -> str:
    """The blob id of a JSON value: sha256 hex of its compact serialisation (builtins.md §2)."""
    return hashlib.sha256(dumps_bytes(value)).hexdigest()


# -- equality ---------------------------------------------------------------------------------------

# Kind tags: bool, int and float are different JSON kinds even where Python's == says otherwise.
_NULL, _BOOL, _INT, _FLOAT, _STR, _LIST, _DICT, _PAIRS = range(8)
_KINDS: dict[type, int] = {
    type(None): _NULL,
    bool: _BOOL,
    int: _INT,
    float: _FLOAT,
    str: _STR,
    list: _LIST,
    tuple: _LIST,
    dict: _DICT,
    ComplexKeyMap: _PAIRS,
}


def _kind(value: Any) -> int:
    kind = _KINDS.get(value.__class__)
    if kind is not None:
        return kind
    # subclasses (str enums, OrderedDict ...): the first matching base decides
    for base, tag in (
        (ComplexKeyMap, _PAIRS),
        (bool, _BOOL),
        (int, _INT),
        (float, _FLOAT),
        (str, _STR),
        (dict, _DICT),
        (list, _LIST),
        (tuple, _LIST),
    ):
        if isinstance(value, base):
            return tag
    raise TypeError(f"{type(value).__name__} is not a JSON value")


_SCALARS = frozenset({str, int, float, bool, type(None)})
_ABSENT: Any = object()


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: object key order ignored, number kind significant (``1 != 1.0``, ``1 != true``)."""
    if a is b:
        return True
    cls = a.__class__
    if cls is not b.__class__:
        return _equal_mixed(a, b)
    if cls in _SCALARS:
        return bool(a == b)  # same class, so 1 == 1.0 and 1 == True cannot arise
    if cls is dict:
        return _equal_dicts(a, b)
    if cls is list or cls is tuple:
        return _equal_lists(a, b)
    return _equal_mixed(a, b)


def _equal_dicts(a: dict[str, Any], b: dict[str, Any]) -> bool:
    if len(a) != len(b):
        return False
    get = b.get
    for key, x in a.items():
        y = get(key, _ABSENT)
        if x is y:
            continue
        if y is _ABSENT:
            return False
        cls = x.__class__
        if cls is y.__class__ and cls in _SCALARS:
            if x != y:
                return False
        elif not json_equal(x, y):
            return False
    return True


def _equal_lists(a: Any, b: Any) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x is y:
            continue
        cls = x.__class__
        if cls is y.__class__ and cls in _SCALARS:
            if x != y:
                return False
        elif not json_equal(x, y):
            return False
    return True


def _equal_mixed(a: Any, b: Any) -> bool:
    """Different Python classes: subclasses, list vs tuple, ComplexKeyMap, or different kinds."""
    kind = _kind(a)
    if kind != _kind(b):
        return False
    if kind == _DICT:
        return _equal_dicts(a, b)
    if kind == _LIST:
        return _equal_lists(a, b)
    if kind == _PAIRS:
        return bool(freeze(a) == freeze(b))
    return bool(a == b)


# Unique markers in frozen forms; a JSON value can never contain them, so no form collides.
_TRUE = object()
_FALSE = object()
_FLOAT_TAG = object()
_PAIRS_TAG = object()


def freeze(value: Any) -> Hashable:
    """A hashable form of a JSON value: ``freeze(a) == freeze(b)`` exactly when ``json_equal(a, b)``."""
    cls = value.__class__
    if cls is str or cls is int or value is None:
        return value  # type: ignore[no-any-return]
    if cls is dict:
        return frozenset([(key, freeze(item)) for key, item in value.items()])
    if cls is list:
        return tuple([freeze(item) for item in value])
    if cls is float:
        return (_FLOAT_TAG, value)
    if cls is bool:
        return _TRUE if value else _FALSE
    kind = _kind(value)
    if kind == _STR or kind == _INT:
        return value  # type: ignore[no-any-return]
    if kind == _DICT:
        return frozenset([(key, freeze(item)) for key, item in value.items()])
    if kind == _LIST:
        return tuple([freeze(item) for item in value])
    if kind == _BOOL:
        return _TRUE if value else _FALSE
    if kind == _FLOAT:
        return (_FLOAT_TAG, float(value))
    return (_PAIRS_TAG, frozenset([(freeze(key), freeze(item)) for key, item in value]))
