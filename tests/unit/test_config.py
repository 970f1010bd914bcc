"""Loading and checking stepflow-config.yml (config.md), with real files in tmp dirs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from stepflow_gateway.config import (
    BACKOFF_ADAPTER,
    STANDARD_NAMES,
    ConstantBackoff,
    ExponentialBackoff,
    FibonacciBackoff,
    default_config,
    find_config,
    find_test_config,
    load_config,
    parse_config,
    substitute_plugin_options,
)
from stepflow_gateway.errors import ConfigError
from stepflow_gateway.plugins.router import Router
from stepflow_gateway.yaml_loader import ComplexKeyMap, load_yaml

UPSTREAM = Path("/work/shared/conformance/upstream")
UPSTREAM_CONFIGS = sorted(UPSTREAM.rglob("stepflow-config.yml"))


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str, name: str = "stepflow-config.yml"):
    return load_config(write(tmp_path, name, text), default_working_dir=tmp_path)


def config_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    return str(info.value)


# -- upstream configs -------------------------------------------------------------------------------


def test_upstream_configs_found() -> None:
    assert len(UPSTREAM_CONFIGS) >= 12


@pytest.mark.parametrize("source", UPSTREAM_CONFIGS, ids=lambda p: str(p.relative_to(UPSTREAM)))
def test_upstream_config_loads(source: Path, tmp_path: Path) -> None:
    copy = tmp_path / "stepflow-config.yml"
    shutil.copyfile(source, copy)
    loaded = load_config(copy, default_working_dir=Path("/nonexistent"))
    cfg = loaded.config
    assert loaded.path == copy
    assert cfg.source == copy
    assert cfg.working_directory == tmp_path  # the config file's directory
    assert cfg.plugins, "every upstream config has plugins"
    assert cfg.routes, "every upstream config has routes"
    assert [w for w in loaded.warnings if w.kind != "duplicateKey"] == []
    router = Router.build(cfg.routes)
    diags = router.route_diagnostics(cfg.plugins)
    assert [d for d in diags if d["level"] == "error"] == []


def test_upstream_details(tmp_path: Path) -> None:
    mock = load_config(UPSTREAM / "tests/mock/stepflow-config.yml", default_working_dir=tmp_path).config
    entry = mock.plugins["mock"]
    assert entry.type == "mock"
    behaviors = entry.options["components"]["/one_output"]["behaviors"]
    assert isinstance(behaviors, ComplexKeyMap)  # mapping keys that are mappings survive
    assert behaviors[0][0] == {"input": "a"}
    assert Router.build(mock.routes).resolve("/mock/one_output", {"input": "a"}) == ("mock", "/one_output")

    sql = load_config(UPSTREAM / "tests/sql-state/stepflow-config.yml", default_working_dir=tmp_path).config
    assert sql.state_store_explicit
    assert (sql.state_store.type, sql.state_store.database_url) == ("sqlite", "sqlite::memory:")
    assert (sql.state_store.auto_migrate, sql.state_store.max_connections) == (True, 5)

    http = load_config(UPSTREAM / "tests/http/stepflow-config.yml", default_working_dir=tmp_path).config
    assert list(http.plugins) == ["builtin", "test_http", "test_stdio"]  # order = start order
    assert http.plugins["test_http"].options == {
        "transport": "http",
        "url": "http://127.0.0.1:${TEST_PORT:-8080}",
    }
    assert http.state_store.type == "inMemory"

    py = load_config(UPSTREAM / "tests/python/stepflow-config.yml", default_working_dir=tmp_path).config
    assert py.plugins["python"].options["max_retries"] == 3  # plugin keys are kept for the plugin model
    assert not py.state_store_explicit

    empty = load_config(UPSTREAM / "tests/empty/stepflow-config.yml", default_working_dir=tmp_path).config
    assert Router.build(empty.routes).resolve("/eval", {}) == ("builtin", "/eval")


# -- config.md §8 examples --------------------------------------------------------------------------

EXAMPLE_8_1 = """
plugins:
  builtin:
    type: builtin
  python:
    type: stepflow
    transport: stdio
    command: uv
    args: ["--project", "../../sdks/python", "run", "stepflow_py"]
routes:
  "/python/{*component}":
    - plugin: python
  "/builtin/{*component}":
    - plugin: builtin
stateStore:
  type: inMemory
"""

EXAMPLE_8_2 = r"""
plugins:
  builtin:
    type: builtin

  # StepFlow component servers
  udf:                                    # stepflow-py 0.7.0 over stdio (G0 callbacks)
    type: stepflow
    transport: stdio
    command: "${PEERS}/sf07/bin/stepflow_py"
    args: []
    env: { STEPFLOW_LOG_LEVEL: WARNING }
  workers:                                # stepflow-py 0.9.2 self-launching HTTP worker (G2 callbacks)
    type: stepflow
    command: "${PEERS}/sf092/bin/python"
    args: ["components/http_worker.py"]        # prints {"port": N}
    healthCheck: { path: /health, timeoutMs: 20000 }
  remote:                                 # an HTTP component server started elsewhere
    type: stepflow
    transport: http
    url: "http://127.0.0.1:${REMOTE_PORT:-8080}"

  # MCP servers (every tool becomes a component)
  time:
    type: mcp
    command: "${PEERS}/mcp-time/bin/mcp-server-time"
    args: ["--local-timezone", "UTC"]
  fs:
    type: mcp
    command: node
    args: ["${PEERS}/npm/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js", "${DATA_DIR}"]
  memory:
    type: mcp
    command: node
    args: ["${PEERS}/npm/node_modules/@modelcontextprotocol/server-memory/dist/index.js"]
    env: { MEMORY_FILE_PATH: "${DATA_DIR}/memory.jsonl" }
    timeoutMs: 10000
  everything:
    type: mcp
    transport: http
    url: "http://127.0.0.1:${EVERYTHING_PORT:-3001}/mcp"
    mode: legacy

  mock:
    type: mock
    components:
      /classify:
        behaviors:
          { text: "hello" }: { outcome: success, result: { label: greeting } }

routes:
  "/builtin/{*component}": [ { plugin: builtin } ]
  "/python/{*component}":  [ { plugin: udf } ]
  "/jobs/{*component}":    [ { plugin: workers } ]
  "/remote/{*component}":  [ { plugin: remote } ]
  "/time/{*component}":    [ { plugin: time } ]
  "/fs/{*component}":
    - plugin: fs
      componentDeny: ["/move_file"]
  "/memory/{*component}":  [ { plugin: memory } ]
  "/everything/{*component}": [ { plugin: everything } ]
  "/mock/{component}":     [ { plugin: mock } ]
  "/ai/chat":
    - conditions: [ { path: "$.provider", value: "remote" } ]
      plugin: remote
      component: /chat
    - plugin: builtin
      component: /openai

stateStore:
  type: sqlite
  databaseUrl: "sqlite:.stepflow-gateway/state.db?mode=rwc"

retry:
  transportMaxRetries: 2
  backoff: { type: exponential, minDelayMs: 200, maxDelayMs: 5000 }
"""

EXAMPLE_8_3 = """
plugins:
  builtin:
    type: builtin
  py:
    type: stepflow
    command: <absolute path to .peers>/sf092/bin/python
    args: ["<absolute path to>/http_worker.py"]
    env: { STEPFLOW_LOG_LEVEL: WARNING }
routes:
  "/py/{*component}":
    - plugin: py
  "/builtin/{*component}":
    - plugin: builtin
stateStore:
  type: inMemory
"""

EXAMPLE_8_4_FLOW = """
schema: https://stepflow.org/schemas/v1/flow.json
steps: []
test:
  servers:
    comp:
      command: python
      args: ["server.py", "--http", "--port", "{port}"]
      healthCheck: { path: /health }
  config:
    plugins:
      builtin: { type: builtin }
      comp: { type: stepflow, transport: http, url: "{comp.url}" }
    routes:
      "/builtin/{component}": [ { plugin: builtin } ]
      "/test/{component}":    [ { plugin: comp } ]
"""


def test_example_8_1(tmp_path: Path) -> None:
    loaded = load_text(tmp_path, EXAMPLE_8_1)
    assert loaded.warnings == []
    cfg = loaded.config
    assert list(cfg.plugins) == ["builtin", "python"]
    assert cfg.plugins["python"].options["args"] == ["--project", "../../sdks/python", "run", "stepflow_py"]
    assert Router.build(cfg.routes).resolve("/python/udf", {}) == ("python", "/udf")


def test_example_8_2_with_env(tmp_path: Path) -> None:
    loaded = load_text(tmp_path, EXAMPLE_8_2)
    assert loaded.warnings == []
    cfg = loaded.config
    assert cfg.state_store.type == "sqlite"
    assert cfg.retry.transport_max_retries == 2
    assert isinstance(cfg.retry.backoff, ExponentialBackoff)
    assert [cfg.retry.backoff.delay_ms(n) for n in (1, 2, 3, 5, 6, 9)] == [200, 400, 800, 3200, 5000, 5000]
    environ = {"PEERS": "/opt/peers", "DATA_DIR": "/data"}
    resolved = {
        name: substitute_plugin_options(entry.options, environ, plugin=name)
        for name, entry in cfg.plugins.items()
    }
    assert resolved["udf"]["command"] == "/opt/peers/sf07/bin/stepflow_py"
    assert resolved["remote"]["url"] == "http://127.0.0.1:8080"
    assert resolved["fs"]["args"] == [
        "/opt/peers/npm/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js",
        "/data",
    ]
    assert resolved["memory"]["env"] == {"MEMORY_FILE_PATH": "/data/memory.jsonl"}
    assert resolved["everything"]["url"] == "http://127.0.0.1:3001/mcp"
    assert resolved["mock"] == cfg.plugins["mock"].options  # nothing to substitute
    # without PEERS the plugin start fails with a clear error
    with pytest.raises(ConfigError) as info:
        substitute_plugin_options(cfg.plugins["udf"].options, {"DATA_DIR": "/data"}, plugin="udf")
    assert "'PEERS' is not set" in str(info.value) and "plugins.udf.command" in str(info.value)

    router = Router.build(cfg.routes)
    assert router.route_diagnostics(cfg.plugins) == []
    assert router.resolve("/ai/chat", {"provider": "remote"}) == ("remote", "/chat")
    assert router.resolve("/ai/chat", {"provider": "openai"}) == ("builtin", "/openai")
    assert router.resolve("/fs/read_file", {}) == ("fs", "/read_file")
    with pytest.raises(Exception, match="No matching rule found for component: /fs/move_file"):
        router.resolve("/fs/move_file", {})
    assert router.public_path("time", "/get_current_time") == "/time/get_current_time"
    assert router.public_path("fs", "/move_file") is None


def test_example_8_3(tmp_path: Path) -> None:
    loaded = load_text(tmp_path, EXAMPLE_8_3)
    assert loaded.warnings == []
    assert "transport" not in loaded.config.plugins["py"].options


def test_example_8_4_inline_test_config(tmp_path: Path) -> None:
    flow = load_yaml(EXAMPLE_8_4_FLOW).value
    inline = flow["test"]["config"]
    inline["plugins"]["comp"]["url"] = inline["plugins"]["comp"]["url"].replace(
        "{comp.url}", "http://127.0.0.1:18000"
    )
    flow_dir = tmp_path / "flows"
    loaded = parse_config(inline, source=None, working_dir=flow_dir)
    assert loaded.path is None
    assert loaded.config.working_directory == flow_dir  # the flow's directory
    assert loaded.config.plugins["comp"].options["url"] == "http://127.0.0.1:18000"
    assert Router.build(loaded.config.routes).resolve("/test/echo", {}) == ("comp", "/echo")
    with pytest.raises(ConfigError) as info:
        parse_config({"plugins": {"x": {}}, "routes": {}}, source=None, working_dir=flow_dir)
    assert str(info.value) == "<inline test.config>: $.plugins.x.type: " + (
        "missing plugin type (expected e.g. 'builtin', 'stepflow', 'mcp' or 'mock')"
    )
    # errors and warnings can name where the mapping sits in the flow file
    flow_file = tmp_path / "flow.yaml"
    with pytest.raises(ConfigError) as info:
        parse_config(
            {"plugins": {}, "routes": {"/a/{x}": [], "/a/{y}": []}},
            source=flow_file,
            working_dir=flow_dir,
            json_root="$.test.config",
        )
    assert str(info.value).startswith(f'{flow_file}: $.test.config.routes["/a/{{y}}"]: conflicts')
    loaded = parse_config(
        {"plugins": {}, "extra": 1}, source=flow_file, working_dir=flow_dir, json_root="$.test.config"
    )
    assert [(w.kind, w.path) for w in loaded.warnings] == [
        ("unknownField", "$.test.config.extra"),
        ("missingRoutes", "$.test.config.routes"),
    ]


def test_json_config(tmp_path: Path) -> None:
    loaded = load_text(
        tmp_path,
        '{"plugins": {"builtin": {"type": "builtin"}}, "routes": {"/{*component}": [{"plugin": "builtin"}]}}',
        name="stepflow-config.yaml",
    )
    assert Router.build(loaded.config.routes).resolve("/eval", None) == ("builtin", "/eval")


# -- defaults and working directory -----------------------------------------------------------------


def test_default_config(tmp_path: Path) -> None:
    loaded = load_config(None, default_working_dir=tmp_path)
    assert loaded.path is None and loaded.warnings == []
    cfg = loaded.config
    assert cfg == default_config(tmp_path)
    assert cfg.working_directory == tmp_path
    assert {n: e.type for n, e in cfg.plugins.items()} == {"builtin": "builtin"}
    assert Router.build(cfg.routes).resolve("/builtin/eval", None) == ("builtin", "/eval")
    assert cfg.state_store.type == "inMemory"
    assert isinstance(cfg.retry.backoff, FibonacciBackoff) and cfg.retry.transport_max_retries == 3


def test_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf_dir = tmp_path / "conf"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    base = "plugins: {}\nroutes: {}\n"
    assert load_text(conf_dir, base).config.working_directory == conf_dir
    # a relative value is resolved against the process's current directory, not the file's
    rel = load_text(conf_dir, "workingDirectory: sub/dir\n" + base).config.working_directory
    assert rel == cwd / "sub" / "dir"
    absolute = load_text(conf_dir, f"workingDirectory: {tmp_path / 'abs'}\n" + base).config.working_directory
    assert absolute == tmp_path / "abs"
    # relative path given on the command line: the working directory is still absolute
    write(cwd, "rel/stepflow-config.yml", base)
    loaded = load_config(Path("rel/stepflow-config.yml"), default_working_dir=tmp_path)
    assert loaded.config.working_directory == cwd / "rel"


def test_effective_state_store(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, "plugins: {}\nroutes: {}\n").config
    assert cfg.effective_state_store(serve=False).type == "inMemory"
    serve = cfg.effective_state_store(serve=True)
    assert serve.type == "sqlite"
    assert serve.database_url == f"sqlite:{tmp_path}/.stepflow-gateway/state.db?mode=rwc"
    explicit = load_text(tmp_path, "plugins: {}\nroutes: {}\nstateStore: {type: inMemory}\n").config
    assert explicit.effective_state_store(serve=True).type == "inMemory"


# -- warnings ---------------------------------------------------------------------------------------


def test_snake_case_aliases_warn(tmp_path: Path) -> None:
    loaded = load_text(
        tmp_path,
        """
working_directory: /tmp/wd
plugins: {builtin: {type: builtin}}
routes: {"/{*component}": [{plugin: builtin}]}
state_store:
  type: sqlite
  database_url: "sqlite:x.db?mode=rwc"
  auto_migrate: false
  max_connections: 3
""",
    )
    cfg = loaded.config
    assert cfg.working_directory == Path("/tmp/wd")
    assert cfg.state_store.model_dump() == {
        "type": "sqlite",
        "database_url": "sqlite:x.db?mode=rwc",
        "auto_migrate": False,
        "max_connections": 3,
    }
    assert [(w.kind, w.path) for w in loaded.warnings] == [
        ("snakeCaseAlias", "$.working_directory"),
        ("snakeCaseAlias", "$.state_store"),
        ("snakeCaseAlias", "$.stateStore.database_url"),
        ("snakeCaseAlias", "$.stateStore.auto_migrate"),
        ("snakeCaseAlias", "$.stateStore.max_connections"),
    ]
    assert "write 'stateStore'" in loaded.warnings[1].message


def test_storage_config_is_upstreams_name_for_state_store(tmp_path: Path) -> None:
    url = "postgresql://gw@db.example:5432/stepflow"
    simple = load_text(
        tmp_path,
        f"plugins: {{}}\nroutes: {{}}\nstorageConfig: {{type: postgres, databaseUrl: '{url}', "
        "autoMigrate: false, maxConnections: 4}\n",
    )
    assert simple.warnings == []
    assert simple.config.state_store_explicit
    assert simple.config.state_store.model_dump() == {
        "type": "postgres",
        "database_url": url,
        "auto_migrate": False,
        "max_connections": 4,
    }
    # The expanded form is accepted when metadata, blobs and journal are one backend.
    expanded = load_text(
        tmp_path,
        f"""
plugins: {{}}
routes: {{}}
storageConfig:
  metadata: {{type: postgres, databaseUrl: "{url}"}}
  blobs: {{type: postgres, databaseUrl: "{url}"}}
  journal: null
""",
    )
    assert (expanded.config.state_store.type, expanded.config.state_store.database_url) == ("postgres", url)
    assert expanded.config.effective_state_store(serve=True).type == "postgres"
    only_metadata = load_text(
        tmp_path, "plugins: {}\nroutes: {}\nstorageConfig: {metadata: {type: inMemory}}\n"
    )
    assert only_metadata.config.state_store.type == "inMemory" and only_metadata.config.state_store_explicit


def test_alias_and_camel_together_is_an_error(tmp_path: Path) -> None:
    msg = config_error(
        tmp_path, "plugins: {}\nroutes: {}\nstateStore: {type: inMemory}\nstate_store: {type: sqlite}\n"
    )
    assert "$.state_store" in msg and "both" in msg


def test_unknown_keys_warn(tmp_path: Path) -> None:
    loaded = load_text(
        tmp_path,
        """
plugins: {builtin: {type: builtin, whatever: 1}}
routes:
  "/{*component}":
    - plugin: builtin
      component_allow: ["/eval"]
      conditions: [{path: "$.a", value: 1, note: x}]
stateStorage: {type: sqlite}
retry: {backoff: {type: constant, delayMs: 5, minDelayMs: 1}, extra: true}
""",
    )
    got = [(w.kind, w.path) for w in loaded.warnings]
    assert got == [
        ("unknownField", "$.stateStorage"),
        ("unknownField", '$.routes["/{*component}"][0].component_allow'),
        ("unknownField", '$.routes["/{*component}"][0].conditions[0].note'),
        ("unknownField", "$.retry.extra"),
        ("unknownField", "$.retry.backoff.minDelayMs"),
    ]
    assert "did you mean 'componentAllow'" in loaded.warnings[1].message
    # plugin keys are the plugin model's business, not warned about here
    assert loaded.config.plugins["builtin"].options == {"whatever": 1}
    assert loaded.config.retry.backoff == ConstantBackoff(delayMs=5)


def test_missing_routes_warns(tmp_path: Path) -> None:
    loaded = load_text(tmp_path, "plugins: {builtin: {type: builtin}}\n")
    assert loaded.config.routes == {}
    assert [(w.kind, w.path) for w in loaded.warnings] == [("missingRoutes", "$.routes")]
    diags = Router.build(loaded.config.routes).route_diagnostics(loaded.config.plugins)
    assert [d["kind"] for d in diags] == ["noRoutingRulesConfigured", "unusedPlugin"]


def test_duplicate_keys(tmp_path: Path) -> None:
    # a duplicated known field is an error (as upstream)
    msg = config_error(tmp_path, "plugins: {}\nroutes: {}\nplugins: {}\n")
    assert "stepflow-config.yml: $.plugins: duplicate key 'plugins' (again at line 3)" in msg
    msg = config_error(tmp_path, "plugins:\n  b: {type: builtin, type: mock}\nroutes: {}\n")
    assert "$.plugins.b.type: duplicate key 'type'" in msg
    msg = config_error(tmp_path, "plugins: {}\nroutes:\n  /a/{*component}: [{plugin: a, plugin: b}]\n")
    assert "duplicate key 'plugin'" in msg
    # inside data (a condition value, mock behaviours) the last one wins, with a warning
    loaded = load_text(
        tmp_path,
        'plugins: {}\nroutes:\n  "/a": [{plugin: a, component: /a,\n'
        "    conditions: [{path: $.x, value: {k: 1, k: 2}}]}]\n",
    )
    assert loaded.config.routes["/a"][0].conditions[0].value == {"k": 2}
    assert [w.kind for w in loaded.warnings] == ["duplicateKey"]


# -- errors -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "$: the config is empty"),
        ("- a\n- b\n", "$: expected a mapping with 'plugins' and 'routes', got a list"),
        ("routes: {}\n", "$: missing required key 'plugins'"),
        (
            "plugins: [a]\nroutes: {}\n",
            "$.plugins: expected a mapping of plugin name to {type: ...}, got a list",
        ),
        ("plugins: {py: {command: x}}\nroutes: {}\n", "$.plugins.py.type: missing plugin type"),
        (
            "plugins: {py: {type: 3}}\nroutes: {}\n",
            "$.plugins.py.type: expected a plugin type name, got a number (3)",
        ),
        ("plugins: {py: builtin}\nroutes: {}\n", "$.plugins.py: expected a mapping with a 'type' key"),
        ("plugins: {}\nroutes: {/a: {plugin: x}}\n", '$.routes["/a"]: expected a list of rules'),
        ("plugins: {}\nroutes: {a: [{plugin: x}]}\n", "$.routes.a: route pattern 'a' must start with '/'"),
        ("plugins: {}\nroutes: {/a: [{component: /x}]}\n", '$.routes["/a"][0].plugin: missing plugin name'),
        (
            "plugins: {}\nroutes: {/a: [{plugin: [x]}]}\n",
            '$.routes["/a"][0].plugin: Input should be a valid string',
        ),
        ("plugins: {}\nroutes: {/a: [{plugin: x, conditions: {path: $}}]}\n", "conditions: expected a list"),
        (
            "plugins: {}\nroutes: {/a: [{plugin: x, conditions: [{path: $.a}]}]}\n",
            '$.routes["/a"][0].conditions[0].value: missing the value',
        ),
        (
            "plugins: {}\nroutes: {/a: [{plugin: x, conditions: [{path: '$abc', value: 1}]}]}\n",
            '$.routes["/a"][0].conditions[0].path: invalid path',
        ),
        (
            "plugins: {}\nroutes: {/a: [{plugin: x, componentAllow: /x}]}\n",
            '$.routes["/a"][0].componentAllow: expected a list of plugin-local names',
        ),
        ("plugins: {}\nroutes: {'/a/{x}': [], '/a/{y}': []}\n", "conflicts"),
        (
            "plugins: {}\nroutes: {'/a/{*c}': [{plugin: p, component: '/{nope}'}]}\n",
            '$.routes["/a/{*c}"][0].component: template',
        ),
        (
            "plugins: {}\nroutes: {}\nstateStore: {type: postgres}\n",
            "$.stateStore.databaseUrl: missing PostgreSQL database URL",
        ),
        (
            "plugins: {}\nroutes: {}\nstateStore: {type: postgres, databaseUrl: 'sqlite:x.db'}\n",
            "$.stateStore.databaseUrl: expected a PostgreSQL URL",
        ),
        (
            "plugins: {}\nroutes: {}\nstorageConfig: {type: redis}\n",
            "$.storageConfig.type: unknown state store type",
        ),
        (
            "plugins: {}\nroutes: {}\nstateStore: {type: inMemory}\nstorageConfig: {type: inMemory}\n",
            "$.storageConfig: given both as 'stateStore' and as 'storageConfig'",
        ),
        (
            "plugins: {}\nroutes: {}\nstorageConfig: {metadata: {type: sqlite, databaseUrl: 'sqlite:a.db'},"
            " journal: {type: inMemory}}\n",
            "$.storageConfig.journal: metadata, blobs and journal in different stores "
            "(metadata: sqlite 'sqlite:a.db', journal: inMemory) are not supported",
        ),
        (
            "plugins: {}\nroutes: {}\nstorageConfig: {blobs: {type: inMemory}}\n",
            "$.storageConfig.metadata: missing the metadata store",
        ),
        (
            "plugins: {}\nroutes: {}\nstateStore: {type: redis}\n",
            "$.stateStore.type: unknown state store type",
        ),
        ("plugins: {}\nroutes: {}\nstateStore: {}\n", "$.stateStore.type: missing state store type"),
        ("plugins: {}\nroutes: {}\nstateStore: {type: sqlite}\n", "$.stateStore.databaseUrl: missing SQLite"),
        (
            "plugins: {}\nroutes: {}\nstateStore: {type: sqlite, databaseUrl: x, maxConnections: many}\n",
            "$.stateStore.maxConnections: Input should be a valid integer",
        ),
        ("plugins: {}\nroutes: {}\nretry: {transportMaxRetries: -1}\n", "$.retry.transportMaxRetries"),
        (
            "plugins: {}\nroutes: {}\nretry: {backoff: {minDelayMs: 1}}\n",
            "$.retry.backoff.type: expected backoff type",
        ),
        ("plugins: {}\nroutes: {}\nretry: {backoff: {type: linear}}\n", "got 'linear'"),
        (
            "plugins: {}\nroutes: {}\nretry: {backoff: {type: fibonacci, minDelayMs: soon}}\n",
            "$.retry.backoff.minDelayMs: Input should be a valid number",
        ),
        ("workingDirectory: 5\nplugins: {}\nroutes: {}\n", "$.workingDirectory: expected a directory path"),
    ],
)
def test_errors_name_file_path_and_expectation(tmp_path: Path, text: str, expected: str) -> None:
    msg = config_error(tmp_path, text)
    assert msg.startswith(str(tmp_path / "stepflow-config.yml") + ": "), msg
    assert expected in msg, msg
    assert "Traceback" not in msg


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    msg = config_error(tmp_path, "plugins:\n  builtin: {type: builtin\nroutes: {}\n")
    assert msg.startswith(str(tmp_path / "stepflow-config.yml"))
    assert "line " in msg


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yml", default_working_dir=tmp_path)
    bad = tmp_path / "stepflow-config.yml"
    bad.write_bytes(b"plugins: {\xff}\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(bad, default_working_dir=tmp_path)


# -- discovery --------------------------------------------------------------------------------------


def test_find_config(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    assert find_config(None, [a, b]) is None
    found = write(b, "stepflow_config.yaml", "plugins: {}\n")
    assert find_config(None, [a, b]) == found
    first = write(a, "stepflow-config.yml", "plugins: {}\n")
    assert find_config(None, [a, b]) == first
    explicit = write(tmp_path, "plugins.yaml", "plugins: {}\n")
    assert find_config(explicit, [a, b]) == explicit
    with pytest.raises(ConfigError, match="config file not found"):
        find_config(tmp_path / "missing.yaml", [a])
    write(a, "stepflow-config.yaml", "plugins: {}\n")
    with pytest.raises(ConfigError) as info:
        find_config(None, [a, b])
    assert "stepflow-config.yml" in str(info.value) and "stepflow-config.yaml" in str(info.value)
    assert set(STANDARD_NAMES) == {
        "stepflow-config.yml",
        "stepflow-config.yaml",
        "stepflow_config.yml",
        "stepflow_config.yaml",
    }


def test_find_test_config(tmp_path: Path) -> None:
    flow_dir, cwd = tmp_path / "flows", tmp_path / "cwd"
    flow_dir.mkdir()
    cwd.mkdir()
    assert find_test_config(flow_dir, cwd) is None
    in_cwd = write(cwd, "stepflow-config.yml", "plugins: {}\n")
    assert find_test_config(flow_dir, cwd) == in_cwd
    standard = write(flow_dir, "stepflow_config.yml", "plugins: {}\n")
    assert find_test_config(flow_dir, cwd) == standard
    test_cfg = write(flow_dir, "stepflow-config.test.yaml", "plugins: {}\n")
    assert find_test_config(flow_dir, cwd) == test_cfg
    write(flow_dir, "stepflow_config.test.yml", "plugins: {}\n")
    with pytest.raises(ConfigError, match="more than one config file"):
        find_test_config(flow_dir, cwd)


# -- backoff ----------------------------------------------------------------------------------------


def test_backoff_delays() -> None:
    fib = FibonacciBackoff()
    assert [fib.delay_ms(n) for n in range(1, 9)] == [1000, 1000, 2000, 3000, 5000, 8000, 10000, 10000]
    assert fib.delay_ms(10_000) == 10000
    exp = ExponentialBackoff(minDelayMs=100, maxDelayMs=1000, factor=3)
    assert [exp.delay_ms(n) for n in (1, 2, 3, 4)] == [100, 300, 900, 1000]
    assert exp.delay_ms(100_000) == 1000  # no overflow
    assert ConstantBackoff(delayMs=250).delay_ms(7) == 250
    for n in range(1, 6):
        for _ in range(50):
            delay = fib.jittered_delay_s(n)
            assert 0.9 * fib.delay_ms(n) / 1000 <= delay <= 1.1 * fib.delay_ms(n) / 1000
    parsed = BACKOFF_ADAPTER.validate_python({"type": "exponential", "minDelayMs": 5, "maxDelayMs": 50})
    assert isinstance(parsed, ExponentialBackoff) and parsed.factor == 2.0


def test_env_is_not_substituted_at_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SURELY_UNSET_VAR", raising=False)
    loaded = load_text(tmp_path, "plugins: {p: {type: mcp, command: '${SURELY_UNSET_VAR}'}}\nroutes: {}\n")
    assert loaded.config.plugins["p"].options["command"] == "${SURELY_UNSET_VAR}"
    assert "SURELY_UNSET_VAR" not in os.environ


def test_recovery_section(tmp_path: Path) -> None:
    base = "plugins:\n  builtin: {type: builtin}\nroutes:\n  /builtin/{*component}: [{plugin: builtin}]\n"
    default = load_text(tmp_path, base).config.recovery
    assert (default.enabled, default.max_startup_recovery) == (True, 100)
    text = base + "recovery: {enabled: false, maxStartupRecovery: 5, checkIntervalSecs: 3, leaseTtlSecs: 6}\n"
    rec = load_text(tmp_path, text).config.recovery
    assert (rec.enabled, rec.max_startup_recovery, rec.check_interval_secs, rec.lease_ttl_secs) == (
        False,
        5,
        3,
        6,
    )
    message = config_error(tmp_path, base + "recovery: {maxStartupRecovery: -1}\n")
    assert "$.recovery.maxStartupRecovery" in message and "expected a number >= 0, got" in message
    message = config_error(tmp_path, base + "recovery: {enabled: 1}\n")
    assert "$.recovery.enabled" in message and "expected true or false" in message
