"""Owns the plugin's catalogue: the listed tools, their components, name lookup, input checks.

A ``Catalogue`` is immutable once built and swapped atomically on refresh, so a call that
looked a tool up keeps a consistent view while a ``list_changed`` refresh runs (mcp.md §4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jsonschema import SchemaError
from jsonschema.validators import validator_for
from mcp import Client
from mcp.types import Tool
from referencing import Registry

from ...errors import ProtocolError
from ..base import ComponentInfo
from ._extras import EXTRA_COMPONENTS
from .mapping import tool_to_component

__all__ = ["MAX_PAGES", "Catalogue", "build_catalogue", "json_path", "list_all_tools"]

MAX_PAGES = 1000
"""Stop following ``nextCursor`` after this many pages (mcp.md §4): a broken paginator must not
hang the start."""


@dataclass(frozen=True, slots=True)
class Catalogue:
    """Tools by name, the components they list as, and the extra (resource/prompt) components."""

    tools: dict[str, Tool]
    components: list[ComponentInfo]
    extras: frozenset[str] = frozenset()
    _validators: dict[str, Any] = field(default_factory=dict)

    def resolve(self, component: str) -> tuple[bool, str] | None:
        """``(is_tool, name)`` for a plugin-local name, or ``None`` when unknown.

        Order: the exact tool name; an extra component (``/resources/read``, ...); then
        upstream's only rule, the text after the last ``/`` (mcp.md §2).
        """
        name = component[1:] if component.startswith("/") else component
        if name in self.tools:
            return True, name
        if component in self.extras:
            return False, component
        if "/" in name:
            tail = name.rsplit("/", 1)[1]
            if tail in self.tools:
                return True, tail
        return None

    def validate(self, tool_name: str, value: Any) -> list[str]:
        """jsonschema errors of ``value`` against the tool's input schema, each ``<path>: <msg>``."""
        validator = self._validators.get(tool_name)
        if validator is None:
            schema = self.tools[tool_name].input_schema
            # Honour the schema's own `$schema` (TypeScript servers say draft-07); resolve `$ref`
            # only within the tool schema (mcp.md §7.11).
            cls = validator_for(schema)
            try:
                cls.check_schema(schema)
            except SchemaError as exc:
                return [f"$: the tool's input schema is invalid: {exc.message}"]
            validator = cls(schema, registry=Registry())
            self._validators[tool_name] = validator
        errors = sorted(validator.iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])
        return [f"{json_path(e.absolute_path)}: {e.message}" for e in errors]


def json_path(parts: Any) -> str:
    """``$.a[0].b`` from a jsonschema error path."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            out += f".{part}"
        else:
            out += f"[{part!r}]"
    return out


async def list_all_tools(client: Client) -> list[Tool]:
    """Every tool, following ``nextCursor`` until it is absent.

    Raises:
        ProtocolError: a repeated cursor, or more than ``MAX_PAGES`` pages.
    """
    tools: list[Tool] = []
    cursor: str | None = None
    seen: set[str] = set()
    for _ in range(MAX_PAGES):
        page = await client.list_tools(cursor=cursor, cache_mode="bypass")
        tools.extend(page.tools)
        cursor = page.next_cursor
        if cursor is None:
            return tools
        if cursor in seen:
            raise ProtocolError(f"tools/list returned the cursor {cursor!r} twice")
        seen.add(cursor)
    raise ProtocolError(f"tools/list did not end after {MAX_PAGES} pages")


def build_catalogue(tools: list[Tool], capabilities: Any) -> Catalogue:
    """A catalogue of ``tools`` plus the extras the server's capabilities make reachable."""
    by_name = {t.name: t for t in tools}
    components = [tool_to_component(t) for t in by_name.values()]
    extras: set[str] = set()
    for info in EXTRA_COMPONENTS:
        capability = info.name.split("/")[1]  # "resources" | "prompts"
        if getattr(capabilities, capability, None) is not None and info.name[1:] not in by_name:
            extras.add(info.name)
            components.append(info)
    return Catalogue(by_name, components, frozenset(extras))
