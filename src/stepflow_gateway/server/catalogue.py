"""The MCP tool catalogue: which stored flows are ``/mcp`` tools, under which names, in which order.

No mcp SDK import here: the REST side (``POST /flows``, ``DELETE /flows/{id}``) keeps the catalogue
current from the first request, while ``mcp_facade.py`` (which imports the SDK, ~0.5 s) is loaded
when the first ``/mcp`` request arrives. A tool's ``types.Tool`` definition is built on first
use (``FlowTool.tool``), by the façade.

* The catalogue is persisted in the state store as one gateway-owned record (key
  ``CATALOGUE_KEY``) listing the flow ids stored through ``POST /flows`` in
  store order, so tool names survive a restart. It is a mutable *record* (``put_record``), never a
  content-addressed blob (a blob is written once and never replaced).
* The most recently stored flow owns a tool name.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from ..flow.load import parse_flow
from ..flow.model import Flow
from ..logging import get_logger

__all__ = ["CATALOGUE_KEY", "FlowCatalogue", "FlowTool", "tool_name"]

log = get_logger(__name__)

CATALOGUE_KEY = "stepflow-gateway:mcp-catalogue"
_NAME_BAD = re.compile(r"[^A-Za-z0-9_.-]")


def tool_name(flow: Flow) -> str:
    """The flow's ``name`` with characters outside ``[A-Za-z0-9_.-]`` replaced, at most 64 characters."""
    if flow.name:
        return _NAME_BAD.sub("_", flow.name)[:64]
    return f"flow_{flow.flow_id[:12]}"


def _is_object_schema(schema: Any) -> bool:
    return isinstance(schema, dict) and (schema.get("type") == "object" or "properties" in schema)


def _rewrite_refs(value: Any) -> tuple[Any, bool]:
    """Rewrite ``#/schemas/$defs/X`` to ``#/$defs/X``; also say whether any ``$defs`` ref was seen."""
    seen = False

    def walk(v: Any) -> Any:
        nonlocal seen
        if isinstance(v, dict):
            out = {}
            for k, x in v.items():
                if k == "$ref" and isinstance(x, str):
                    if x.startswith("#/schemas/$defs/"):
                        x = "#/$defs/" + x[len("#/schemas/$defs/") :]
                    if x.startswith("#/$defs/"):
                        seen = True
                    out[k] = x
                else:
                    out[k] = walk(x)
            return out
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return walk(value), seen


def _with_defs(schema: dict[str, Any], flow: Flow) -> dict[str, Any]:
    schema, uses_defs = _rewrite_refs(schema)
    defs = flow.schemas.get("$defs") if isinstance(flow.schemas, dict) else None
    if uses_defs and isinstance(defs, dict) and "$defs" not in schema:
        schema["$defs"] = _rewrite_refs(copy.deepcopy(defs))[0]
    return schema


class FlowTool:
    """One flow as a tool: its definition and how arguments become the flow input."""

    __slots__ = (
        "flow",
        "name",
        "wrap_input",
        "has_output_schema",
        "_input_schema",
        "_output_schema",
        "_tool",
    )

    def __init__(self, flow: Flow) -> None:
        self.flow = flow
        self.name = tool_name(flow)
        in_schema = flow.input_schema
        self.wrap_input = False
        if _is_object_schema(in_schema):
            input_schema = _with_defs(dict(in_schema), flow)
        elif in_schema is not None:
            self.wrap_input = True
            input_schema = _with_defs(
                {"type": "object", "properties": {"input": in_schema}, "required": ["input"]}, flow
            )
        else:
            input_schema = {"type": "object"}
        out_schema = flow.output_schema
        output_schema = _with_defs(dict(out_schema), flow) if _is_object_schema(out_schema) else None
        self.has_output_schema = output_schema is not None
        self._input_schema = input_schema
        self._output_schema = output_schema
        self._tool: Any = None

    @property
    def input_schema(self) -> dict[str, Any]:
        return self._input_schema

    @property
    def tool(self) -> Any:
        """The ``mcp_types.Tool`` (imports the mcp SDK types on first use)."""
        if self._tool is None:
            import mcp_types as types

            flow = self.flow
            self._tool = types.Tool(
                name=self.name,
                title=flow.name,
                description=flow.description or f"StepFlow flow {flow.flow_id}",
                input_schema=self._input_schema,
                output_schema=self._output_schema,
            )
        return self._tool

    def input_of(self, arguments: dict[str, Any]) -> Any:
        if self.wrap_input:
            return arguments.get("input")
        return arguments


class FlowCatalogue:
    """The stored flows that are MCP tools; the most recently stored flow owns a name."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._order: list[str] = []  # flow ids, oldest first
        self._tools: dict[str, FlowTool] = {}  # flow id -> tool
        self._listeners: list[Any] = []

    @classmethod
    async def load(cls, store: Any) -> FlowCatalogue:
        cat = cls(store)
        got = await store.get_record(CATALOGUE_KEY)
        if got is None:  # written by a version that kept it in the blob table (never overwritten)
            legacy = await store.get_blob(CATALOGUE_KEY)
            got = legacy[0] if legacy is not None else None
        ids = got.get("flows", []) if isinstance(got, dict) else []
        for flow_id in ids:
            blob = await store.get_blob(flow_id)
            if blob is None or blob[1] != "flow":
                continue
            try:
                flow = parse_flow(blob[0]).flow
            except Exception as exc:  # a flow this version cannot parse is not a tool, not a crash
                log.warning("stored flow is not usable as an MCP tool", flow_id=flow_id, error=str(exc))
                continue
            cat._order.append(flow_id)
            cat._tools[flow_id] = FlowTool(flow)
        return cat

    def on_change(self, callback: Any) -> None:
        self._listeners.append(callback)

    async def _persist(self) -> None:
        await self._store.put_record(CATALOGUE_KEY, {"flows": list(self._order)})
        for cb in self._listeners:
            cb()

    async def add(self, flow: Flow) -> None:
        fid = flow.flow_id
        if fid in self._tools:
            self._order.remove(fid)
        self._order.append(fid)
        self._tools[fid] = FlowTool(flow)
        await self._persist()

    async def remove(self, flow_id: str) -> None:
        if flow_id not in self._tools:
            return
        self._order.remove(flow_id)
        del self._tools[flow_id]
        await self._persist()

    def tools(self) -> dict[str, FlowTool]:
        """Tool name -> tool, newest flow winning each name; in store order."""
        out: dict[str, FlowTool] = {}
        for fid in self._order:
            t = self._tools[fid]
            out.pop(t.name, None)
            out[t.name] = t
        return out

    def find(self, name: str) -> FlowTool | None:
        for fid in reversed(self._order):
            t = self._tools[fid]
            if t.name == name:
                return t
        return None
