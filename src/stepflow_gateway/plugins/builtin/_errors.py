"""Component errors of the builtins, with the exact ``data.stack`` shapes of builtins.md §1.

Every builtin failure is wrapped in ``error executing user-defined function`` (upstream changes the
context of each builtin's error to ``UdfExecution``). Input problems add ``invalid input`` followed by
a parser detail worded like serde's (``missing field `x```, ``invalid type: integer `5`, expected a
string``), so that stacks read the same as upstream's.

Also owns the hand-written input checks used by every builtin: no pydantic on these paths, because
``create_messages`` is the engine benchmark's no-op and must stay cheap.
"""

from __future__ import annotations

from typing import Any

from ...errors import ComponentError

__all__ = [
    "UDF_EXECUTION",
    "builtin_error",
    "describe",
    "expect_object",
    "invalid_input",
    "optional_int",
    "optional_str",
    "require",
    "require_str",
]

UDF_EXECUTION = "error executing user-defined function"


def builtin_error(*entries: str, attachments: list[str] | None = None) -> ComponentError:
    """A component error whose stack is ``UDF_EXECUTION`` followed by ``entries`` (outermost first)."""
    stack: list[dict[str, Any]] = [{"error": UDF_EXECUTION}]
    stack.extend({"error": e} for e in entries)
    message = entries[-1] if entries else UDF_EXECUTION
    return ComponentError(message, stack=stack, attachments=attachments)


def invalid_input(detail: str) -> ComponentError:
    """``error executing user-defined function`` → ``invalid input`` → ``detail``."""
    return builtin_error("invalid input", detail)


def describe(value: Any) -> str:
    """A JSON value the way serde's ``Unexpected`` names it (``integer `5```, ``string "x"``)."""
    if value is None:
        return "null"
    if value is True or value is False:
        return f"boolean `{'true' if value else 'false'}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value!r}`"
    if isinstance(value, str):
        return f'string "{value}"'
    if isinstance(value, list):
        return "sequence"
    return "map"


def expect_object(value: Any) -> dict[str, Any]:
    """The input must be a JSON object."""
    if value.__class__ is dict:
        return value
    if isinstance(value, dict):
        return value
    raise invalid_input(f"invalid type: {describe(value)}, expected an object")


def require(obj: dict[str, Any], key: str) -> Any:
    """A required key of any type (present, possibly ``null``)."""
    try:
        return obj[key]
    except KeyError:
        raise invalid_input(f"missing field `{key}`") from None


def require_str(obj: dict[str, Any], key: str) -> str:
    """A required string."""
    try:
        value = obj[key]
    except KeyError:
        raise invalid_input(f"missing field `{key}`") from None
    if value.__class__ is not str:
        raise invalid_input(f"invalid type: {describe(value)}, expected a string")
    return value


def optional_str(obj: dict[str, Any], key: str) -> str | None:
    """An optional string (absent or ``null`` → ``None``)."""
    value = obj.get(key)
    if value is None or value.__class__ is str:
        return value
    raise invalid_input(f"invalid type: {describe(value)}, expected a string")


def optional_int(obj: dict[str, Any], key: str, *, minimum: int = 0) -> int | None:
    """An optional integer ``>= minimum`` (absent or ``null`` → ``None``). Floats and bools are refused."""
    value = obj.get(key)
    if value is None:
        return None
    if value.__class__ is not int:
        raise invalid_input(f"invalid type: {describe(value)}, expected an integer")
    if value < minimum:
        raise invalid_input(f"invalid value: integer `{value}`, expected an integer >= {minimum}")
    return value
