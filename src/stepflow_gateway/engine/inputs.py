"""Flow inputs and variables: schema defaults, validation (flow-format.md §11, §12.1).

Both are computed once per item (input) or once per run (variables) before any step runs.

``jsonschema`` costs ~60-100 ms to import, so it is imported only when a verdict needs it: a schema
made only of the plain keywords (``type``, ``properties``, ``required``, ``items``, string enums,
bounds, annotations) is compiled once into a checker that proves an instance *valid*; whenever it
cannot (a failure, or any other keyword), jsonschema gives the verdict and the messages. So the
fast path can only say "valid" where jsonschema says so too; every error still comes from
jsonschema.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable, Sized
from typing import Any

from ..core.result import FlowResult

__all__ = ["InputChecker", "resolve_variables", "secret_names"]


def _resolve_ref(ref: str, root: dict[str, Any]) -> Any:
    """Resolve a local ``#/...`` reference against the flow document root ``{"schemas": ...}``."""
    if not ref.startswith("#/"):
        return None
    node: Any = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node


def apply_defaults(value: Any, schema: Any, root: dict[str, Any], depth: int = 0) -> Any:
    """Fill missing properties that have a ``default`` (deep copies), recursively. Returns the value."""
    if depth > 64 or not isinstance(schema, dict):
        return value
    ref = schema.get("$ref")
    if isinstance(ref, str):
        target = _resolve_ref(ref, root)
        if target is not None:
            value = apply_defaults(value, target, root, depth + 1)
    props = schema.get("properties")
    if isinstance(value, dict) and isinstance(props, dict):
        for key, sub in props.items():
            if key not in value and isinstance(sub, dict) and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = apply_defaults(value[key], sub, root, depth + 1)
    return value


def _display_path(parts: Any) -> str:
    out = "$"
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif isinstance(p, str) and (p == "" or any(c in p for c in ".[]")):
            out += f'["{p}"]'
        else:
            out += f".{p}"
    return out


# --------------------------------------------------------------------------------------------------
# The plain-schema fast path. A compiled check returns True only when the instance is certainly
# valid under Draft 2020-12 (and draft 6/7, which agree on these keywords); False means "ask
# jsonschema". Any keyword outside the table below makes the schema "not plain" (None).
# Positive tests ("is a string") may be stricter than jsonschema's (``type(v) is str``): a False only
# costs a jsonschema call. "Does not apply" tests (``properties`` on a non-object) must be exactly as
# loose as jsonschema's type checker (``isinstance``), or an instance could slip through.

_Check = Callable[[Any], bool]

_ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "$comment",
        "deprecated",
        "readOnly",
        "writeOnly",
        "is_secret",
        "format",
        "$defs",
        "definitions",
        "contentMediaType",
        "contentEncoding",
    }
)
"""Keywords that never fail validation (``format`` only annotates without a format checker; an
unreferenced ``$defs`` is inert: ``$ref`` itself is not plain)."""


def _is_integer(v: Any) -> bool:
    t = type(v)
    return t is int or (t is float and v.is_integer())


_TYPES: dict[str, _Check] = {
    "object": lambda v: type(v) is dict,
    "array": lambda v: type(v) is list,
    "string": lambda v: type(v) is str,
    "number": lambda v: type(v) is int or type(v) is float,
    "integer": _is_integer,
    "boolean": lambda v: type(v) is bool,
    "null": lambda v: v is None,
}


def _count(value: Any) -> bool:
    return type(value) is int and value >= 0


_REAL = (int, float)


def _not_numeric(v: Any) -> bool:
    """Bounds do not apply (jsonschema's "number": a ``numbers.Number`` that is not a bool)."""
    return isinstance(v, bool) or not isinstance(v, numbers.Number)


def _number(value: Any) -> bool:
    return (type(value) is int or type(value) is float) and math.isfinite(value)


def compile_plain(schema: Any, depth: int = 0) -> _Check | None:
    """A checker proving instances valid under ``schema``, or ``None`` if the schema is not plain."""
    if schema is True or schema == {}:
        return lambda v: True
    if not isinstance(schema, dict) or depth > 32:
        return None
    checks: list[_Check] = []
    for key, arg in schema.items():
        if key in _ANNOTATIONS:
            continue
        if key == "type":
            names = [arg] if isinstance(arg, str) else arg
            if not isinstance(names, list) or not names or any(n not in _TYPES for n in names):
                return None
            tests = [_TYPES[n] for n in names]
            if len(tests) == 1:
                checks.append(tests[0])
            else:

                def any_type(v: Any, ts: list[_Check] = tests) -> bool:
                    return any(t(v) for t in ts)

                checks.append(any_type)
        elif key == "properties":
            if not isinstance(arg, dict):
                return None
            subs: list[tuple[str, _Check]] = []
            for name, sub in arg.items():
                check = compile_plain(sub, depth + 1)
                if check is None:
                    return None
                subs.append((name, check))

            def properties(v: Any, subs: list[tuple[str, _Check]] = subs) -> bool:
                if not isinstance(v, dict):
                    return True
                return all(c(v[n]) for n, c in subs if n in v)

            checks.append(properties)
        elif key == "additionalProperties":
            if arg is True or arg == {}:
                continue
            if arg is not False or not isinstance(schema.get("properties", {}), dict):
                return None
            known = frozenset(schema.get("properties", {}))

            def no_additional(v: Any, known: frozenset[Any] = known) -> bool:
                return not isinstance(v, dict) or all(k in known for k in v)

            checks.append(no_additional)
        elif key == "required":
            if not isinstance(arg, list) or any(type(n) is not str for n in arg):
                return None
            names_req = tuple(arg)

            def required(v: Any, names: tuple[str, ...] = names_req) -> bool:
                return not isinstance(v, dict) or all(n in v for n in names)

            checks.append(required)
        elif key == "items":
            item_check = compile_plain(arg, depth + 1)
            if item_check is None or not isinstance(arg, (dict, bool)):
                return None

            def items(v: Any, c: _Check = item_check) -> bool:
                return not isinstance(v, list) or all(c(x) for x in v)

            checks.append(items)
        elif key == "enum":
            if not isinstance(arg, list) or not arg or any(type(x) is not str for x in arg):
                return None
            allowed = frozenset(arg)

            def enum(v: Any, allowed: frozenset[str] = allowed) -> bool:
                return type(v) is str and v in allowed

            checks.append(enum)
        elif key in ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties"):
            if not _count(arg):
                return None
            kind: type[Sized] = str if key.endswith("Length") else list if key.endswith("Items") else dict
            if key.startswith("min"):

                def min_size(v: Any, n: int = arg, k: type[Sized] = kind) -> bool:
                    return not isinstance(v, k) or len(v) >= n

                checks.append(min_size)
            else:

                def max_size(v: Any, n: int = arg, k: type[Sized] = kind) -> bool:
                    return not isinstance(v, k) or len(v) <= n

                checks.append(max_size)
        elif key in ("minimum", "maximum"):
            if not _number(arg):
                return None
            if key == "minimum":

                def minimum(v: Any, n: float = arg) -> bool:
                    return v >= n if type(v) in _REAL else _not_numeric(v)

                checks.append(minimum)
            else:

                def maximum(v: Any, n: float = arg) -> bool:
                    return v <= n if type(v) in _REAL else _not_numeric(v)

                checks.append(maximum)
        else:
            return None  # $ref, $schema, anyOf, pattern, const, exclusive bounds...: jsonschema decides
    if not checks:
        return lambda v: True
    if len(checks) == 1:
        return checks[0]
    return lambda v: all(c(v) for c in checks)


_plain_cache: dict[int, tuple[Any, _Check | None]] = {}


def _plain_checker(schema: Any) -> _Check | None:
    """``compile_plain`` cached per schema object (variables are checked once per run)."""
    hit = _plain_cache.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    check = compile_plain(schema)
    if len(_plain_cache) > 256:
        _plain_cache.clear()
    _plain_cache[id(schema)] = (schema, check)
    return check


class InputChecker:
    """Applies defaults and validates items against ``schemas.properties.input``."""

    __slots__ = ("schema", "root", "_validator", "_plain")

    def __init__(self, schema: Any, schemas: Any) -> None:
        self.schema = schema
        self.root = {"schemas": schemas if isinstance(schemas, dict) else {}}
        self._validator: Any = None
        self._plain: _Check | None = compile_plain(schema)

    def _get_validator(self) -> Any:
        if self._validator is None:
            import jsonschema

            wrapper: dict[str, Any] = {"$ref": "#/schemas/properties/input", "schemas": self.root["schemas"]}
            dialect = self.schema.get("$schema") if isinstance(self.schema, dict) else None
            if dialect:
                wrapper["$schema"] = dialect
            cls = jsonschema.validators.validator_for(wrapper, default=jsonschema.Draft202012Validator)
            self._validator = cls(wrapper)
        return self._validator

    def check(self, item: Any) -> Any:
        """Return the defaulted item, or a failed ``FlowResult`` (code 400) naming the JSON path."""
        item = apply_defaults(copy.deepcopy(item), self.schema, self.root)
        plain = self._plain
        if plain is not None and plain(item):
            return item
        try:
            errors = sorted(
                self._get_validator().iter_errors(item), key=lambda e: list(map(str, e.absolute_path))
            )
        except Exception as exc:  # an invalid schema is a flow problem, not a crash
            return FlowResult.failed(400, f"Input schema is invalid: {exc}")
        if not errors:
            return item
        listed = [{"path": _display_path(e.absolute_path), "message": e.message} for e in errors]
        first = listed[0]
        return FlowResult.failed(
            400, f"Input validation failed at {first['path']}: {first['message']}", {"errors": listed}
        )


_IMPLICIT = {"string": "", "number": 0, "integer": 0, "boolean": False}


def resolve_variables(schema: Any, supplied: dict[str, Any] | None) -> dict[str, Any]:
    """Supplied values, then schema defaults (explicit, or implicit by type when not required)."""
    out: dict[str, Any] = {}
    props = schema.get("properties") if isinstance(schema, dict) else None
    required = set(schema.get("required") or []) if isinstance(schema, dict) else set()
    if isinstance(props, dict):
        for name, sub in props.items():
            if not isinstance(sub, dict):
                continue
            if "default" in sub:
                out[name] = copy.deepcopy(sub["default"])
            elif name not in required:
                t = sub.get("type")
                if isinstance(t, str) and t in _IMPLICIT:
                    out[name] = _IMPLICIT[t]
                elif isinstance(t, list) and "null" in t:
                    out[name] = None
    if supplied:
        out.update(supplied)
    return out


def validate_variables(schema: Any, supplied: dict[str, Any] | None) -> str | None:
    """Check supplied variables against their property schemas; a message or ``None``."""
    if not supplied or not isinstance(schema, dict):
        return None
    props = schema.get("properties")
    if not isinstance(props, dict):
        return None
    for name, value in supplied.items():
        sub = props.get(name)
        if not isinstance(sub, dict):
            continue
        plain = _plain_checker(sub)
        if plain is not None and plain(value):
            continue
        import jsonschema

        cls = jsonschema.validators.validator_for(sub, default=jsonschema.Draft202012Validator)
        err = next(iter(cls(sub).iter_errors(value)), None)
        if err is not None:
            return f"Variable '{name}' is invalid at {_display_path(err.absolute_path)}: {err.message}"
    return None


def secret_names(schema: Any) -> set[str]:
    """Names of properties marked ``is_secret: true`` (top level of an object schema)."""
    props = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(props, dict):
        return set()
    return {k for k, v in props.items() if isinstance(v, dict) and v.get("is_secret") is True}
