"""The OpenAPI 3.1 document at ``/api/v1/openapi.json`` and a self-contained docs page at ``/api/v1/docs``.

Paths are written here by hand (they mirror ``api.routes``); component schemas come from the
pydantic models in ``models.py``, so bodies and documentation cannot drift apart. The docs page
is rendered server-side from the same document and loads nothing from the network. pydantic and
the models are imported when the document is first built, not when the server starts.
"""

from __future__ import annotations

import html
from functools import lru_cache
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

__all__ = ["build_openapi", "docs_page", "openapi_json"]


def _models() -> list[type[Any]]:
    """The models whose JSON schemas are the document's components (imports pydantic)."""
    from . import models as m

    return [
        m.StoreFlowRequest,
        m.StoreFlowResponse,
        m.FlowResponse,
        m.CreateRunRequest,
        m.CreateRunResponse,
        m.RunSummary,
        m.RunDetails,
        m.ListRunsResponse,
        m.ListItemsResponse,
        m.ListStepRunsResponse,
        m.RunFlowResponse,
        m.HealthResponse,
        m.ListComponentsResponse,
        m.ErrorResponse,
    ]


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(name: str | None, description: str = "OK") -> dict[str, Any]:
    if name is None:
        return {"description": description}
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Bad request (malformed JSON, bad id or query)",
        401: "Missing or invalid API key",
        404: "Not found",
        409: "Conflict",
        413: "Request body too large",
        422: "JSON of the wrong shape / flow does not parse",
        500: "Internal error",
    }
    return {
        str(c): {"description": text[c], "content": {"application/json": {"schema": _ref("ErrorResponse")}}}
        for c in codes
    }


def _body(name: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(name)}}}


def _p(
    name: str, where: str = "path", schema: dict[str, Any] | None = None, desc: str = ""
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema or {"type": "string"},
    }
    if desc:
        out["description"] = desc
    return out


_RUN_ID = _p("runId", schema={"type": "string", "format": "uuid"})
_FLOW_ID = _p("flowId", desc="64-hex flow id")


def _op(tag: str, summary: str, responses: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {"tags": [tag], "summary": summary, "responses": responses, **kw}


def _paths() -> dict[str, Any]:
    op = _op
    run_id = [_RUN_ID]
    return {
        "/health": {
            "get": op(
                "health",
                "Service health (?error= answers an error body on purpose)",
                {"200": _ok("HealthResponse"), **_errors(400, 404, 500)},
                parameters=[_p("error", "query")],
                security=[],
            )
        },
        "/components": {
            "get": op(
                "components",
                "Components of all plugins, by routed public path",
                {"200": _ok("ListComponentsResponse"), **_errors(401, 500)},
                parameters=[_p("includeSchemas", "query", {"type": "boolean", "default": True})],
            )
        },
        "/flows": {
            "post": op(
                "flows",
                "Validate and store a flow",
                {"200": _ok("StoreFlowResponse"), **_errors(400, 401, 413, 422)},
                requestBody=_body("StoreFlowRequest"),
            )
        },
        "/flows/{flowId}": {
            "get": op(
                "flows",
                "A stored flow (normalised)",
                {"200": _ok("FlowResponse"), **_errors(401, 404)},
                parameters=[_FLOW_ID],
            ),
            "delete": op(
                "flows",
                "Delete a stored flow",
                {"200": _ok(None, "Deleted (empty body)"), **_errors(401, 404, 409)},
                parameters=[_FLOW_ID],
            ),
        },
        "/runs": {
            "post": op(
                "runs",
                "Run a stored flow (synchronous unless wait=false)",
                {"200": _ok("CreateRunResponse"), **_errors(400, 401, 404, 413, 422, 500)},
                requestBody=_body("CreateRunRequest"),
            ),
            "get": op(
                "runs",
                "List runs, newest first",
                {"200": _ok("ListRunsResponse"), **_errors(400, 401, 500)},
                parameters=[
                    _p("status", "query"),
                    _p("flowName", "query"),
                    _p("rootRunId", "query"),
                    _p("parentRunId", "query"),
                    _p("maxDepth", "query", {"type": "integer"}),
                    _p("limit", "query", {"type": "integer", "default": 1000}),
                    _p("offset", "query", {"type": "integer", "default": 0}),
                ],
            ),
        },
        "/runs/{runId}": {
            "get": op(
                "runs",
                "Run details (?wait=true: after the run ends, or timeoutSecs pass; default 300)",
                {"200": _ok("RunDetails"), **_errors(400, 401, 404)},
                parameters=[
                    _RUN_ID,
                    _p("wait", "query", {"type": "boolean", "default": False}),
                    _p("timeoutSecs", "query", {"type": "integer", "minimum": 0, "default": 300}),
                ],
            ),
            "delete": op(
                "runs",
                "Delete a finished run",
                {"200": _ok(None, "Deleted (empty body)"), **_errors(400, 401, 404, 409)},
                parameters=run_id,
            ),
        },
        "/runs/{runId}/items": {
            "get": op(
                "runs",
                "Per-item results",
                {"200": _ok("ListItemsResponse"), **_errors(400, 401, 404)},
                parameters=run_id,
            )
        },
        "/runs/{runId}/steps": {
            "get": op(
                "runs",
                "Step states of one item (?item=N, default 0)",
                {"200": _ok("ListStepRunsResponse"), **_errors(400, 401, 404)},
                parameters=[_RUN_ID, _p("item", "query", {"type": "integer", "default": 0})],
            )
        },
        "/runs/{runId}/flow": {
            "get": op(
                "runs",
                "The flow a run executed",
                {"200": _ok("RunFlowResponse"), **_errors(400, 401, 404)},
                parameters=run_id,
            )
        },
        "/runs/{runId}/cancel": {
            "post": op(
                "runs",
                "Cancel a running run",
                {"200": _ok("RunSummary"), **_errors(400, 401, 404, 409)},
                parameters=run_id,
            )
        },
        "/runs/{runId}/events": {
            "get": op(
                "runs",
                "Run progress as server-sent events (step_started, step_completed, step_failed, "
                "item_completed, run_completed); a finished run replays its final events",
                {
                    "200": {
                        "description": "event stream",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    **_errors(400, 401, 404),
                },
                parameters=run_id,
            )
        },
    }


@lru_cache(maxsize=4)
def build_openapi(version: str) -> dict[str, Any]:
    from pydantic.json_schema import models_json_schema

    _, defs = models_json_schema(
        [(m, "validation") for m in _models()], by_alias=True, ref_template="#/components/schemas/{model}"
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "stepflow-gateway REST API",
            "version": version,
            "description": "Compatible with the StepFlow 0.9.0 server API (/api/v1). "
            "Extensions are marked [gw].",
        },
        "servers": [{"url": "/api/v1"}],
        "paths": _paths(),
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
        "security": [{"bearer": []}, {"apiKey": []}, {}],
    }


async def openapi_json(request: Request) -> Response:
    return JSONResponse(build_openapi(request.app.state.runtime.settings.version))


async def docs_page(request: Request) -> Response:
    doc = build_openapi(request.app.state.runtime.settings.version)
    rows = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            rows.append(
                f"<tr><td><code>{method.upper()}</code></td><td><code>/api/v1{html.escape(path)}</code></td>"
                f"<td>{html.escape(op['summary'])}</td></tr>"
            )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>stepflow-gateway API</title>"
        "<style>body{font-family:sans-serif;margin:2em}"
        "td{padding:.2em .8em;border-bottom:1px solid #ddd}</style>"
        f"</head><body><h1>stepflow-gateway REST API {html.escape(doc['info']['version'])}</h1>"
        "<p>Machine-readable document: <a href='/api/v1/openapi.json'>/api/v1/openapi.json</a>. "
        "MCP (streamable HTTP) at <code>/mcp</code>.</p>"
        f"<table>{''.join(rows)}</table></body></html>"
    )
    return HTMLResponse(page)
