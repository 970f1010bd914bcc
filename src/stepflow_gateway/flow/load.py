"""Reading flows: file or JSON value → ``Flow`` plus load-time diagnostics.

Owns flow-format.md §1–4 (keys, types, aliases, stale keys) and the legacy/unknown-key warnings.
Structural problems that make a flow unusable (a non-string ``$step``, an unknown ``onError``
action, a bad path) raise ``FlowLoadError`` naming the file and JSON path; everything else becomes a
``Diagnostic`` (``flow.validate``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FlowLoadError
from .diagnostics import Diagnostic, make_diagnostic
from .expr import CompileNotes, Literal, compile_expr
from .model import DEFAULT_MAX_RETRIES, FLOW_SCHEMA_URL, Flow, OnError, Step

__all__ = ["LoadedFlow", "load_flow", "parse_flow"]

_FLOW_KEYS = {
    "schema",
    "name",
    "description",
    "version",
    "schemas",
    "steps",
    "output",
    "test",
    "examples",
    "metadata",
}
_STALE_HINTS = {
    "inputSchema": "schemas.properties.input",
    "input_schema": "schemas.properties.input",
    "outputSchema": "schemas.properties.output",
    "output_schema": "schemas.properties.output",
    "variables_schema": "schemas.properties.variables",
    "on_error": "onError",
}
_STEP_KEYS = {
    "id",
    "component",
    "input",
    "onError",
    "mustExecute",
    "metadata",
    "skipIf",
    "skip",
    "depends_on",
}

_U32_MAX = 2**32 - 1

_ON_ERROR_KEYS = {
    "fail": {"action"},
    "useDefault": {"action", "defaultValue"},
    "retry": {"action", "maxRetries", "backoff"},
}


@dataclass(slots=True)
class LoadedFlow:
    flow: Flow
    diagnostics: list[Diagnostic] = field(default_factory=list)
    """Load-time warnings (unknown keys, legacy syntax, duplicate keys). ``validate_flow`` adds more."""
    has_schema_tag: bool = False


def load_flow(path: str | os.PathLike[str]) -> LoadedFlow:
    """Read a YAML or JSON flow file. Raises ``FlowLoadError`` naming the file."""
    from ..yaml_loader import load_yaml_file

    p = Path(path)
    doc = load_yaml_file(p)
    loaded = parse_flow(doc.value, source=str(p))
    for dup in doc.duplicate_keys:
        if _is_structural(dup.path):
            raise FlowLoadError(
                f"duplicate key '{dup.key}' (line {dup.line})", file=str(p), json_path=dup.path
            )
        loaded.diagnostics.append(
            make_diagnostic(
                "unknownField", f"{dup.path}.{dup.key}", f"duplicate key '{dup.key}': the last one wins"
            )
        )
    return loaded


def _is_structural(path: str) -> bool:
    """True when a mapping at ``path`` is a flow or step object (duplicate known fields are errors)."""
    if path == "$":
        return True
    if path.startswith("$.steps[") and path.endswith("]") and path.count("[") == 1:
        return True
    return False


def parse_flow(value: Any, *, source: str | None = None) -> LoadedFlow:
    """Build a ``Flow`` from a JSON value. Raises ``FlowLoadError`` (with file and JSON path)."""
    try:
        return _parse_flow(value, source)
    except FlowLoadError as exc:
        if exc.file is None and source is not None:
            exc.file = source
        raise


def _parse_flow(value: Any, source: str | None) -> LoadedFlow:
    if not isinstance(value, dict):
        raise FlowLoadError("a flow must be a mapping (object) at the top level", file=source, json_path="$")
    notes = CompileNotes()
    diags: list[Diagnostic] = []
    schema_tag = value.get("schema")
    if schema_tag is not None and schema_tag != FLOW_SCHEMA_URL:
        diags.append(make_diagnostic("unknownField", "$.schema", f"unsupported flow schema {schema_tag!r}"))
    _note_unknown_keys(value, _FLOW_KEYS, "$", "key", diags)

    name = _opt_str(value, "name", "$")
    description = _opt_str(value, "description", "$")
    version = value.get("version")
    if version is not None and not isinstance(version, str):
        version = str(version)
    schemas = value.get("schemas")
    if schemas is not None and not isinstance(schemas, dict):
        raise FlowLoadError("'schemas' must be an object", json_path="$.schemas")

    raw_steps = value.get("steps")
    if raw_steps is None:
        raw_steps = []
    if not isinstance(raw_steps, list):
        raise FlowLoadError("'steps' must be a list of steps", json_path="$.steps")
    steps = [_parse_step(raw, i, notes, diags) for i, raw in enumerate(raw_steps)]

    output = compile_expr(value.get("output"), "$.output", notes)
    test = value.get("test")
    if test is not None and not isinstance(test, dict):
        raise FlowLoadError("'test' must be an object", json_path="$.test")
    examples = value.get("examples")
    if examples is not None and not isinstance(examples, list):
        raise FlowLoadError("'examples' must be a list", json_path="$.examples")
    metadata = value.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise FlowLoadError("'metadata' must be an object", json_path="$.metadata")

    flow = Flow(
        steps=steps,
        output=output,
        name=name,
        description=description,
        version=version,
        schemas=schemas,
        test=test,
        examples=examples,
        metadata=metadata,
        source=source,
    )
    for kind, path, message in notes.warnings:
        diags.append(make_diagnostic(kind, path, message))
    return LoadedFlow(flow, diags, has_schema_tag=schema_tag == FLOW_SCHEMA_URL)


def _note_unknown_keys(
    obj: dict[str, Any], known: Any, where: str, noun: str, diags: list[Diagnostic]
) -> None:
    """An ``unknownField`` warning per key not in ``known``, naming the key's new name if it was renamed."""
    for key in obj:
        if key not in known:
            hint = _STALE_HINTS.get(key)
            msg = f"unknown {noun} '{key}' is ignored"
            if hint:
                msg += f" (did you mean {hint}?)"
            diags.append(make_diagnostic("unknownField", f"{where}.{key}", msg))


def _opt_str(obj: dict[str, Any], key: str, where: str) -> str | None:
    v = obj.get(key)
    if v is None:
        return None
    if not isinstance(v, str):
        raise FlowLoadError(f"'{key}' must be a string", json_path=f"{where}.{key}")
    return v


def _parse_step(raw: Any, index: int, notes: CompileNotes, diags: list[Diagnostic]) -> Step:
    where = f"$.steps[{index}]"
    if not isinstance(raw, dict):
        raise FlowLoadError("a step must be an object with 'id' and 'component'", json_path=where)
    _note_unknown_keys(raw, _STEP_KEYS, where, "step key", diags)
    step_id = raw.get("id")
    if step_id is None:
        raise FlowLoadError("step is missing its 'id'", json_path=where)
    if not isinstance(step_id, str):
        raise FlowLoadError("step 'id' must be a string", json_path=f"{where}.id")
    component = raw.get("component")
    if component is None:
        component = ""
    if not isinstance(component, str):
        raise FlowLoadError(
            "step 'component' must be a string", json_path=f"{where}.component", step_id=step_id
        )
    try:
        input_expr = compile_expr(raw.get("input"), f"{where}.input", notes)
        skip_raw = raw["skipIf"] if "skipIf" in raw else raw.get("skip")
        skip_if = compile_expr(skip_raw, f"{where}.skipIf", notes) if skip_raw is not None else None
        if isinstance(skip_if, Literal) and skip_if.value is False:
            skip_if = None
    except FlowLoadError as exc:
        exc.step_id = step_id
        raise
    on_error = _parse_on_error(raw.get("onError"), f"{where}.onError", step_id, diags)
    must = raw.get("mustExecute")
    if must is not None and not isinstance(must, bool):
        raise FlowLoadError(
            "'mustExecute' must be true or false", json_path=f"{where}.mustExecute", step_id=step_id
        )
    deps = raw.get("depends_on") or []
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise FlowLoadError(
            "'depends_on' must be a list of step ids", json_path=f"{where}.depends_on", step_id=step_id
        )
    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise FlowLoadError("'metadata' must be an object", json_path=f"{where}.metadata", step_id=step_id)
    return Step(
        id=step_id,
        component=component,
        input=input_expr,
        index=index,
        on_error=on_error,
        must_execute=must,
        skip_if=skip_if,
        depends_on=list(deps),
        metadata=metadata,
    )


def _parse_on_error(raw: Any, where: str, step_id: str, diags: list[Diagnostic]) -> OnError:
    if raw is None:
        return OnError()
    if not isinstance(raw, dict):
        raise FlowLoadError(
            "'onError' must be an object like {action: fail}", json_path=where, step_id=step_id
        )
    action = raw.get("action")
    if action not in _ON_ERROR_KEYS:
        raise FlowLoadError(
            f"unknown onError action {action!r}: expected one of fail, useDefault, retry",
            json_path=f"{where}.action",
            step_id=step_id,
        )
    for key in raw:
        if key not in _ON_ERROR_KEYS[action]:
            diags.append(
                make_diagnostic("unknownField", f"{where}.{key}", f"key '{key}' is ignored for {action}")
            )
    if action == "useDefault":
        if "defaultValue" in raw:
            return OnError("useDefault", raw["defaultValue"])
        return OnError("useDefault")
    if action == "retry":
        # upstream HEAD: ``maxRetries`` is an optional uint32; absent or ``null`` means the default
        max_retries = raw.get("maxRetries")
        given = max_retries is not None
        if not given:
            max_retries = DEFAULT_MAX_RETRIES
        elif max_retries.__class__ is not int or not 0 <= max_retries <= _U32_MAX:
            raise FlowLoadError(
                f"'maxRetries' must be an integer from 0 to {_U32_MAX} (or null for the default "
                f"{DEFAULT_MAX_RETRIES}), got {max_retries!r}",
                json_path=f"{where}.maxRetries",
                step_id=step_id,
            )
        backoff = raw.get("backoff")
        if backoff is not None:
            _check_backoff(backoff, f"{where}.backoff", step_id, diags)
        return OnError("retry", max_retries=max_retries, backoff=backoff, max_retries_given=given)
    return OnError("fail")


def _check_backoff(backoff: Any, where: str, step_id: str, diags: list[Diagnostic]) -> None:
    """``onError.backoff`` has the shape of the config's ``retry.backoff`` (config.md §6).

    A wrong type or value is a load error naming the key; an unknown key is only a warning.
    """
    from pydantic import ValidationError

    from ..config.model import BACKOFF_ADAPTER

    if not isinstance(backoff, dict):
        raise FlowLoadError(
            "'backoff' must be an object like {type: constant, delayMs: 500}",
            json_path=where,
            step_id=step_id,
        )
    try:
        BACKOFF_ADAPTER.validate_python(backoff)
    except ValidationError as exc:
        for error in exc.errors():
            loc = [str(p) for p in error["loc"][1:]]  # the first element is the matched tag
            if error["type"] == "extra_forbidden":
                path = ".".join([where, *loc])
                diags.append(make_diagnostic("unknownField", path, f"key '{loc[-1]}' is ignored"))
                continue
            path = ".".join([where, *loc]) if loc else where
            if error["type"].startswith("union_tag") or not loc:
                message = "expected 'type' to be one of constant, exponential, fibonacci"
                path = f"{where}.type"
            else:
                message = f"{error['msg']}, got {backoff.get(loc[-1])!r}"
            raise FlowLoadError(f"invalid backoff: {message}", json_path=path, step_id=step_id) from None
