"""Component routing: public path -> (plugin, plugin-local name) (config.md §4).

Owns route patterns (matchit syntax: literal segments, ``{name}`` for one segment, ``{*name}`` for
the rest; upstream HEAD's one-segment prefix keys such as ``"/mock"`` mount a plugin as
``/mock/{*component}``), their priority (static beats parameter beats catch-all, whatever the map order), rule
selection (conditions on the step input, allow/deny lists, ``component`` templates), reverse
routing for listings, and the config diagnostics about routes.

``resolve`` runs once per step, so the work is done up front: patterns are compiled into a segment
trie, templates into parts, condition paths parsed once, and the result of a resolution whose
rules cannot depend on the step input is cached per component string.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..config.model import join_path
from ..errors import ConfigError, RoutingError
from ..flow.path import MISSING, JsonPath, PathSyntaxError, parse_path
from ..jsonutil import json_equal

if TYPE_CHECKING:
    from ..config.model import RouteRule

__all__ = ["Router"]

# Resolution caches are bounded so arbitrary component strings (REST, nested runs) cannot grow
# memory without limit; flows use a handful of distinct components, so this is never hit in practice.
_CACHE_LIMIT = 4096

_PARAM = re.compile(r"\{(\*?)([A-Za-z_][A-Za-z0-9_]*)\}")


def _route_path(pattern: str) -> str:
    return join_path("$.routes", pattern)


# --------------------------------------------------------------------------------------------------
# Compiled forms


@dataclass(frozen=True, slots=True)
class _Template:
    """A ``component`` template split into literal text and parameter names."""

    parts: tuple[tuple[bool, str], ...]  # (is_param, text-or-name)
    reverse: re.Pattern[str] | None  # matches a local name, capturing the parameters in order
    names: tuple[str, ...]

    def render(self, params: dict[str, str]) -> str:
        return "".join(params[text] if is_param else text for is_param, text in self.parts)


@dataclass(frozen=True, slots=True)
class _Rule:
    index: int
    plugin: str
    conditions: tuple[tuple[JsonPath, Any], ...]
    allow: frozenset[str] | None
    deny: frozenset[str] | None
    template: _Template | None

    def accepts(self, name: str) -> bool:
        if self.allow is not None and name not in self.allow:
            return False
        return self.deny is None or name not in self.deny


@dataclass(frozen=True, slots=True)
class _Route:
    pattern: str
    segments: tuple[str, ...]  # the pattern split at "/"; parameters kept as "{x}" / "{*x}"
    params: tuple[tuple[str, bool], ...]  # (name, is_catch_all) in order
    rules: tuple[_Rule, ...]
    conditional: bool  # any rule has conditions


@dataclass(slots=True)
class _Node:
    """One segment position of the pattern trie."""

    static: dict[str, _Node] = field(default_factory=dict)
    param: _Node | None = None
    param_name: str | None = None
    param_owner: str | None = None  # the pattern that named the parameter first (for messages)
    catch_all: _Route | None = None
    catch_all_name: str | None = None
    route: _Route | None = None  # a pattern ending exactly here


def _parse_template(text: str, route: _Route, where: str) -> _Template:
    kinds = dict(route.params)
    parts: list[tuple[bool, str]] = []
    regex: list[str] = []
    names: list[str] = []
    pos = 0
    for m in _PARAM.finditer(text):
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
    return _Template(tuple(parts), reverse, tuple(names))


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


def _compile_route(pattern: str, rules: list[RouteRule]) -> _Route:
    where = _route_path(pattern)
    if not pattern.startswith("/"):
        raise ConfigError(f"{where}: route pattern must start with '/'")
    segments = _segments(pattern, rules)
    params: list[tuple[str, bool]] = []
    for i, seg in enumerate(segments):
        m = _PARAM.fullmatch(seg)
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
    shell = _Route(pattern, segments, tuple(params), (), False)
    compiled: list[_Rule] = []
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
            _Rule(
                index=i,
                plugin=rule.plugin,
                conditions=tuple(conds),
                allow=frozenset(rule.component_allow) if rule.component_allow is not None else None,
                deny=frozenset(rule.component_deny) if rule.component_deny else None,
                template=template,
            )
        )
    return _Route(pattern, segments, tuple(params), tuple(compiled), any(r.conditions for r in compiled))


# --------------------------------------------------------------------------------------------------
# Router


class Router:
    """Resolves public component paths to ``(plugin, local name)``; build once per config."""

    __slots__ = ("_routes", "_root", "_static", "_resolved", "_matched", "_public")

    def __init__(self, routes: list[_Route], root: _Node) -> None:
        self._routes = routes  # config order (reverse routing uses it)
        self._root = root
        self._static: dict[str, _Route] = {r.pattern: r for r in routes if not r.params}
        self._resolved: dict[str, tuple[str, str]] = {}  # component -> result, input-independent
        self._matched: dict[str, tuple[_Route, dict[str, str]]] = {}  # component -> match
        self._public: dict[tuple[str, str], str | None] = {}

    # -- building ---------------------------------------------------------------------------------

    @classmethod
    def build(cls, routes: dict[str, list[RouteRule]]) -> Router:
        """Compile the routes.

        Raises:
            ConfigError: a malformed pattern or template, or two conflicting patterns
                (e.g. ``/a/{x}`` and ``/a/{y}``).
        """
        root = _Node()
        compiled: list[_Route] = []
        for pattern, rules in routes.items():
            route = _compile_route(pattern, rules)
            cls._insert(root, route)
            compiled.append(route)
        return cls(compiled, root)

    @staticmethod
    def _insert(root: _Node, route: _Route) -> None:
        node = root
        where = _route_path(route.pattern)
        for seg in route.segments:
            m = _PARAM.fullmatch(seg)
            if m is None:
                node = node.static.setdefault(seg, _Node())
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
                node.param = _Node()
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

    # -- matching ---------------------------------------------------------------------------------

    def _match(self, component: str) -> tuple[_Route, dict[str, str]] | None:
        hit = self._matched.get(component)
        if hit is not None:
            return hit
        if not component.startswith("/"):
            return None
        route = self._static.get(component)
        if route is not None:
            found: tuple[_Route, dict[str, str]] | None = (route, {})
        else:
            segments = component[1:].split("/")
            params: dict[str, str] = {}
            found = self._walk(self._root, segments, 0, params, component)
        if found is not None:
            if len(self._matched) >= _CACHE_LIMIT:
                self._matched.clear()
            self._matched[component] = found
        return found

    def _walk(
        self, node: _Node, segments: list[str], i: int, params: dict[str, str], component: str
    ) -> tuple[_Route, dict[str, str]] | None:
        """Depth-first, static before parameter before catch-all, backtracking on a dead end."""
        if i == len(segments):
            return (node.route, dict(params)) if node.route is not None else None
        seg = segments[i]
        child = node.static.get(seg)
        if child is not None:
            found = self._walk(child, segments, i + 1, params, component)
            if found is not None:
                return found
        if node.param is not None and seg:
            name = node.param_name
            assert name is not None
            params[name] = seg
            found = self._walk(node.param, segments, i + 1, params, component)
            del params[name]
            if found is not None:
                return found
        if node.catch_all is not None:
            rest = "/".join(segments[i:])
            if rest:  # a catch-all takes one or more characters
                out = dict(params)
                assert node.catch_all_name is not None
                out[node.catch_all_name] = rest
                return node.catch_all, out
        return None

    # -- resolution -------------------------------------------------------------------------------

    def resolve(self, component: str, step_input: Any) -> tuple[str, str]:
        """Return ``(plugin name, plugin-local name)`` for a step.

        Raises:
            RoutingError: no pattern or rule applies (``No matching rule found for component: <path>``),
                a condition path does not resolve in the input, or the route cannot name the component.
        """
        hit = self._resolved.get(component)
        if hit is not None:
            return hit
        match = self._match(component)
        if match is None:
            raise RoutingError(f"No matching rule found for component: {component}")
        route, params = match
        result = self._select(route, params, component, step_input)
        if not route.conditional:
            if len(self._resolved) >= _CACHE_LIMIT:
                self._resolved.clear()
            self._resolved[component] = result
        return result

    def _select(
        self, route: _Route, params: dict[str, str], component: str, step_input: Any
    ) -> tuple[str, str]:
        for rule in route.rules:
            if rule.conditions and not self._conditions_hold(rule, route, component, step_input):
                continue
            name = self._local_name(rule, route, params, component)
            if rule.accepts(name):
                return rule.plugin, name
        raise RoutingError(f"No matching rule found for component: {component}")

    @staticmethod
    def _conditions_hold(rule: _Rule, route: _Route, component: str, step_input: Any) -> bool:
        for path, expected in rule.conditions:
            actual = path.lookup(step_input)
            if actual is MISSING:
                # A path that does not resolve is an error, not a non-match (config.md §4).
                raise RoutingError(
                    f"Route condition path {path.display()} not found in the input of component "
                    f"{component} (route '{route.pattern}', rule {rule.index})"
                )
            if not json_equal(actual, expected):
                return False
        return True

    @staticmethod
    def _local_name(rule: _Rule, route: _Route, params: dict[str, str], component: str) -> str:
        if rule.template is not None:
            return rule.template.render(params)
        value = params.get("component")
        if value is None:
            raise RoutingError(
                f"Route '{route.pattern}' matched component {component} but has no {{component}} "
                f"parameter, and its rule for plugin '{rule.plugin}' has no 'component' template"
            )
        return "/" + value

    def resolve_static(self, component: str) -> tuple[str, str]:
        """Resolution without a step input, for validation: conditions are assumed to hold, so the
        first rule whose allow/deny lists accept the name wins.

        Raises:
            RoutingError: as ``resolve``, when no rule could apply whatever the input.
        """
        match = self._match(component)
        if match is None:
            raise RoutingError(f"No matching rule found for component: {component}")
        route, params = match
        for rule in route.rules:
            name = self._local_name(rule, route, params, component)
            if rule.accepts(name):
                return rule.plugin, name
        raise RoutingError(f"No matching rule found for component: {component}")

    def needs_input(self, component: str) -> bool:
        """Whether resolving ``component`` can depend on the step input (some rule has conditions
        and could be reached). ``False`` also when the component does not route at all."""
        match = self._match(component)
        if match is None:
            return False
        route, params = match
        if not route.conditional:
            return False
        for rule in route.rules:
            if rule.conditions:
                return True
            try:
                name = self._local_name(rule, route, params, component)
            except RoutingError:
                return False
            if rule.accepts(name):
                return False  # an unconditional rule wins before any conditional one
        return False

    # -- reverse routing --------------------------------------------------------------------------

    def public_path(self, plugin: str, local_name: str) -> str | None:
        """The public path that reaches ``local_name`` of ``plugin``, or ``None`` if no route does.

        The first pattern (in config order) with a rule for the plugin that accepts the name wins.
        """
        key = (plugin, local_name)
        if key in self._public:
            return self._public[key]
        found: str | None = None
        for route in self._routes:
            for rule in route.rules:
                if rule.plugin != plugin or not rule.accepts(local_name):
                    continue
                public = self._reverse(route, rule, local_name)
                if public is not None:
                    found = public
                    break
            if found is not None:
                break
        if len(self._public) >= _CACHE_LIMIT:
            self._public.clear()
        self._public[key] = found
        return found

    def _reverse(self, route: _Route, rule: _Rule, local_name: str) -> str | None:
        values: dict[str, str] = {}
        if rule.template is not None:
            if rule.template.reverse is None:
                return None
            m = rule.template.reverse.match(local_name)
            if m is None:
                return None
            values = dict(zip(rule.template.names, m.groups(), strict=True))
        elif any(name == "component" for name, _ in route.params):
            values["component"] = local_name[1:] if local_name.startswith("/") else local_name
        else:
            return None
        out: list[str] = []
        for seg in route.segments:
            m = _PARAM.fullmatch(seg)
            if m is None:
                out.append(seg)
                continue
            value = values.get(m.group(2))
            if value is None:
                return None  # a parameter the name cannot supply
            out.append(value)
        public = "/" + "/".join(out)
        while "//" in public:
            public = public.replace("//", "/")
        # The path must route back here: a more specific pattern could shadow it.
        match = self._match(public)
        if match is None or match[0] is not route:
            return None
        return public

    # -- diagnostics ------------------------------------------------------------------------------

    def route_diagnostics(self, plugin_names: Iterable[str]) -> list[dict[str, Any]]:
        """Config diagnostics (flow-format.md §10): ``noPluginsConfigured`` (1200),
        ``noRoutingRulesConfigured`` (1201), ``invalidRouteReference`` (2200), ``unusedPlugin`` (1202)."""
        plugins = list(plugin_names)
        known = set(plugins)
        out: list[dict[str, Any]] = []
        if not plugins:
            out.append(_diag("noPluginsConfigured", 1200, "warning", "No plugins configured", "$.plugins"))
        if not self._routes:
            out.append(
                _diag("noRoutingRulesConfigured", 1201, "warning", "No routing rules configured", "$.routes")
            )
        used: set[str] = set()
        for route in self._routes:
            for rule in route.rules:
                used.add(rule.plugin)
                if rule.plugin not in known:
                    out.append(
                        _diag(
                            "invalidRouteReference",
                            2200,
                            "error",
                            f"Route '{route.pattern}' references unknown plugin '{rule.plugin}'",
                            f"{_route_path(route.pattern)}[{rule.index}].plugin",
                            {"route_path": route.pattern, "rule_index": rule.index, "plugin": rule.plugin},
                        )
                    )
        for name in plugins:
            if name not in used:
                path = join_path("$.plugins", name)
                out.append(
                    _diag(
                        "unusedPlugin",
                        1202,
                        "warning",
                        f"Plugin '{name}' is not used by any route",
                        path,
                        {"plugin": name},
                    )
                )
        return out

    @property
    def patterns(self) -> list[str]:
        """The route patterns in config order."""
        return [r.pattern for r in self._routes]


def _diag(kind: str, code: int, level: str, formatted: str, path: str, data: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": kind, "code": code, "level": level, "formatted": formatted}
    if data:
        out["data"] = data
    out["path"] = path
    return out
