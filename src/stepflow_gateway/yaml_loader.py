"""YAML/JSON reading for flows and configs, with serde_yaml's scalar rules (flow-format.md §15).

Owns turning text into plain JSON Python values. Upstream reads YAML with serde_yaml, which resolves
plain scalars roughly as YAML 1.2; PyYAML implements YAML 1.1. So PyYAML (its C parser when
available) is used only to *compose* the node graph, with a resolver that tags every plain scalar
as "unresolved", and this module builds the values itself:

* plain scalars follow serde_yaml: only ``true``/``false``/``null``/``~``/empty are special words,
  decimal ints without leading zeros, ``0x``/``0o``/``0b`` ints, Rust-style floats, ``.inf``/``.nan``
  (which become ``None``, as serde_json has no form for them); everything else stays a string
  (``yes``, ``Null``, dates, ``017``, ``1_000``, ``1:20``, ``=`` ...);
* merge keys (``<<``) are ordinary keys; anchors and aliases work (an aliased subtree is built once
  and shared);
* standard explicit tags (``!!str``, ``!!int``, ``!!float``, ``!!bool``, ``!!null``, ``!!seq``,
  ``!!map``) are honoured, any other tag is a :class:`YamlError`;
* scalar mapping keys become their source text (``1: a`` -> ``{"1": "a"}``); a mapping with a
  mapping or sequence key becomes a :class:`ComplexKeyMap`;
* duplicate keys: the last value wins (at the first key's position) and each repeat is recorded as a
  :class:`DuplicateKey` so callers can warn or, for known fields, fail.

Text that looks like JSON is first tried with :func:`json.loads` (much faster); it falls back to the
YAML path on any failure, and whenever a duplicate key needs its JSON path and line recorded.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from typing import Any, cast

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import FlowLoadError
from .jsonpath import JsonPath
from .types import ComplexKeyMap

__all__ = (
    "ComplexKeyMap",
    "DuplicateKey",
    "YamlDocument",
    "YamlError",
    "load_yaml",
    "load_yaml_file",
)


@dataclass(slots=True)
class DuplicateKey:
    """A key that appeared more than once in one mapping (the last value won)."""

    path: str
    """JSON path of the mapping that holds the key, e.g. ``$.steps[0]``."""
    key: str
    """The repeated key (compact JSON text for a non-scalar key)."""
    line: int
    """1-based line of the repeated occurrence."""


@dataclass(slots=True)
class YamlDocument:
    """The parsed value of one document and the duplicate keys met while building it."""

    value: Any
    duplicate_keys: list[DuplicateKey]


class YamlError(FlowLoadError):
    """The text is not valid YAML/JSON for StepFlow; the message names the line and column."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        column: int | None = None,
        **kw: Any,
    ) -> None:
        if line is not None:
            message = f"line {line}, column {column}: {message}"
        kw.setdefault("file", source)
        super().__init__(message, **kw)
        self.line = line
        self.column = column


# -- scalar resolution ------------------------------------------------------------------------------

_TAG_PREFIX = "tag:yaml.org,2002:"
_STR = _TAG_PREFIX + "str"
_SEQ = _TAG_PREFIX + "seq"
_MAP = _TAG_PREFIX + "map"
_INT = _TAG_PREFIX + "int"
_FLOAT = _TAG_PREFIX + "float"
_BOOL = _TAG_PREFIX + "bool"
_NULL = _TAG_PREFIX + "null"
# Our resolver tags every untagged plain scalar with this; the builder resolves it (serde rules).
_PLAIN = "!stepflow-gateway/plain"

# serde_json's Number holds u64 or i64; anything wider is parsed as a float by serde_yaml.
_U64_MAX = 2**64 - 1
_I64_MIN = -(2**63)

# Rust's `f64::from_str` grammar for finite decimal numbers (no `_`, no spaces, one optional sign).
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_DIGITS_RE = re.compile(r"[0-9]+\Z")
_RADIX = {
    "0x": (16, re.compile(r"[0-9a-fA-F]+\Z")),
    "0o": (8, re.compile(r"[0-7]+\Z")),
    "0b": (2, re.compile(r"[01]+\Z")),
}
_INF_NAN = frozenset(
    {".inf", ".Inf", ".INF", "-.inf", "-.Inf", "-.INF", "+.inf", "+.Inf", "+.INF", ".nan", ".NaN", ".NAN"}
)
_NUMBER_START = frozenset("0123456789+-.")
_NOT_A_NUMBER: Any = object()


def _parse_int(text: str) -> Any:
    """An int the way serde_yaml reads one, or ``_NOT_A_NUMBER``."""
    sign = 1
    body = text
    if body[:1] == "+":
        body = body[1:]
    elif body[:1] == "-":
        sign = -1
        body = body[1:]
    prefix = body[:2]
    if prefix in _RADIX:
        radix, digits_re = _RADIX[prefix]
        digits = body[2:]
        if not digits_re.match(digits):
            return _NOT_A_NUMBER
        value = sign * int(digits, radix)
    else:
        if not _DIGITS_RE.match(body) or (len(body) > 1 and body[0] == "0"):
            return _NOT_A_NUMBER
        value = sign * int(body)
    if _I64_MIN <= value <= _U64_MAX:
        return value
    # Too wide for serde_json's integer kinds: serde_yaml falls through to a float (radix forms stay text).
    return float(value) if prefix not in _RADIX else _NOT_A_NUMBER


def _parse_float(text: str) -> Any:
    """A float the way serde_yaml reads one (``None`` for infinities and NaN), or ``_NOT_A_NUMBER``."""
    if text in _INF_NAN:
        return None  # serde_json has no form for them: they become null
    if not _FLOAT_RE.match(text):
        return _NOT_A_NUMBER
    value = float(text)
    if math.isinf(value):
        return _NOT_A_NUMBER  # `1e400` overflows: serde_yaml keeps it a string
    return value


def _leading_zero_digits(text: str) -> bool:
    """``017`` / ``-017``: YAML 1.2 says a string, not an octal or decimal number."""
    body = text[1:] if text[:1] in "+-" else text
    return len(body) > 1 and body[0] == "0" and body.isdigit() and body.isascii()


def _resolve_plain(text: str) -> Any:
    """Resolve an untagged plain scalar as serde_yaml does (flow-format.md §15)."""
    if not text:
        return None
    if text[0] in _NUMBER_START:
        if _leading_zero_digits(text):
            return text
        value = _parse_int(text)
        if value is _NOT_A_NUMBER:
            value = _parse_float(text)
            if value is _NOT_A_NUMBER:
                return text
        return value
    if text == "true":
        return True
    if text == "false":
        return False
    if text == "null" or text == "~":
        return None
    return text


# -- composing --------------------------------------------------------------------------------------


class _ResolverMixin:
    """Tags plain scalars as unresolved so the builder applies serde rules, not YAML 1.1's."""

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is ScalarNode:
            return _PLAIN if implicit[0] else _STR
        if kind is SequenceNode:
            return _SEQ
        return _MAP

    # The composers call these around every node (meant for path-based resolvers, which we do not
    # use). They bound the nesting depth: libyaml's Cython composer recurses without Python's
    # recursion check, so a deeply nested document would overflow the C stack (a crash).
    _depth = 0

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        self._depth += 1
        if self._depth > _MAX_DEPTH:
            raise _TooDeep(getattr(current_node, "start_mark", None))

    def ascend_resolver(self) -> None:
        self._depth -= 1


class _TooDeep(Exception):
    """The document nests deeper than ``_MAX_DEPTH``; carries the mark of the deepest node seen."""

    def __init__(self, mark: Any = None) -> None:
        super().__init__(mark)
        self.mark = mark


# PyYAML >= 6.0.3 has a depth bound of its own in the scanner (1000 flow levels); its error is
# worded "exceeded maximum nesting depth". It is mapped to ours so that every PyYAML 6.x gives one
# message, whichever bound is hit first. Matched loosely ("nesting depth") on purpose.
_PYYAML_DEPTH_WORDS = "nesting depth"


def _too_deep(source: str | None, mark: Any = None) -> YamlError:
    problem = f"the document is nested too deeply (more than {_MAX_DEPTH} levels)"
    if mark is None:
        return YamlError(problem, source=source)
    return YamlError(problem, source=source, line=mark.line + 1, column=mark.column + 1)


# Real flows nest a few dozen levels; the builder needs two Python frames per level.
_MAX_DEPTH = 400


try:  # libyaml's parser and composer are ~10x faster than the pure-Python ones
    from yaml._yaml import CParser as _CParser  # what yaml.cyaml re-exports (the stubs hide it there)

    class _Composer(_CParser, _ResolverMixin):
        pass

except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml.composer import Composer
    from yaml.parser import Parser
    from yaml.reader import Reader
    from yaml.scanner import Scanner

    class _Composer(Reader, Scanner, Parser, Composer, _ResolverMixin):  # type: ignore[no-redef]
        def __init__(self, stream: str) -> None:
            Reader.__init__(self, stream)
            Scanner.__init__(self)
            Parser.__init__(self)
            Composer.__init__(self)


def _compose(text: str, source: str | None) -> Node | None:
    composer = None
    try:
        composer = _Composer(text)  # encodes to UTF-8 (C) or checks characters (pure Python)
        return composer.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if exc.problem and _PYYAML_DEPTH_WORDS in exc.problem:
            raise _too_deep(source, mark) from None
        if exc.context and "single document" in exc.context:
            problem = "multi-document YAML is not supported; a flow or config is exactly one document"
        else:
            problem = exc.problem or exc.context or "invalid YAML"
            if exc.context and exc.problem:
                problem = f"{exc.problem} ({exc.context})"
        if mark is None:
            raise YamlError(problem, source=source) from None
        raise YamlError(problem, source=source, line=mark.line + 1, column=mark.column + 1) from None
    except yaml.reader.ReaderError as exc:  # invalid characters: a position, no mark
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        problem = f"unacceptable character #x{exc.character:04x}: {exc.reason}"
        raise YamlError(problem, source=source, line=line, column=column) from None
    except yaml.YAMLError as exc:
        raise YamlError(f"invalid YAML: {' '.join(str(exc).split())}", source=source) from None
    except UnicodeError:
        raise YamlError("the text is not valid Unicode (lone surrogate)", source=source) from None
    except _TooDeep as exc:
        raise _too_deep(source, exc.mark) from None
    except RecursionError:
        raise _too_deep(source) from None
    finally:
        if composer is not None:
            composer.dispose()


# -- building values --------------------------------------------------------------------------------

_IN_PROGRESS: Any = object()


class _Builder:
    """Walks the node graph once, building JSON values and recording duplicate keys."""

    __slots__ = ("source", "memo", "duplicates", "segments")

    def __init__(self, source: str | None) -> None:
        self.source = source
        self.memo: dict[Node, Any] = {}  # collection nodes -> value, so aliases are built once
        self.duplicates: list[DuplicateKey] = []
        self.segments: list[str | int] = []  # JSON path of the node being built

    def fail(self, node: Node, message: str) -> YamlError:
        mark = node.start_mark
        return YamlError(message, source=self.source, line=mark.line + 1, column=mark.column + 1)

    def build(self, node: Node) -> Any:
        cls = node.__class__
        if cls is ScalarNode:
            tag = node.tag
            if tag == _PLAIN:
                return _resolve_plain(node.value)
            if tag == _STR:
                return node.value
            return self.tagged_scalar(cast(ScalarNode, node))  # `cls is` narrows nothing for mypy
        memo = self.memo
        known = memo.get(node)
        if known is not None:
            if known is _IN_PROGRESS:
                raise self.fail(node, "recursive alias: an anchor cannot contain an alias to itself")
            return known
        memo[node] = _IN_PROGRESS
        if cls is SequenceNode:
            if node.tag != _SEQ:
                raise self.unsupported_tag(node)
            value: Any = []
            segments = self.segments
            for index, child in enumerate(node.value):
                segments.append(index)
                value.append(self.build(child))
                segments.pop()
        else:
            if node.tag != _MAP:
                raise self.unsupported_tag(node)
            value = self.mapping(cast(MappingNode, node))
        memo[node] = value
        return value

    def mapping(self, node: MappingNode) -> Any:
        pairs = node.value
        for key_node, _ in pairs:
            if key_node.__class__ is not ScalarNode:
                return self.complex_mapping(node)
        result: dict[str, Any] = {}
        segments = self.segments
        for key_node, value_node in pairs:
            tag = key_node.tag
            if tag != _PLAIN and tag != _STR:
                self.tagged_scalar(key_node)  # rejects custom tags; the key is still its text
            # serde_json reads every scalar key as a string: its source text (`1: a` -> "1").
            key = key_node.value
            if key in result:
                self.duplicates.append(DuplicateKey(_display(segments), key, key_node.start_mark.line + 1))
            segments.append(key)
            result[key] = self.build(value_node)
            segments.pop()
        return result

    def complex_mapping(self, node: MappingNode) -> ComplexKeyMap:
        from .jsonutil import dumps_compact, freeze

        result = ComplexKeyMap()
        positions: dict[Any, int] = {}
        segments = self.segments
        for key_node, value_node in node.value:
            key = self.build(key_node)
            text = key if isinstance(key, str) else dumps_compact(key)
            segments.append(text)
            value = self.build(value_node)
            segments.pop()
            frozen = freeze(key)
            at = positions.get(frozen)
            if at is None:
                positions[frozen] = len(result)
                result.append((key, value))
            else:
                self.duplicates.append(DuplicateKey(_display(segments), text, key_node.start_mark.line + 1))
                result[at] = (result[at][0], value)
        return result

    def tagged_scalar(self, node: ScalarNode) -> Any:
        tag, text = node.tag, node.value
        if tag == _PLAIN:
            return _resolve_plain(text)
        if tag == _STR:
            return text
        if tag == _INT:
            value = _parse_int(text) if text else _NOT_A_NUMBER
            if value is _NOT_A_NUMBER or isinstance(value, float):
                raise self.fail(node, f"!!int expects an integer, found {text!r}")
            return value
        if tag == _FLOAT:
            value = _parse_float(text) if text else _NOT_A_NUMBER
            if value is _NOT_A_NUMBER:
                value = _parse_int(text) if text else _NOT_A_NUMBER
                if value is _NOT_A_NUMBER:
                    raise self.fail(node, f"!!float expects a number, found {text!r}")
            return float(value) if value is not None else None
        if tag == _BOOL:
            if text == "true":
                return True
            if text == "false":
                return False
            raise self.fail(node, f"!!bool expects true or false, found {text!r}")
        if tag == _NULL:
            if text in ("", "~", "null"):
                return None
            raise self.fail(node, f"!!null expects null, ~ or nothing, found {text!r}")
        raise self.unsupported_tag(node)

    def unsupported_tag(self, node: Node) -> YamlError:
        tag = node.tag
        shown = "!!" + tag[len(_TAG_PREFIX) :] if tag.startswith(_TAG_PREFIX) else tag
        return self.fail(
            node,
            f"unsupported tag {shown}: only the standard tags !!str, !!int, !!float, !!bool, !!null, "
            "!!seq and !!map are allowed",
        )


def _display(segments: list[str | int]) -> str:
    return JsonPath(tuple(segments)).display()


# -- JSON fast path ---------------------------------------------------------------------------------


class _Fallback(Exception):
    """The JSON fast path cannot give the exact answer; use the YAML path."""


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _Fallback  # the YAML path records the duplicate with its JSON path and line
    return result


def _json_constant(name: str) -> Any:
    raise _Fallback  # NaN/Infinity are not JSON; YAML reads them as strings, like serde_yaml


def _json_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _Fallback
    return value


def _json_int(text: str) -> Any:
    value = _parse_int(text)  # same range rule as YAML: wider than u64/i64 becomes a float
    return value if value is not _NOT_A_NUMBER else float(text)


def _load_json(text: str) -> Any:
    try:
        return json.loads(
            text,
            object_pairs_hook=_json_pairs,
            parse_constant=_json_constant,
            parse_float=_json_float,
            parse_int=_json_int,
        )
    except (ValueError, _Fallback, RecursionError):
        return _NOT_A_NUMBER


# -- public API -------------------------------------------------------------------------------------


def load_yaml(text: str, *, source: str | None = None) -> YamlDocument:
    """Parse one YAML (or JSON) document into plain JSON values.

    Raises:
        YamlError: invalid syntax, more than one document, a custom tag, a recursive alias.
    """
    if text[:1] == "\ufeff":
        text = text[1:]
    if text.lstrip()[:1] in ("{", "["):
        value = _load_json(text)
        if value is not _NOT_A_NUMBER:
            return YamlDocument(value, [])
    node = _compose(text, source)
    if node is None:
        return YamlDocument(None, [])
    builder = _Builder(source)
    try:
        value = builder.build(node)
    except _TooDeep as exc:
        raise _too_deep(source, exc.mark) from None
    except RecursionError:
        raise _too_deep(source) from None
    return YamlDocument(value, builder.duplicates)


def load_yaml_file(path: str | os.PathLike[str]) -> YamlDocument:
    """Read a UTF-8 file and parse it with :func:`load_yaml`.

    Raises:
        YamlError: the file cannot be read or decoded, or is not valid YAML.
    """
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as handle:
            text = handle.read()
    except UnicodeDecodeError as exc:
        problem = f"the file is not valid UTF-8 ({exc.reason} at byte {exc.start})"
        raise YamlError(problem, source=source) from None
    except OSError as exc:
        raise YamlError(f"cannot read the file: {exc.strerror or exc}", source=source) from None
    return load_yaml(text, source=source)
