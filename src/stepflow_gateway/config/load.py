"""Finding, reading and checking ``stepflow-config.yml`` (config.md §1-§6, flow-format.md §14.2).

Owns config discovery (the standard names, two in one directory is an error), YAML reading,
``workingDirectory`` resolution, key normalisation (camelCase keys; the documented snake_case
aliases with a warning; unknown keys with an ``unknownField`` warning; duplicated known keys as an
error) and turning every problem into a ``ConfigError`` that names the file, the JSON path and
what was expected. Environment substitution is *not* done here: it happens when a plugin starts
(``config.envsubst``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ConfigError
from ..jsonpath import PathSyntaxError, parse_path
from ..yaml_loader import DuplicateKey, YamlError, load_yaml
from .model import (
    BACKOFF_TYPES,
    Condition,
    ConfigWarning,
    GatewayConfig,
    PluginEntry,
    RecoveryConfig,
    RetryConfig,
    RouteRule,
    StateStoreConfig,
    join_path,
    validate,
)
from .routes import compile_routes

__all__ = [
    "STANDARD_NAMES",
    "TEST_NAMES",
    "LoadedConfig",
    "default_config",
    "find_config",
    "find_test_config",
    "load_config",
    "parse_config",
]

STANDARD_NAMES: tuple[str, ...] = (
    "stepflow-config.yml",
    "stepflow-config.yaml",
    "stepflow_config.yml",
    "stepflow_config.yaml",
)
"""Config file names searched in a directory (config.md §1)."""

TEST_NAMES: tuple[str, ...] = (
    "stepflow-config.test.yml",
    "stepflow-config.test.yaml",
    "stepflow_config.test.yml",
    "stepflow_config.test.yaml",
)
"""Test-only config names searched in a flow's directory before the standard ones (§14.2)."""

_M = TypeVar("_M")

INLINE_SOURCE = "<inline test.config>"

# Top-level keys and the snake_case spellings documented upstream (config.md §1).
_TOP_KEYS = frozenset(
    {"workingDirectory", "plugins", "routes", "stateStore", "storageConfig", "retry", "recovery"}
)
_TOP_ALIASES = {"working_directory": "workingDirectory", "state_store": "stateStore"}
_STATE_KEYS = frozenset({"type", "databaseUrl", "autoMigrate", "maxConnections"})
_EXPANDED_KEYS = frozenset({"metadata", "blobs", "journal"})
"""Upstream's expanded ``storageConfig`` form: one store config per part (all must be the same)."""
_STATE_TYPES = ("inMemory", "sqlite", "postgres")
_STATE_ALIASES = {
    "database_url": "databaseUrl",
    "auto_migrate": "autoMigrate",
    "max_connections": "maxConnections",
}
_RETRY_KEYS = frozenset({"transportMaxRetries", "backoff"})
_RECOVERY_KEYS: dict[str, tuple[str, type | tuple[type, ...]]] = {
    "enabled": ("enabled", bool),
    "maxStartupRecovery": ("max_startup_recovery", int),
    "checkIntervalSecs": ("check_interval_secs", (int, float)),
    "leaseTtlSecs": ("lease_ttl_secs", (int, float)),
    "checkpointInterval": ("checkpoint_interval", int),
}
_RULE_KEYS = frozenset({"plugin", "conditions", "componentAllow", "componentDeny", "component"})
_CONDITION_KEYS = frozenset({"path", "value"})
_BACKOFF_KEYS = {name: frozenset(cls._aliases) for name, cls in BACKOFF_TYPES.items()}


@dataclass(slots=True)
class LoadedConfig:
    """A config together with its load warnings and the file it came from (``None``: default or
    inline config)."""

    config: GatewayConfig
    warnings: list[ConfigWarning] = field(default_factory=list)
    path: Path | None = None


# --------------------------------------------------------------------------------------------------
# Discovery


def _find_in_dir(directory: Path, names: Iterable[str]) -> Path | None:
    found = [directory / n for n in names if (directory / n).is_file()]
    if len(found) > 1:
        listed = ", ".join(p.name for p in found)
        raise ConfigError(f"more than one config file in {directory}: {listed}; keep only one")
    return found[0] if found else None


def find_config(
    explicit: Path | None, search_dirs: list[Path], *, names: Iterable[str] = STANDARD_NAMES
) -> Path | None:
    """The config to use: ``explicit`` if given, else the first search dir holding a standard name.

    Returns ``None`` when nothing is found (the caller then uses ``default_config``).

    Raises:
        ConfigError: ``explicit`` does not exist, or a directory holds two standard names.
    """
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError("config file not found", file=str(explicit))
        return explicit
    names = tuple(names)
    for directory in search_dirs:
        found = _find_in_dir(directory, names)
        if found is not None:
            return found
    return None


def find_test_config(flow_dir: Path, cwd: Path) -> Path | None:
    """Steps 3-5 of the test runner's config search (flow-format.md §14.2): a test config in the
    flow's directory, then the standard names there, then in ``cwd``. ``--config`` and an inline
    ``test.config`` come first and are the caller's business."""
    found = _find_in_dir(flow_dir, TEST_NAMES)
    if found is not None:
        return found
    return find_config(None, [flow_dir, cwd])


# --------------------------------------------------------------------------------------------------
# Loading


def default_config(working_dir: Path) -> GatewayConfig:
    """The config used when no file is found: the builtin plugin, routed at ``/builtin/...``."""
    return GatewayConfig(
        working_directory=working_dir,
        plugins={"builtin": PluginEntry(type="builtin")},
        routes={"/builtin/{*component}": [RouteRule(plugin="builtin")]},
    )


def load_config(path: Path | None, *, default_working_dir: Path) -> LoadedConfig:
    """Read and check a config file; ``None`` gives the default config in ``default_working_dir``.

    Raises:
        ConfigError: unreadable file, malformed YAML, or an invalid config (file + JSON path).
    """
    if path is None:
        return LoadedConfig(default_config(default_working_dir), [], None)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", file=file) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file is not UTF-8 text ({exc.reason} at byte {exc.start})", file=file
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror or exc}", file=file) from None
    try:
        doc = load_yaml(text, source=file)
    except YamlError as exc:
        # The YAML error already says where (line/column); keep it and make it a config error.
        raise ConfigError(exc.message, file=exc.file or file) from None
    working_dir = Path(os.path.abspath(path)).parent
    return _Builder(file, doc.duplicate_keys).build(doc.value, source=path, working_dir=working_dir)


def parse_config(data: Any, *, source: Path | None, working_dir: Path, json_root: str = "$") -> LoadedConfig:
    """Check an already-parsed config mapping, such as a flow's inline ``test.config``.

    ``working_dir`` is the default ``workingDirectory`` (the flow's directory for ``test.config``).
    ``json_root`` is where the mapping sits in ``source`` (e.g. ``$.test.config``), for messages.

    Raises:
        ConfigError: naming ``source`` (or ``<inline test.config>``) and the JSON path.
    """
    file = str(source) if source is not None else INLINE_SOURCE
    return _Builder(file, [], json_root).build(data, source=source, working_dir=working_dir)


# --------------------------------------------------------------------------------------------------
# The checker


def _describe(value: Any) -> str:
    """``a string``, ``a list``, ``null`` ... for 'expected X, got Y' messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({'true' if value else 'false'})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value!r})" if len(value) < 40 else "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        # ComplexKeyMap is a list subclass: a mapping with non-scalar keys.
        return "a mapping with non-scalar keys" if type(value) is not list else "a list"
    return type(value).__name__


def _parse_path_segments(path: str) -> list[str | int] | None:
    """Split a yaml_loader JSON path (``$.a["b"][0]``) into segments; ``None`` if unparseable."""
    try:
        return list(parse_path(path).segments)
    except PathSyntaxError:
        return None


def _is_known_level(segments: list[str | int]) -> bool:
    """Whether a mapping at this path holds *known fields* (so a duplicate there is an error)."""
    n = len(segments)
    if n == 0:
        return True
    head = segments[0]
    if head == "plugins":
        return n <= 2  # the plugins map itself, and each plugin's own keys
    if head == "routes":
        return n == 1 or n == 3 or (n == 5 and segments[3] == "conditions")
    if head in ("stateStore", "state_store", "storageConfig"):
        return n == 1 or (n == 2 and segments[1] in _EXPANDED_KEYS)
    if head == "retry":
        return n == 1 or (n == 2 and segments[1] == "backoff")
    return False


class _Builder:
    """Checks one config mapping; collects warnings; raises ConfigError on the first error."""

    __slots__ = ("file", "duplicates", "warnings", "root")

    def __init__(self, file: str, duplicates: list[DuplicateKey], root: str = "$") -> None:
        self.file = file
        self.duplicates = duplicates
        self.warnings: list[ConfigWarning] = []
        self.root = root  # JSON path of the config mapping in its file ("$.test.config" inline)

    def at(self, key: str) -> str:
        return join_path(self.root, key)

    # -- helpers ----------------------------------------------------------------------------------

    def error(self, path: str, what: str) -> ConfigError:
        return ConfigError(f"{path}: {what}", file=self.file)

    def warn(self, path: str, message: str, kind: str = "unknownField") -> None:
        self.warnings.append(ConfigWarning(path, message, kind))

    def mapping(self, value: Any, path: str, expected: str) -> dict[Any, Any]:
        if not isinstance(value, dict):
            raise self.error(path, f"expected {expected}, got {_describe(value)}")
        return value

    def keys(
        self,
        obj: dict[Any, Any],
        path: str,
        known: frozenset[str],
        aliases: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Keep known keys, rename documented snake_case aliases (warning), drop unknown keys
        (``unknownField`` warning)."""
        out: dict[str, Any] = {}
        for key, value in obj.items():
            if key in known:
                if key in out:  # alias seen first
                    raise self.error(
                        join_path(path, key), f"given both as '{key}' and as its snake_case alias"
                    )
                out[key] = value
            elif aliases and key in aliases:
                camel = aliases[key]
                if camel in out:
                    raise self.error(join_path(path, key), f"given both as '{camel}' and as '{key}'")
                self.warn(
                    join_path(path, key),
                    f"'{key}' is a snake_case alias of '{camel}'; write '{camel}'",
                    "snakeCaseAlias",
                )
                out[camel] = value
            else:
                key_text = str(key)
                hint = ""
                camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), key_text)
                if camel != key_text and camel in known:
                    hint = f" (did you mean '{camel}'?)"
                expected = ", ".join(sorted(known))
                self.warn(
                    join_path(path, key_text),
                    f"unknown key '{key_text}' is ignored{hint}; known keys: {expected}",
                )
        return out

    def validate(self, model: type[_M], data: dict[str, Any], path: str) -> _M:
        """Build a config model; turn the first validation error into a ConfigError at its path."""
        try:
            built: _M = validate(model, data)
            return built
        except Exception as exc:
            from pydantic import ValidationError  # loaded by now: only the pydantic mirrors raise

            if not isinstance(exc, ValidationError):
                raise
            err = exc.errors(include_url=False)[0]
            where = path
            for part in err["loc"]:
                where = join_path(where, part if isinstance(part, int) else str(part))
            if err["type"] == "missing":
                raise self.error(where, "missing required key") from None
            raise self.error(where, f"{err['msg']}, got {_describe(err.get('input'))}") from None

    # -- sections ---------------------------------------------------------------------------------

    def build(self, data: Any, *, source: Path | None, working_dir: Path) -> LoadedConfig:
        self.check_duplicates()
        if data is None:
            raise self.error(self.root, "the config is empty; expected a mapping with 'plugins' and 'routes'")
        top = self.keys(
            self.mapping(data, self.root, "a mapping with 'plugins' and 'routes'"),
            self.root,
            _TOP_KEYS,
            _TOP_ALIASES,
        )
        wd = self.working_directory(top.get("workingDirectory"), working_dir)
        if "plugins" not in top:
            raise self.error(
                self.root, "missing required key 'plugins' (a mapping of plugin name to {type: ...})"
            )
        plugins = self.plugins(top["plugins"])
        if "routes" not in top or top["routes"] is None:
            self.warn(
                self.at("routes"),
                "no routes configured: treated as empty, so no component is routable",
                "missingRoutes",
            )
            routes: dict[str, list[RouteRule]] = {}
        else:
            routes = self.routes(top["routes"])
        if "stateStore" in top and "storageConfig" in top:
            raise self.error(
                self.at("storageConfig"),
                "given both as 'stateStore' and as 'storageConfig' (upstream's name); keep one",
            )
        store_key = "storageConfig" if "storageConfig" in top else "stateStore"
        explicit = top.get(store_key) is not None
        state_store = self.state_store(top[store_key], store_key) if explicit else StateStoreConfig()
        retry = self.retry(top["retry"]) if top.get("retry") is not None else RetryConfig()
        recovery = self.recovery(top["recovery"]) if top.get("recovery") is not None else RecoveryConfig()
        config = GatewayConfig(
            working_directory=wd,
            plugins=plugins,
            routes=routes,
            state_store=state_store,
            state_store_explicit=explicit,
            retry=retry,
            source=source,
            recovery=recovery,
        )
        return LoadedConfig(config, self.warnings, source)

    def check_duplicates(self) -> None:
        for dup in self.duplicates:
            segments = _parse_path_segments(dup.path)
            where = "$"
            for seg in segments if segments is not None else ():
                where = join_path(where, seg)
            if segments is None:
                where = dup.path
            where = join_path(where, dup.key)
            if segments is not None and _is_known_level(segments):
                raise self.error(where, f"duplicate key '{dup.key}' (again at line {dup.line})")
            self.warn(
                where, f"duplicate key '{dup.key}' at line {dup.line}: the last value wins", "duplicateKey"
            )

    def working_directory(self, value: Any, default: Path) -> Path:
        if value is None:
            return default
        if not isinstance(value, str) or not value:
            raise self.error(
                self.at("workingDirectory"), f"expected a directory path, got {_describe(value)}"
            )
        # Relative to the process's current directory, as upstream (config.md §1).
        return Path(os.path.abspath(os.path.expanduser(value)))

    def plugins(self, value: Any) -> dict[str, PluginEntry]:
        raw = self.mapping(value, self.at("plugins"), "a mapping of plugin name to {type: ...}")
        out: dict[str, PluginEntry] = {}
        for name, entry in raw.items():
            if not isinstance(name, str) or not name:
                raise self.error(
                    self.at("plugins"), f"plugin names must be non-empty strings, got {_describe(name)}"
                )
            path = join_path(self.at("plugins"), name)
            body = self.mapping(entry, path, "a mapping with a 'type' key")
            if "type" not in body or body["type"] is None:
                raise self.error(
                    join_path(path, "type"),
                    "missing plugin type (expected e.g. 'builtin', 'stepflow', 'mcp' or 'mock')",
                )
            ptype = body["type"]
            if not isinstance(ptype, str) or not ptype:
                raise self.error(
                    join_path(path, "type"), f"expected a plugin type name, got {_describe(ptype)}"
                )
            out[name] = PluginEntry(type=ptype, options={k: v for k, v in body.items() if k != "type"})
        return out

    def routes(self, value: Any) -> dict[str, list[RouteRule]]:
        raw = self.mapping(value, self.at("routes"), "a mapping of path pattern to a list of rules")
        out: dict[str, list[RouteRule]] = {}
        for pattern, rules in raw.items():
            if not isinstance(pattern, str):
                raise self.error(
                    self.at("routes"), f"route patterns must be strings, got {_describe(pattern)}"
                )
            path = join_path(self.at("routes"), pattern)
            if not pattern.startswith("/"):
                raise self.error(path, f"route pattern {pattern!r} must start with '/'")
            if not isinstance(rules, list) or type(rules) is not list:
                raise self.error(
                    path, f"expected a list of rules ([{{plugin: ...}}]), got {_describe(rules)}"
                )
            out[pattern] = [self.rule(rule, join_path(path, i)) for i, rule in enumerate(rules)]
        # Pattern syntax and conflicts: config.routes is the one authority on them (the router
        # builds on the same compiled routes).
        try:
            compile_routes(out)
        except ConfigError as exc:
            message = exc.message
            if self.root != "$" and message.startswith("$"):
                message = self.root + message[1:]
            raise ConfigError(message, file=self.file) from None
        return out

    def rule(self, value: Any, path: str) -> RouteRule:
        body = self.keys(self.mapping(value, path, "a rule mapping with a 'plugin' key"), path, _RULE_KEYS)
        if "plugin" not in body:
            raise self.error(join_path(path, "plugin"), "missing plugin name (the rule's target plugin)")
        conditions = body.get("conditions")
        if conditions is not None:
            if not isinstance(conditions, list) or type(conditions) is not list:
                cpath = join_path(path, "conditions")
                raise self.error(
                    cpath, f"expected a list of {{path, value}} conditions, got {_describe(conditions)}"
                )
            body["conditions"] = [
                self.condition(c, join_path(join_path(path, "conditions"), j))
                for j, c in enumerate(conditions)
            ]
        else:
            body.pop("conditions", None)
        for key in ("componentAllow", "componentDeny"):
            names = body.get(key)
            if names is None:
                continue
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise self.error(
                    join_path(path, key), f"expected a list of plugin-local names, got {_describe(names)}"
                )
        return self.validate(RouteRule, body, path)

    def condition(self, value: Any, path: str) -> Condition:
        body = self.keys(self.mapping(value, path, "a {path, value} mapping"), path, _CONDITION_KEYS)
        if "value" not in body:
            raise self.error(join_path(path, "value"), "missing the value to compare with")
        cpath = body.get("path", "$")
        if cpath is None:
            cpath = "$"
        if not isinstance(cpath, str):
            raise self.error(join_path(path, "path"), f"expected a JSON path string, got {_describe(cpath)}")
        try:
            parse_path(cpath)
        except PathSyntaxError as exc:
            raise self.error(join_path(path, "path"), exc.message) from None
        return Condition(path=cpath, value=body["value"])

    def state_store(self, value: Any, key: str = "stateStore") -> StateStoreConfig:
        """``stateStore`` (or upstream's ``storageConfig``): ``{type, databaseUrl, autoMigrate,
        maxConnections}``, or upstream's expanded form ``{metadata, blobs, journal}`` when every
        part names the same backend (blobs and journal default to metadata)."""
        path = self.at(key)
        raw = self.mapping(value, path, "a mapping with a 'type' key")
        if "type" not in raw and any(k in raw for k in _EXPANDED_KEYS):
            return self.expanded_store(raw, path)
        return self.one_store(raw, path)

    def one_store(self, value: Any, path: str) -> StateStoreConfig:
        body = self.keys(
            self.mapping(value, path, "a mapping with a 'type' key"), path, _STATE_KEYS, _STATE_ALIASES
        )
        stype = body.get("type")
        expected = "expected 'inMemory', 'sqlite' or 'postgres'"
        if stype is None:
            raise self.error(join_path(path, "type"), f"missing state store type ({expected})")
        if stype not in _STATE_TYPES:
            raise self.error(join_path(path, "type"), f"unknown state store type {stype!r} ({expected})")
        url = body.get("databaseUrl")
        if stype == "sqlite" and not isinstance(url, str):
            raise self.error(
                join_path(path, "databaseUrl"),
                "missing SQLite database URL (e.g. 'sqlite:state.db?mode=rwc' or 'sqlite::memory:')",
            )
        if stype == "postgres":
            if not isinstance(url, str):
                raise self.error(
                    join_path(path, "databaseUrl"),
                    "missing PostgreSQL database URL (e.g. 'postgresql://user@localhost:5432/stepflow')",
                )
            if not url.startswith(("postgresql://", "postgres://")):
                raise self.error(
                    join_path(path, "databaseUrl"),
                    "expected a PostgreSQL URL starting with 'postgresql://' or 'postgres://'",
                )
        return self.validate(StateStoreConfig, body, path)

    def expanded_store(self, raw: dict[Any, Any], path: str) -> StateStoreConfig:
        body = self.keys(raw, path, _EXPANDED_KEYS)
        if body.get("metadata") is None:
            raise self.error(
                join_path(path, "metadata"), "missing the metadata store (a mapping with 'type')"
            )
        parts = {"metadata": self.one_store(body["metadata"], join_path(path, "metadata"))}
        for name in ("blobs", "journal"):
            if body.get(name) is not None:
                parts[name] = self.one_store(body[name], join_path(path, name))
        first = parts["metadata"]
        for name, part in parts.items():
            if (part.type, part.database_url) != (first.type, first.database_url):
                described = ", ".join(
                    f"{n}: {p.type}" + (f" '{p.database_url}'" if p.database_url else "")
                    for n, p in parts.items()
                )
                raise self.error(
                    join_path(path, name),
                    f"metadata, blobs and journal in different stores ({described}) are not "
                    "supported; give all three the same type and databaseUrl, or use the simple "
                    "form {type, databaseUrl}",
                )
        return first

    def retry(self, value: Any) -> RetryConfig:
        path = self.at("retry")
        body = self.keys(self.mapping(value, path, "a mapping"), path, _RETRY_KEYS)
        if body.get("backoff") is not None:
            body["backoff"] = self.backoff(body["backoff"], join_path(path, "backoff"))
        else:
            body.pop("backoff", None)
        return self.validate(RetryConfig, body, path)

    def recovery(self, value: Any) -> RecoveryConfig:
        path = self.at("recovery")
        body = self.keys(self.mapping(value, path, "a mapping"), path, frozenset(_RECOVERY_KEYS))
        out = RecoveryConfig()
        for key, raw in body.items():
            field_name, kinds = _RECOVERY_KEYS[key]
            if kinds is bool:
                ok = isinstance(raw, bool)
            else:
                ok = (
                    isinstance(raw, (int, float))
                    and not isinstance(raw, bool)
                    and isinstance(raw, kinds)
                    and raw >= 0
                )
            if not ok:
                expected = "true or false" if kinds is bool else "a number >= 0"
                raise self.error(join_path(path, key), f"expected {expected}, got {_describe(raw)}")
            setattr(out, field_name, raw)
        return out

    def backoff(self, value: Any, path: str) -> Any:
        raw = self.mapping(value, path, "a mapping with a 'type' key")
        btype = raw.get("type")
        if btype not in BACKOFF_TYPES:
            got = "missing" if btype is None else repr(btype)
            raise self.error(
                join_path(path, "type"),
                f"expected backoff type 'constant', 'exponential' or 'fibonacci', got {got}",
            )
        body = self.keys(raw, path, _BACKOFF_KEYS[btype])
        return self.validate(BACKOFF_TYPES[btype], body, path)
