"""``/noop`` and ``/sleep``: the two benchmarking builtins of upstream HEAD.

* ``/noop`` returns its input unchanged (any JSON value, ``null`` included). It needs no I/O, so the
  plugin serves it on the synchronous ``execute_inline`` path.
* ``/sleep`` takes ``{duration_ms, passthrough?}``, waits ``duration_ms`` milliseconds and returns
  ``{duration_ms, passthrough?}`` (``passthrough`` only when given and not ``null``). The wait is an
  ``anyio.sleep``: cooperative, so thousands of sleeping steps cost no threads, and cancellable, so a
  cancelled run stops it at once. It is never served inline.

``duration_ms`` is an unsigned 64-bit integer as upstream declares it: a float (even ``10.0``), a
bool, a negative number or ``null`` is the usual ``invalid input`` component error. Extra keys are
ignored.
"""

from __future__ import annotations

from typing import Any

import anyio

from ...core.result import FlowResult
from ..base import ExecutionContext
from ._errors import describe, expect_object, invalid_input, require

__all__ = ["U64_MAX", "noop", "sleep"]

U64_MAX = 2**64 - 1


def noop(input: Any) -> FlowResult:
    """The input, unchanged."""
    return FlowResult.success(input)


def _duration_ms(obj: dict[str, Any]) -> int:
    value = require(obj, "duration_ms")
    if value.__class__ is not int:
        raise invalid_input(f"invalid type: {describe(value)}, expected u64")
    if value < 0 or value > U64_MAX:
        raise invalid_input(f"invalid value: integer `{value}`, expected u64")
    return value


async def sleep(input: Any, ctx: ExecutionContext) -> FlowResult:
    """``{duration_ms, passthrough?}`` → the same after ``duration_ms`` milliseconds."""
    obj = expect_object(input)
    duration_ms = _duration_ms(obj)
    passthrough = obj.get("passthrough")
    await anyio.sleep(duration_ms / 1000)
    out: dict[str, Any] = {"duration_ms": duration_ms}
    if passthrough is not None:
        out["passthrough"] = passthrough
    return FlowResult.success(out)
