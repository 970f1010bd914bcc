"""Shared type aliases and value types used across the package (imports nothing of ours)."""

from __future__ import annotations

from typing import Any, TypeAlias

JsonValue: TypeAlias = Any
"""A plain JSON value: dict (insertion ordered), list, str, int, float, bool or None."""

ComponentPath: TypeAlias = str
"""A public component path as written in a flow, e.g. ``/builtin/eval``."""


class ComplexKeyMap(list):  # type: ignore[type-arg]
    """A mapping with at least one mapping or sequence key, as ``(key, value)`` pairs in order.

    Python dicts cannot hold such keys (the mock plugin's ``behaviors`` use ``{input: "a"}:``).
    Keys are JSON values; scalar keys keep their resolved value (``1`` stays the int ``1``).
    Repeated keys (by JSON equality) are merged: the last value wins.

    ``yaml_loader`` builds it and ``jsonutil`` compares and hashes it; it lives here so that neither
    imports the other at module level. ``yaml_loader.ComplexKeyMap`` is the same class.
    """

    __slots__ = ()
