"""Flow inputs and variables: schema defaults, validation (flow-format.md §11, §12.1).

Both are computed once per item (input) or once per run (variables) before any step runs.
``jsonschema`` is imported only when a flow actually declares a schema.
"""

from __future__ import annotations

import copy
from typing import Any

from ..engine.result import FlowResult

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


class InputChecker:
    """Applies defaults and validates items against ``schemas.properties.input``."""

    __slots__ = ("schema", "root", "_validator")

    def __init__(self, schema: Any, schemas: Any) -> None:
        self.schema = schema
        self.root = {"schemas": schemas if isinstance(schemas, dict) else {}}
        self._validator: Any = None

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
        try:
            errors = sorted(self._get_validator().iter_errors(item), key=lambda e: (list(map(str, e.absolute_path))))
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
    import jsonschema

    for name, value in supplied.items():
        sub = props.get(name)
        if not isinstance(sub, dict):
            continue
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
