"""Routing of public component paths to plugins (config.md §4)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from stepflow_gateway.config import parse_config
from stepflow_gateway.config.model import Condition, RouteRule
from stepflow_gateway.errors import ConfigError, RoutingError
from stepflow_gateway.plugins.router import Router
from stepflow_gateway.yaml_loader import load_yaml


def rule(plugin: str, **kw: Any) -> RouteRule:
    return RouteRule(plugin=plugin, **kw)


def router_from_yaml(text: str) -> Router:
    """Routes written as a user would, through the real YAML loader and config checker."""
    data = {"plugins": {}, "routes": load_yaml(text).value}
    loaded = parse_config(data, source=None, working_dir=Path("/"))
    return Router.build(loaded.config.routes)


def no_match(component: str) -> str:
    return f"No matching rule found for component: {component}"


# -- patterns ---------------------------------------------------------------------------------------


def test_catch_all_and_single_segment() -> None:
    r = Router.build({"/builtin/{*component}": [rule("builtin")], "/python/{component}": [rule("py")]})
    assert r.resolve("/builtin/eval", None) == ("builtin", "/eval")
    assert r.resolve("/builtin/a/b/c", None) == ("builtin", "/a/b/c")
    assert r.resolve("/python/udf", None) == ("py", "/udf")
    for bad in (
        "/python/a/b",
        "/python/",
        "/python",
        "/builtin/",
        "/builtin",
        "/other/x",
        "builtin/eval",
        "",
    ):
        with pytest.raises(RoutingError) as info:
            r.resolve(bad, None)
        assert str(info.value) == no_match(bad)


def test_root_catch_all() -> None:
    r = Router.build({"/{*component}": [rule("builtin")], "/test-mcp/{*component}": [rule("mcp")]})
    assert r.resolve("/eval", None) == ("builtin", "/eval")
    assert r.resolve("/test-mcp/echo", None) == ("mcp", "/echo")
    assert r.resolve("/test-mcp", None) == ("builtin", "/test-mcp")
    with pytest.raises(RoutingError):
        r.resolve("/", None)  # a catch-all needs one or more characters


@pytest.mark.parametrize("reverse", [False, True])
def test_priority_static_param_catch_all_regardless_of_order(reverse: bool) -> None:
    routes = {
        "/x/{*component}": [rule("catch")],
        "/x/{component}": [rule("param")],
        "/x/fixed": [rule("static", component="/fixed_local")],
    }
    if reverse:
        routes = dict(reversed(list(routes.items())))
    r = Router.build(routes)
    assert r.resolve("/x/fixed", None) == ("static", "/fixed_local")
    assert r.resolve("/x/other", None) == ("param", "/other")
    assert r.resolve("/x/a/b", None) == ("catch", "/a/b")


def test_backtracking_from_static_to_param() -> None:
    r = Router.build({"/a/b/c": [rule("s", component="/c")], "/{x}/b/{component}": [rule("p")]})
    assert r.resolve("/a/b/c", None) == ("s", "/c")
    assert r.resolve("/a/b/d", None) == ("p", "/d")  # the static branch dead-ends; the param branch matches


@pytest.mark.parametrize(
    ("routes", "fragment"),
    [
        ({"/a/{x}": [], "/a/{y}": []}, "conflicts"),
        ({"/a/{*x}": [], "/a/{*y}": []}, "conflicts"),
        ({"/a/{x}/b": [], "/a/{y}/c": []}, "conflicts"),
        ({"/a/{*x}/b": []}, "must be the last segment"),
        ({"/a/x{y}": []}, "not a valid parameter"),
        ({"/a/{y": []}, "not a valid parameter"),
        ({"/a/{x}/{x}": []}, "appears twice"),
        ({"no-slash": []}, "must start with '/'"),
    ],
)
def test_bad_patterns(routes: dict[str, list[RouteRule]], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        Router.build(routes)
    assert fragment in str(info.value)
    assert "$.routes" in str(info.value)


def test_param_and_catch_all_at_same_position_coexist() -> None:
    r = Router.build({"/a/{component}": [rule("one")], "/a/{*rest}": [rule("many", component="/{rest}")]})
    assert r.resolve("/a/x", None) == ("one", "/x")
    assert r.resolve("/a/x/y", None) == ("many", "/x/y")


# -- rules ------------------------------------------------------------------------------------------


AI = """
"/ai/chat":
  - conditions:
      - { path: "$.model", value: "gpt-4" }
    plugin: remote
    component: "/chat"
  - conditions:
      - { path: "$.opts.n", value: 1 }
    plugin: one
    component: "/n"
  - plugin: builtin
    component: "/openai"
"""


def test_conditions_tried_in_order() -> None:
    r = router_from_yaml(AI)
    assert r.resolve("/ai/chat", {"model": "gpt-4"}) == ("remote", "/chat")
    assert r.resolve("/ai/chat", {"model": "x", "opts": {"n": 1}}) == ("one", "/n")
    # number kind is significant: 1.0 and true are not 1
    assert r.resolve("/ai/chat", {"model": "x", "opts": {"n": 1.0}}) == ("builtin", "/openai")
    assert r.resolve("/ai/chat", {"model": "x", "opts": {"n": True}}) == ("builtin", "/openai")
    assert r.needs_input("/ai/chat") is True


def test_condition_path_missing_is_an_error() -> None:
    r = router_from_yaml(AI)
    with pytest.raises(RoutingError) as info:
        r.resolve("/ai/chat", {"prompt": "hi"})
    message = str(info.value)
    assert "$.model" in message and "/ai/chat" in message
    with pytest.raises(RoutingError):
        r.resolve("/ai/chat", None)
    # the first rule does not match, and the second rule's path is missing
    with pytest.raises(RoutingError) as info:
        r.resolve("/ai/chat", {"model": "x"})
    assert "$.opts.n" in str(info.value)


def test_resolve_static_assumes_conditions_hold() -> None:
    r = router_from_yaml(AI)
    assert r.resolve_static("/ai/chat") == ("remote", "/chat")
    with pytest.raises(RoutingError) as info:
        r.resolve_static("/ai/other")
    assert str(info.value) == no_match("/ai/other")
    denied = Router.build({"/fs/{*component}": [rule("fs", component_deny=["/rm"])]})
    assert denied.resolve_static("/fs/ls") == ("fs", "/ls")
    with pytest.raises(RoutingError):
        denied.resolve_static("/fs/rm")


def test_conditional_results_are_not_cached() -> None:
    r = router_from_yaml(AI)
    for _ in range(3):
        assert r.resolve("/ai/chat", {"model": "gpt-4"}) == ("remote", "/chat")
        assert r.resolve("/ai/chat", {"model": "x", "opts": {"n": 2}}) == ("builtin", "/openai")


def test_condition_on_whole_input_and_structured_value() -> None:
    r = Router.build(
        {
            "/p": [
                rule("a", component="/a", conditions=[Condition(path="$", value={"k": [1, 2]})]),
                rule("b", component="/b"),
            ]
        }
    )
    assert r.resolve("/p", {"k": [1, 2]}) == ("a", "/a")
    assert r.resolve("/p", {"k": [1, 2.0]}) == ("b", "/b")


def test_allow_deny_checked_even_for_single_unconditional_rule() -> None:
    r = router_from_yaml(
        """
"/fs/{*component}":
  - plugin: fs
    componentDeny: ["/move_file"]
"/tools/{*component}":
  - plugin: fs
    componentAllow: ["/read_text_file", "/list_directory"]
  - plugin: fs_admin
    componentDeny: ["/delete_everything"]
"""
    )
    assert r.resolve("/fs/read_text_file", {}) == ("fs", "/read_text_file")
    with pytest.raises(RoutingError) as info:
        r.resolve("/fs/move_file", {})
    assert str(info.value) == no_match("/fs/move_file")
    assert r.resolve("/tools/list_directory", {}) == ("fs", "/list_directory")
    assert r.resolve("/tools/write_file", {}) == ("fs_admin", "/write_file")
    with pytest.raises(RoutingError):
        r.resolve("/tools/delete_everything", {})
    assert r.needs_input("/tools/write_file") is False


def test_templates() -> None:
    r = Router.build(
        {
            "/v/{version}/{*component}": [rule("svc", component="/{version}/{component}")],
            "/ai/chat": [rule("builtin", component="/openai")],
            "/x/{component}": [rule("x", component="/prefix_{component}")],
        }
    )
    assert r.resolve("/v/2/tools/run", None) == ("svc", "/2/tools/run")
    assert r.resolve("/ai/chat", None) == ("builtin", "/openai")
    assert r.resolve("/x/y", None) == ("x", "/prefix_y")


@pytest.mark.parametrize("template", ["/{nope}", "/{*component}", "/{component"])
def test_template_errors(template: str) -> None:
    with pytest.raises(ConfigError) as info:
        Router.build({"/a/{*component}": [rule("p", component=template)]})
    assert "component" in str(info.value)


def test_pattern_without_component_param_needs_template() -> None:
    r = Router.build({"/a/{name}": [rule("p")], "/a/lit": [rule("q")]})
    for comp in ("/a/x", "/a/lit"):
        with pytest.raises(RoutingError) as info:
            r.resolve(comp, None)
        assert "no {component} parameter" in str(info.value)


def test_upstream_head_prefix_routes_mount_the_plugin() -> None:
    # upstream HEAD: "/" or one literal segment, the plugin's components mounted under it
    r = router_from_yaml(
        """
"/mock": [{plugin: mock}]
"/test": [{plugin: worker, componentDeny: ["/secret"]}]
"/builtin/{*component}": [{plugin: builtin}]
"/": [{plugin: fallback}]
"/chat": [{plugin: builtin, component: /openai}]
"""
    )
    assert r.resolve("/mock/error", None) == ("mock", "/error")
    assert r.resolve("/mock/a/b", None) == ("mock", "/a/b")
    assert r.resolve("/test/delay", None) == ("worker", "/delay")
    assert r.resolve("/builtin/eval", None) == ("builtin", "/eval")  # the more specific pattern wins
    assert r.resolve("/other/x", None) == ("fallback", "/other/x")  # "/" catches the rest
    assert r.resolve("/chat", None) == ("builtin", "/openai")  # a template keeps the literal meaning
    for comp in ("/test/secret",):
        with pytest.raises(RoutingError) as info:
            r.resolve(comp, None)
        assert str(info.value) == no_match(comp)
    assert r.public_path("mock", "/error") == "/mock/error"
    assert r.public_path("worker", "/delay") == "/test/delay"
    assert r.public_path("fallback", "/x") == "/x"
    assert r.patterns == ["/mock", "/test", "/builtin/{*component}", "/", "/chat"]
    # "/mock" alone names no component; without "/" nothing else is caught
    r = Router.build({"/mock": [rule("mock")]})
    for comp in ("/mock", "/mock/", "/other/x"):
        with pytest.raises(RoutingError) as info:
            r.resolve(comp, None)
        assert str(info.value) == no_match(comp)
    # a prefix and the catch-all it stands for are the same route twice
    with pytest.raises(ConfigError) as cinfo:
        Router.build({"/mock": [rule("a")], "/mock/{*component}": [rule("b")]})
    assert "conflicts" in str(cinfo.value)


def test_needs_input() -> None:
    r = Router.build(
        {
            "/plain/{*component}": [rule("a")],
            "/first/{*component}": [rule("a"), rule("b", conditions=[Condition(path="$.x", value=1)])],
            "/cond/{*component}": [rule("b", conditions=[Condition(path="$.x", value=1)]), rule("a")],
            "/denied/{*component}": [
                rule("a", component_deny=["/z"]),
                rule("b", conditions=[Condition(path="$.x", value=1)]),
            ],
        }
    )
    assert r.needs_input("/plain/x") is False
    assert r.needs_input("/first/x") is False  # the unconditional rule always wins first
    assert r.needs_input("/cond/x") is True
    assert r.needs_input("/denied/y") is False
    assert r.needs_input("/denied/z") is True  # denied by rule 0, so rule 1's condition decides
    assert r.needs_input("/nowhere") is False
    assert r.resolve("/first/x", None) == ("a", "/x")  # no input needed, and None is fine


# -- reverse routing --------------------------------------------------------------------------------


def test_public_path() -> None:
    r = Router.build(
        {
            "/{*component}": [rule("builtin")],
            "/builtin/{*component}": [rule("builtin")],
            "/python/{component}": [rule("py")],
            "/ai/chat": [rule("remote", component="/chat"), rule("builtin", component="/openai")],
            "/fs/{*component}": [rule("fs", component_deny=["/move_file"])],
            "/tools/{*component}": [rule("fs")],
            "/v/{version}/{*component}": [rule("svc", component="/{version}/{component}")],
        }
    )
    assert r.public_path("builtin", "/eval") == "/eval"  # the first pattern in config order
    # /builtin/x would route to the more specific /builtin/{*component}; /builtin/x is still found there
    assert r.public_path("builtin", "/builtin/x") == "/builtin/builtin/x"
    assert r.public_path("py", "/udf") == "/python/udf"
    assert r.public_path("py", "/a/b") is None  # {component} is one segment
    assert r.public_path("remote", "/chat") == "/ai/chat"
    assert r.public_path("builtin", "/openai") == "/openai"
    assert r.public_path("fs", "/read_file") == "/fs/read_file"
    assert r.public_path("fs", "/move_file") == "/tools/move_file"  # denied on /fs, reachable on /tools
    assert r.public_path("svc", "/2/run") == "/v/2/run"
    assert r.public_path("unknown", "/x") is None
    # every public path resolves forward to the same pair
    for plugin, name in [("py", "/udf"), ("fs", "/move_file"), ("svc", "/2/run"), ("remote", "/chat")]:
        public = r.public_path(plugin, name)
        assert public is not None
        if plugin != "remote":  # /ai/chat's first rule is unconditional here
            assert r.resolve(public, {}) == (plugin, name)


def test_public_path_collapses_double_slash() -> None:
    r = Router.build({"/python/{component}/": [rule("py")]})
    assert r.public_path("py", "/udf") == "/python/udf/"
    r = Router.build({"/mcp/{*component}": [rule("m")]})
    assert r.public_path("m", "//weird") == "/mcp/weird"


# -- diagnostics ------------------------------------------------------------------------------------


def test_route_diagnostics() -> None:
    r = Router.build({"/a/{*component}": [rule("a")], "/b/{*component}": [rule("a"), rule("ghost")]})
    diags = r.route_diagnostics(["a", "unused"])
    assert diags == [
        {
            "kind": "invalidRouteReference",
            "code": 2200,
            "level": "error",
            "formatted": "Route '/b/{*component}' references unknown plugin 'ghost'",
            "data": {"route_path": "/b/{*component}", "rule_index": 1, "plugin": "ghost"},
            "path": '$.routes["/b/{*component}"][1].plugin',
        },
        {
            "kind": "unusedPlugin",
            "code": 1202,
            "level": "warning",
            "formatted": "Plugin 'unused' is not used by any route",
            "data": {"plugin": "unused"},
            "path": "$.plugins.unused",
        },
    ]


def test_route_diagnostics_empty() -> None:
    kinds = [(d["kind"], d["code"], d["path"]) for d in Router.build({}).route_diagnostics([])]
    assert kinds == [
        ("noPluginsConfigured", 1200, "$.plugins"),
        ("noRoutingRulesConfigured", 1201, "$.routes"),
    ]
    assert Router.build({"/{*component}": [rule("builtin")]}).route_diagnostics(["builtin"]) == []


def test_resolve_is_fast_when_cached() -> None:
    r = Router.build({"/builtin/{*component}": [rule("builtin")], "/python/{component}": [rule("py")]})
    r.resolve("/builtin/eval", None)
    n = 20000
    start = time.perf_counter()
    for _ in range(n):
        r.resolve("/builtin/eval", None)
    per_call = (time.perf_counter() - start) / n
    assert per_call < 20e-6, per_call  # generous bound; ~0.2 µs on an idle machine
