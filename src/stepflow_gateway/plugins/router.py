"""Component routing: public path -> (plugin, plugin-local name) (config.md §4).

Owns matching a component path against the compiled routes (static beats parameter beats
catch-all, whatever the map order), rule selection (conditions on the step input, allow/deny
lists, ``component`` templates), reverse routing for listings, and the config diagnostics about
routes. The pattern syntax, its compilation into a segment trie and the conflict checks live in
``config.routes``, so the config loader validates patterns with the same code without importing
plugins.

``resolve`` runs once per step, so the work is done up front: patterns are compiled into a segment
trie, templates into parts, condition paths parsed once, and the result of a resolution whose
rules cannot depend on the step input is cached per component string.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..config.model import RouteRule, join_path
from ..config.routes import PARAM, CompiledRoute, CompiledRule, TrieNode, compile_routes, route_path
from ..errors import RoutingError
from ..jsonpath import MISSING
from ..jsonutil import json_equal

__all__ = ["Router"]

# Resolution caches are bounded so arbitrary component strings (REST, nested runs) cannot grow
# memory without limit; flows use a handful of distinct components, so this is never hit in practice.
_CACHE_LIMIT = 4096


# --------------------------------------------------------------------------------------------------
# Router


class Router:
    """Resolves public component paths to ``(plugin, local name)``; build once per config."""

    __slots__ = ("_routes", "_root", "_static", "_resolved", "_matched", "_public")

    def __init__(self, routes: list[CompiledRoute], root: TrieNode) -> None:
        self._routes = routes  # config order (reverse routing uses it)
        self._root = root
        self._static: dict[str, CompiledRoute] = {r.pattern: r for r in routes if not r.params}
        self._resolved: dict[str, tuple[str, str]] = {}  # component -> result, input-independent
        self._matched: dict[str, tuple[CompiledRoute, dict[str, str]]] = {}  # component -> match
        self._public: dict[tuple[str, str], str | None] = {}

    # -- building ---------------------------------------------------------------------------------

    @classmethod
    def build(cls, routes: dict[str, list[RouteRule]]) -> Router:
        """Compile the routes.

        Raises:
            ConfigError: a malformed pattern or template, or two conflicting patterns
                (e.g. ``/a/{x}`` and ``/a/{y}``).
        """
        compiled, root = compile_routes(routes)
        return cls(compiled, root)

    # -- matching ---------------------------------------------------------------------------------

    def _match(self, component: str) -> tuple[CompiledRoute, dict[str, str]] | None:
        hit = self._matched.get(component)
        if hit is not None:
            return hit
        if not component.startswith("/"):
            return None
        route = self._static.get(component)
        if route is not None:
            found: tuple[CompiledRoute, dict[str, str]] | None = (route, {})
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
        self, node: TrieNode, segments: list[str], i: int, params: dict[str, str], component: str
    ) -> tuple[CompiledRoute, dict[str, str]] | None:
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
        self, route: CompiledRoute, params: dict[str, str], component: str, step_input: Any
    ) -> tuple[str, str]:
        for rule in route.rules:
            if rule.conditions and not self._conditions_hold(rule, route, component, step_input):
                continue
            name = self._local_name(rule, route, params, component)
            if rule.accepts(name):
                return rule.plugin, name
        raise RoutingError(f"No matching rule found for component: {component}")

    @staticmethod
    def _conditions_hold(rule: CompiledRule, route: CompiledRoute, component: str, step_input: Any) -> bool:
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
    def _local_name(rule: CompiledRule, route: CompiledRoute, params: dict[str, str], component: str) -> str:
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

    def _reverse(self, route: CompiledRoute, rule: CompiledRule, local_name: str) -> str | None:
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
            m = PARAM.fullmatch(seg)
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
                            f"{route_path(route.pattern)}[{rule.index}].plugin",
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
