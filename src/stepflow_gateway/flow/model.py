"""The flow model: what a loaded flow is, and its normalised JSON form (flow-format.md §2–4, §13).

Built by ``flow.load``; immutable by convention after loading. Expressions are compiled
(``flow.expr``) at load time, so running a flow never re-parses it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .expr import Expr, Literal

FLOW_SCHEMA_URL = "https://stepflow.org/schemas/v1/flow.json"

_NO_DEFAULT: Any = object()


DEFAULT_MAX_RETRIES = 3
"""``onError: {action: retry}`` without ``maxRetries`` (or with ``null``), as upstream HEAD."""


@dataclass(slots=True)
class OnError:
    """``onError``: ``fail`` | ``useDefault`` (literal ``defaultValue``) | ``retry`` [gw].

    ``max_retries`` is the retry budget in effect; ``max_retries_given`` whether the flow wrote it,
    since the normalised form omits a defaulted ``maxRetries`` as upstream HEAD serialises it."""

    action: str = "fail"
    default_value: Any = _NO_DEFAULT
    max_retries: int = DEFAULT_MAX_RETRIES
    backoff: dict[str, Any] | None = None
    max_retries_given: bool = False

    @property
    def has_default(self) -> bool:
        return self.default_value is not _NO_DEFAULT

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"action": self.action}
        if self.action == "useDefault" and self.default_value is not _NO_DEFAULT:
            out["defaultValue"] = self.default_value
        if self.action == "retry":
            if self.max_retries_given:
                out["maxRetries"] = self.max_retries
            if self.backoff is not None:
                out["backoff"] = self.backoff
        return out


@dataclass(slots=True)
class Step:
    id: str
    component: str
    input: Expr
    index: int
    on_error: OnError = field(default_factory=OnError)
    must_execute: bool | None = None
    skip_if: Expr | None = None
    depends_on: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "component": self.component}
        if self.on_error.action != "fail":  # the default is omitted, as upstream serialises it
            out["onError"] = self.on_error.to_json()
        inp = self.input.to_json()
        if inp is not None or not isinstance(self.input, Literal):
            out["input"] = inp
        if self.must_execute is not None:
            out["mustExecute"] = self.must_execute
        if self.skip_if is not None:
            out["skipIf"] = self.skip_if.to_json()
        if self.depends_on:
            out["depends_on"] = list(self.depends_on)
        if self.metadata:
            out["metadata"] = self.metadata
        return out


@dataclass(slots=True)
class Flow:
    """A loaded flow. ``steps`` are in file order, which is always a valid topological order."""

    steps: list[Step]
    output: Expr
    name: str | None = None
    description: str | None = None
    version: str | None = None
    schemas: dict[str, Any] | None = None
    test: dict[str, Any] | None = None
    examples: list[Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str | None = None
    """The file the flow came from, when it came from a file."""
    _flow_id: str | None = None
    _by_id: dict[str, Step] | None = None

    # -- schemas -------------------------------------------------------------------------------
    def _schema_prop(self, name: str) -> Any:
        if not isinstance(self.schemas, dict):
            return None
        props = self.schemas.get("properties")
        if not isinstance(props, dict):
            return None
        return props.get(name)

    @property
    def input_schema(self) -> Any:
        return self._schema_prop("input")

    @property
    def output_schema(self) -> Any:
        return self._schema_prop("output")

    @property
    def variables_schema(self) -> Any:
        return self._schema_prop("variables")

    def step_output_schema(self, step_id: str) -> Any:
        steps = self._schema_prop("steps")
        if isinstance(steps, dict) and isinstance(steps.get("properties"), dict):
            return steps["properties"].get(step_id)
        return None

    def step(self, step_id: str) -> Step | None:
        if self._by_id is None:
            self._by_id = {s.id: s for s in self.steps}
        return self._by_id.get(step_id)

    # -- normalised form -----------------------------------------------------------------------
    def to_json(self, *, with_schema: bool = False) -> dict[str, Any]:
        """The normalised form (§13). ``with_schema`` writes the v1 tag first (get_blob)."""
        out: dict[str, Any] = {}
        if with_schema:
            out["schema"] = FLOW_SCHEMA_URL
        if self.name is not None:
            out["name"] = self.name
        if self.description is not None:
            out["description"] = self.description
        if self.version is not None:
            out["version"] = self.version
        schemas = _normalise_schemas(self.schemas)
        if schemas:
            out["schemas"] = schemas
        if self.steps:
            out["steps"] = [s.to_json() for s in self.steps]
        output = self.output.to_json()
        if output is not None or not isinstance(self.output, Literal):
            out["output"] = output
        if self.test:
            out["test"] = self.test
        if self.examples:
            out["examples"] = self.examples
        if self.metadata:
            out["metadata"] = self.metadata
        return out

    @property
    def flow_id(self) -> str:
        """SHA-256 of the compact normalised flow without ``schema`` (§13)."""
        if self._flow_id is None:
            from ..jsonutil import blob_id

            self._flow_id = blob_id(self.to_json())
        return self._flow_id


def _normalise_schemas(schemas: Any) -> dict[str, Any] | None:
    if not isinstance(schemas, dict):
        return None
    out: dict[str, Any] = {}
    defs = schemas.get("$defs")
    props = schemas.get("properties")
    props_out: dict[str, Any] = {}
    if isinstance(props, dict):
        for key in ("input", "output", "variables"):
            if key in props:
                props_out[key] = props[key]
        steps = props.get("steps")
        if isinstance(steps, dict):
            sp = steps.get("properties")
            props_out["steps"] = {"type": "object", "properties": sp if isinstance(sp, dict) else {}}
    if not defs and not props_out:
        return None
    out["type"] = "object"
    if defs:
        out["$defs"] = defs
    if props_out:
        out["properties"] = props_out
    return out
