"""``/create_messages``: build a chat message list (builtins.md §8).

This is the engine benchmark's no-op, so it runs synchronously through the plugin's
``execute_inline`` fast path: plain checks, no validation library, no awaits.
"""

from __future__ import annotations

from typing import Any

from ...core.result import FlowResult
from ._errors import describe, invalid_input

__all__ = ["create_messages"]

_success = FlowResult.success


class _Missing:
    __slots__ = ()


_MISSING: Any = _Missing()
"""Marks an absent key (``None`` means JSON null)."""


def create_messages(input: Any) -> FlowResult:
    """``{user_prompt, system_instructions?}`` → ``{messages: [{role, content}, ...]}``.

    Raises:
        ComponentError: the input is not an object, ``user_prompt`` is missing or not a string, or
            ``system_instructions`` is neither a string nor null.
    """
    if input.__class__ is not dict and not isinstance(input, dict):
        raise invalid_input(f"invalid type: {describe(input)}, expected an object")
    prompt = input.get("user_prompt", _MISSING)
    if prompt.__class__ is not str:
        if prompt is _MISSING:
            raise invalid_input("missing field `user_prompt`")
        raise invalid_input(f"invalid type: {describe(prompt)}, expected a string")
    system = input.get("system_instructions")
    if system is None:
        return _success({"messages": [{"role": "user", "content": prompt}]})
    if system.__class__ is not str:
        raise invalid_input(f"invalid type: {describe(system)}, expected a string")
    return _success(
        {"messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}]}
    )
