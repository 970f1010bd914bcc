"""Route patterns of the config (config.md §4): parse, compile and check them.

Owns the pattern syntax (matchit: literal segments, ``{name}`` for one segment, ``{*name}`` for
the rest; upstream HEAD's one-segment prefix keys such as ``"/mock"`` mount a plugin as
``/mock/{*component}``), ``component`` templates, the compiled forms of routes and rules, and the
segment trie with its conflict checks (``/a/{x}`` against ``/a/{y}``, two catch-alls at one
position, one pattern twice). ``config.load`` compiles the routes to validate a file;
``plugins.router`` builds the ``Router`` on the same compiled routes and does the matching and
resolution. Every problem is a ``ConfigError`` whose message starts with the route's JSON path
(``$.routes["/x/{y}"]``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..jsonpath import JsonPath, PathSyntaxError, parse_path
from .model import RouteRule, join_path

__all__ = [
    "PARAM",
    "CompiledRoute",
    "CompiledRule",
    "Template",
    "TrieNode",
    "compile_routes",
    "route_path",
]

# One parameter: `{name}` or `{*name}` (catch-all); a whole segment in a pattern, anywhere in a template.
PARAM = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)\}")


def route_path(pattern: str) -> str:
    """The JSON path of a route in the config file, where its messages point."""
    return join_path("$.routes", pattern)


# --------------------------------------------------------------------------------------------------
# Compiled forms


@dataclass(frozen=True, slots=True)
class Template:
    """A ``component`` template split into literal text and parameter names."""

    parts: tuple[tuple[bool, str], ...]  # (is_param, text-or-name)
    reverse: re.Pattern[str] | None  # matches a local name, capturing the parameters in order
    names: tuple[str, ...]

    def render(self, params: dict[str, str]) -> str:
        return "".join(params[text] if is_param else text for is_param, text in self.parts)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """One rule of a route, with its condition paths parsed and its template split."""

    index: int
    plugin: str
    conditions: tuple[tuple[JsonPath, Any], ...]
    allow: frozenset[str] | None
    deny: frozenset[str] | None
    template: Template | None

    def accepts(self, name: str) -> bool:
        if self.allow is not None and name not in self.allow:
            return False
        return self.deny is None or name not in self.deny


@dataclass(frozen=True, slots=True)
class CompiledRoute:
    """A route pattern split into segments, with its parameters and compiled rules."""

    pattern: str
    segments: tuple[str, ...]  # the pattern split at "/"; parameters kept as "{x}" / "{*x}"
    params: tuple[tuple[str, bool], ...]  # (name, is_catch_all) in order
    rules: tuple[CompiledRule, ...]
    conditional: bool  # any rule has conditions


@dataclass(slots=True)
class TrieNode:
    """One segment position of the pattern trie."""

    static: dict[str, TrieNode] = field(default_factory=dict)
    param: TrieNode | None = None
    param_name: str | None = None
    param_owner: str | None = None  # the pattern that named the parameter first (for messages)
    catch_all: CompiledRoute | None = None
    catch_all_name: str | None = None
    route: CompiledRoute | None = None  # a pattern ending exactly here


def _parse_template(text: str, route: CompiledRoute, where: str) -> Template:
    kinds = dict(route.params)
    parts: list[tuple[bool, str]] = []
    regex: list[str] = []
    names: list[str] = []
    pos = 0
    for m in PARAM.finditer(text):
        if m.start() > pos:
            parts.append((False, text[pos : m.start()]))
            regex.append(re.escape(text[pos : m.start()]))
        star, name = m.groups()
        if star or name not in kinds:
            known = ", ".join(f"{{{n}}}" for n in kinds) or "none"
            raise ConfigError(
                f"{where}: template {text!r} uses {m.group(0)} but the pattern {route.pattern!r} "
                f"only captures {known} (a catch-all {{*name}} is referenced as {{name}})"
            )
        parts.append((True, name))
        regex.append("(.+)" if kinds[name] else "([^/]+)")
        names.append(name)
        pos = m.end()
    if pos < len(text):
        parts.append((False, text[pos:]))
        regex.append(re.escape(text[pos:]))
    if "{" in "".join(t for p, t in parts if not p) or "}" in "".join(t for p, t in parts if not p):
        raise ConfigError(f"{where}: template {text!r} has a malformed {{parameter}}")
    reverse = re.compile("".join(regex) + r"\Z") if len(set(names)) == len(names) else None
    return Template(tuple(parts), reverse, tuple(names))


def _segments(pattern: str, rules: list[RouteRule]) -> tuple[str, ...]:
    """The pattern's segments; an upstream HEAD *prefix route* is mounted as a catch-all.

    Upstream HEAD's keys are ``"/"`` or one literal segment (``"/mock"``) under which each plugin's
    components are mounted: ``/mock/error`` reaches the plugin-local ``/error``. Such a key, when
    none of its rules has a ``component`` template (HEAD's rules have none), routes like
    ``/mock/{*component}`` (``/{*component}`` for ``"/"``). With a template it stays the literal
    pattern of the 2e155519 format (``"/chat": [{plugin: builtin, component: /openai}]``).
    """
    segments = tuple(pattern[1:].split("/"))
    if len(segments) == 1 and not any(r.component is not None for r in rules):
        seg = segments[0]
        if "{" not in seg and "}" not in seg:
            return ("{*component}",) if seg == "" else (seg, "{*component}")
    return segments


def _compile_route(pattern: str, rules: list[RouteRule]) -> CompiledRoute:
    where = route_path(pattern)
    if not pattern.startswith("/"):
        raise ConfigError(f"{where}: route pattern must start with '/'")
    segments = _segments(pattern, rules)
    params: list[tuple[str, bool]] = []
    for i, seg in enumerate(segments):
        m = PARAM.fullmatch(seg)
        if m is None:
            if "{" in seg or "}" in seg:
                raise ConfigError(
                    f"{where}: segment {seg!r} is not a valid parameter: use a whole segment "
                    "{name} or a final {*name}, with name [A-Za-z_][A-Za-z0-9_]*"
                )
            continue
        star, name = m.groups()
        if star and i != len(segments) - 1:
            raise ConfigError(f"{where}: the catch-all {seg} must be the last segment")
        if any(name == n for n, _ in params):
            raise ConfigError(f"{where}: parameter {{{name}}} appears twice")
        params.append((name, bool(star)))
    shell = CompiledRoute(pattern, segments, tuple(params), (), False)
    compiled: list[CompiledRule] = []
    for i, rule in enumerate(rules):
        rwhere = f"{where}[{i}]"
        conds: list[tuple[JsonPath, Any]] = []
        for j, cond in enumerate(rule.conditions):
            try:
                conds.append((parse_path(cond.path), cond.value))
            except PathSyntaxError as exc:  # the loader reports it first; this guards direct use
                raise ConfigError(f"{rwhere}.conditions[{j}].path: {exc.message}") from None
        template = (
            _parse_template(rule.component, shell, f"{rwhere}.component")
            if rule.component is not None
            else None
        )
        compiled.append(
            CompiledRule(
                index=i,
                plugin=rule.plugin,
                conditions=tuple(conds),
                allow=frozenset(rule.component_allow) if rule.component_allow is not None else None,
                deny=frozenset(rule.component_deny) if rule.component_deny else None,
                template=template,
            )
        )
    return CompiledRoute(
        pattern, segments, tuple(params), tuple(compiled), any(r.conditions for r in compiled)
    )


def compile_routes(routes: Mapping[str, list[RouteRule]]) -> tuple[list[CompiledRoute], TrieNode]:
    """Compile the routes (in config order) and insert them into a segment trie.

    Raises:
        ConfigError: a malformed pattern or template, or two conflicting patterns
            (e.g. ``/a/{x}`` and ``/a/{y}``).
    """
    root = TrieNode()
    compiled: list[CompiledRoute] = []
    for pattern, rules in routes.items():
        route = _compile_route(pattern, rules)
        _insert(root, route)
        compiled.append(route)
    return compiled, root


def _insert(root: TrieNode, route: CompiledRoute) -> None:
    """Add ``route`` to the trie, or raise ``ConfigError`` if it conflicts with one already there."""
    node = root
    where = route_path(route.pattern)
    for seg in route.segments:
        m = PARAM.fullmatch(seg)
        if m is None:
            node = node.static.setdefault(seg, TrieNode())
            continue
        star, name = m.groups()
        if star:
            if node.catch_all is not None:
                raise ConfigError(
                    f"{where}: conflicts with route {node.catch_all.pattern!r} (both catch all at "
                    "the same position)"
                )
            node.catch_all = route
            node.catch_all_name = name
            return
        if node.param is None:
            node.param = TrieNode()
            node.param_name = name
            node.param_owner = route.pattern
        elif node.param_name != name:
            raise ConfigError(
                f"{where}: conflicts with route {node.param_owner!r}: the same segment is "
                f"{{{node.param_name}}} there and {{{name}}} here; use one name"
            )
        node = node.param
    if node.route is not None:
        raise ConfigError(f"{where}: conflicts with route {node.route.pattern!r}")
    node.route = route
