"""Shared type aliases used across the package."""

from __future__ import annotations

from typing import Any, TypeAlias

JsonValue: TypeAlias = Any
"""A plain JSON value: dict (insertion ordered), list, str, int, float, bool or None."""

ComponentPath: TypeAlias = str
"""A public component path as written in a flow, e.g. ``/builtin/eval``."""
