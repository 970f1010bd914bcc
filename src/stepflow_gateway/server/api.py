"""REST ``/api/v1`` handlers (rest-api.md §2): health, components, flows, runs.

Each handler parses its input (``request_bodies``, ``request_params``), calls the ``Gateway``
through ``ServerRuntime``, and returns a JSON dict (``responses``). Errors are raised, never built
here: ``errors.py`` turns them into the REST error body. Nothing here imports pydantic: it is
loaded only for a body of an unusual shape (``request_bodies.py``) and for the OpenAPI document.
"""

from __future__ import annotations

from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..core.result import FlowResult
from ..errors import FlowLoadError
from ..flow.diagnostics import summarize
from ..flow.load import parse_flow
from ..gateway import RunHandle, now_iso
from ..state.base import RunFilter, RunRecord
from .errors import ApiError
from .request_bodies import NOT_PLAIN, create_run_body, plain_timeout_secs, store_flow_body
from .request_params import path_run_id, query_bool, query_int, query_uuid, runtime_of
from .responses import (
    EXECUTION_STATUSES,
    item_json,
    item_record_json,
    item_status,
    run_details,
    run_summary,
    step_json,
    step_record_json,
)
from .runtime import DEFAULT_LIST_LIMIT, ServerRuntime

__all__ = ["routes"]

CANCEL_WAIT_S = 10.0
"""How long ``POST /runs/{id}/cancel`` waits for the run to record its cancellation."""

DEFAULT_WAIT_TIMEOUT_S = 300
"""``GET /runs/{id}?wait=true`` without ``timeoutSecs`` waits this long, as upstream HEAD does."""


# -- health and components ------------------------------------------------------------------------
_HEALTH_ERRORS = {
    "bad_request": (400, "Bad request requested via ?error=bad_request"),
    "not_found": (404, "Not found requested via ?error=not_found"),
    "internal": (500, "Internal error requested via ?error=internal"),
    "stack": (500, "Error with a stack requested via ?error=stack"),
}


async def health(request: Request) -> Response:
    """``GET /health``; ``?error=…`` answers with an error body on purpose (client tests)."""
    which = request.query_params.get("error")
    if which:
        if which not in _HEALTH_ERRORS:
            raise ApiError(400, f"Unknown test error '{which}': expected one of {', '.join(_HEALTH_ERRORS)}")
        status, message = _HEALTH_ERRORS[which]
        stack: list[dict[str, Any]] = [{"error": message}]
        if which == "stack":
            stack.append({"error": "cause of the test error", "attachments": ["attachment"]})
        raise ApiError(status, message, stack=stack)
    rt = runtime_of(request)
    return JSONResponse({"status": "healthy", "timestamp": now_iso(), "version": rt.settings.version})


async def components(request: Request) -> Response:
    include = query_bool(request, "includeSchemas", True)
    out = []
    for comp in runtime_of(request).gw.components():
        entry = comp.to_json()
        if not include:
            entry.pop("input_schema", None)
            entry.pop("output_schema", None)
        out.append(entry)
    return JSONResponse({"components": out})


# -- flows ----------------------------------------------------------------------------------------
async def store_flow(request: Request) -> Response:
    rt = runtime_of(request)
    body = await store_flow_body(request, rt.settings.max_body_bytes)
    try:
        loaded = parse_flow(body.flow)
    except FlowLoadError as exc:
        where = f" at {exc.json_path.replace('$', '$.flow', 1)}" if exc.json_path else ""
        raise ApiError(
            422, f"Failed to deserialize the JSON body into the target type: flow{where}: {exc.message}"
        ) from None
    flow = loaded.flow
    diags = loaded.diagnostics + rt.gw.validate(flow)
    summary = summarize(diags)
    stored = not body.dry_run and summary["numFatal"] == 0
    if stored:
        await rt.gw.store_flow(flow)
        if rt.catalogue is not None:
            await rt.catalogue.add(flow)
    return JSONResponse({"flowId": flow.flow_id, "stored": stored, "diagnostics": summary})


async def _load_flow(rt: ServerRuntime, flow_id: str) -> Any:
    flow = await rt.gw.get_flow(flow_id)
    if flow is None:
        raise ApiError(404, f"Workflow '{flow_id}' not found")
    return flow


def _all_examples(flow: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [e for e in (flow.examples or []) if isinstance(e, dict)]
    used = {e.get("name") for e in out}
    cases = flow.test.get("cases") if isinstance(flow.test, dict) else None
    for case in cases or []:
        if not isinstance(case, dict) or case.get("name") in used:
            continue
        ex: dict[str, Any] = {"name": case.get("name")}
        if case.get("description") is not None:
            ex["description"] = case["description"]
        ex["input"] = case.get("input")
        out.append(ex)
    return out


async def get_flow(request: Request) -> Response:
    rt = runtime_of(request)
    flow = await _load_flow(rt, request.path_params["flow_id"])
    out: dict[str, Any] = {"flow": flow.to_json(), "flowId": flow.flow_id}
    examples = _all_examples(flow)
    if examples:
        out["allExamples"] = examples
    return JSONResponse(out)


async def delete_flow(request: Request) -> Response:
    rt = runtime_of(request)
    flow_id = request.path_params["flow_id"]
    await _load_flow(rt, flow_id)
    active = any(h.record.flow_id == flow_id for h in rt.gw.live.values())
    if active or await rt.gw.store.runs_of_flow_active(flow_id):
        raise ApiError(409, f"Workflow '{flow_id}' has active runs and cannot be deleted")
    await rt.gw.store.delete_blob(flow_id)
    rt.gw.forget_flow(flow_id)
    if rt.catalogue is not None:
        await rt.catalogue.remove(flow_id)
    return Response(status_code=200)


# -- runs -----------------------------------------------------------------------------------------
async def create_run(request: Request) -> Response:
    rt = runtime_of(request)
    body = await create_run_body(request, rt.settings.max_body_bytes)
    flow = await _load_flow(rt, body.flow_id)
    out = await run_response(
        rt,
        flow,
        body.input,
        body.wait,
        variables=body.variables,
        overrides=body.overrides,
        max_concurrency=body.max_concurrency,
        timeout_secs=body.timeout_secs,
    )
    return JSONResponse(out)


async def run_response(
    rt: ServerRuntime,
    flow: Any,
    inputs: list[Any],
    wait: bool,
    *,
    variables: dict[str, Any] | None = None,
    overrides: Any = None,
    max_concurrency: int | None = None,
    timeout_secs: int | None = None,
) -> dict[str, Any]:
    """Start a run (and wait for it unless ``wait`` is false); the ``POST /runs`` answer.

    With ``wait`` and ``timeout_secs`` (upstream HEAD's ``timeoutSecs``) the run goes to the
    background and is waited for at most that long: a run still going is answered 200 with
    ``status: running`` and no result, as upstream does, and keeps running (never cancelled; read it
    later with ``GET /runs/{id}``). Without ``timeout_secs`` the run executes in this request's task.

    Shared by the handler above and the raw fast path (``fastpath.py``)."""
    bounded = wait and timeout_secs is not None
    started = await rt.start_run(
        flow,
        inputs,
        variables=variables,
        overrides=overrides,
        max_concurrency=max_concurrency,
        wait=wait and not bounded,
    )
    results: list[FlowResult | None] | list[FlowResult] | None
    if isinstance(started, RunRecord):
        rec, results = started, [i.result for i in started.items]
    else:
        if bounded:
            await _wait_done(started, timeout_secs)
        rec, results = started.record, started.results
    out: dict[str, Any] = {"runId": rec.run_id, "itemCount": len(rec.inputs)}
    if results is not None and len(results) == 1 and results[0] is not None:
        out["result"] = results[0].to_json()
    out["status"] = rec.status
    return out


async def _wait_done(handle: RunHandle, timeout_secs: float | None) -> bool:
    """Wait (bounded) for a live run to finish; whether it has. Never cancels the run."""
    with anyio.move_on_after(timeout_secs):
        await handle.done.wait()
    return handle.done.is_set()


def _query_timeout_secs(request: Request) -> int | None:
    raw = request.query_params.get("timeoutSecs")
    if raw is None or raw == "":
        return None
    value = plain_timeout_secs(raw)
    if value is NOT_PLAIN:
        raise ApiError(
            400, f"Query parameter 'timeoutSecs' must be a non-negative integer (seconds), got '{raw}'"
        )
    return value


async def list_runs(request: Request) -> Response:
    rt = runtime_of(request)
    status = request.query_params.get("status") or None
    if status is not None and status not in EXECUTION_STATUSES:
        raise ApiError(
            400, f"Query parameter 'status' must be one of {', '.join(EXECUTION_STATUSES)}, got '{status}'"
        )
    limit = query_int(request, "limit")
    flt = RunFilter(
        status=status,
        flow_name=request.query_params.get("flowName") or None,
        root_run_id=query_uuid(request, "rootRunId"),
        parent_run_id=query_uuid(request, "parentRunId"),
        max_depth=query_int(request, "maxDepth"),
        limit=DEFAULT_LIST_LIMIT if limit is None else limit,
        offset=query_int(request, "offset") or 0,
    )
    runs = []
    for rec in await rt.gw.store.list_runs(flt):
        handle = rt.gw.live.get(rec.run_id)
        if handle is not None:
            runs.append(run_summary(handle.record, [item_status(i.result) for i in handle.execution.items]))
        else:
            runs.append(run_summary(rec))
    return JSONResponse({"runs": runs})


async def get_run(request: Request) -> Response:
    """``RunDetails``; with ``?wait=true`` (upstream HEAD) after the run finishes or ``timeoutSecs``
    (default 300) pass, whichever is first. Still running then: answered as it stands (200)."""
    rt = runtime_of(request)
    run_id = path_run_id(request)
    wait = query_bool(request, "wait", False)
    timeout_secs = _query_timeout_secs(request)
    view = await rt.find_run(run_id)
    if wait and view.handle is not None and not view.handle.done.is_set():
        await _wait_done(view.handle, DEFAULT_WAIT_TIMEOUT_S if timeout_secs is None else timeout_secs)
        view = await rt.find_run(run_id)
    return JSONResponse(run_details(view.record, view.item_statuses()))


async def run_items(request: Request) -> Response:
    view = await runtime_of(request).find_run(path_run_id(request))
    rec = view.record
    n = len(rec.inputs)
    if view.handle is not None and view.handle.results is None:
        live = view.handle.execution.items
        items = []
        for i in range(n):
            result = live[i].result if i < len(live) else None
            items.append(item_json(i, item_status(result), result, None))
    else:
        by_index = {i.item_index: i for i in rec.items}
        items = [
            item_record_json(by_index[i]) if i in by_index else item_json(i, "running", None, None)
            for i in range(n)
        ]
    return JSONResponse({"itemCount": n, "items": items})


async def run_steps(request: Request) -> Response:
    rt = runtime_of(request)
    view = await rt.find_run(path_run_id(request))
    item = query_int(request, "item") or 0
    if item >= max(1, len(view.record.inputs)):
        raise ApiError(
            400,
            f"Run '{view.record.run_id}' has {len(view.record.inputs)} item(s); item {item} does not exist",
        )
    steps: dict[str, Any] = {}
    if view.handle is not None and view.handle.results is None:
        execution = view.handle.execution
        for it, idx, step, status, result, _s, _f in execution.step_states():
            if it == item:
                attempt = execution.items[it].attempts[idx]
                steps.setdefault(step.id, step_json(step.id, idx, step.component, status, result, attempt))
    else:
        for rec in await rt.gw.store.get_steps(view.record.run_id):
            if rec.item_index == item:
                steps.setdefault(rec.step_id, step_record_json(rec))
        flow = await rt.gw.get_flow(view.record.flow_id)
        if flow is not None:  # steps never reached (rejected or cancelled runs) are blocked
            for idx, step in enumerate(flow.steps):
                steps.setdefault(step.id, step_json(step.id, idx, step.component, "blocked", None))
    return JSONResponse({"steps": steps})


async def run_flow(request: Request) -> Response:
    rt = runtime_of(request)
    view = await rt.find_run(path_run_id(request))
    flow = view.handle.flow if view.handle is not None else await _load_flow(rt, view.record.flow_id)
    return JSONResponse({"flow": flow.to_json(), "flowId": flow.flow_id})


async def cancel_run(request: Request) -> Response:
    rt = runtime_of(request)
    run_id = path_run_id(request)
    view = await rt.find_run(run_id)
    handle: RunHandle | None = view.handle
    if handle is None or handle.done.is_set():
        raise ApiError(409, f"Run '{run_id}' cannot be cancelled (status: {view.record.status})")
    await rt.gw.cancel_run(run_id)
    with anyio.move_on_after(CANCEL_WAIT_S):
        await handle.done.wait()
    statuses = [i.status for i in handle.record.items] if handle.done.is_set() else None
    return JSONResponse(run_summary(handle.record, statuses or None))


async def delete_run(request: Request) -> Response:
    rt = runtime_of(request)
    run_id = path_run_id(request)
    view = await rt.find_run(run_id)
    if view.handle is not None or view.record.status == "running":
        raise ApiError(409, f"Execution '{run_id}' is still running and cannot be deleted")
    await rt.gw.store.delete_run(run_id)
    return Response(status_code=200)


# -- endpoints whose modules load on first use (not at server start) -----------------------------
async def run_events(request: Request) -> Response:
    """``GET /runs/{id}/events`` (``events.py``)."""
    from .events import run_events as endpoint

    return await endpoint(request)


async def openapi_json(request: Request) -> Response:
    """``GET /openapi.json`` (``openapi.py``; builds the document with pydantic on first call)."""
    from .openapi import openapi_json as endpoint

    return await endpoint(request)


async def docs_page(request: Request) -> Response:
    """``GET /docs`` (``openapi.py``)."""
    from .openapi import docs_page as endpoint

    return await endpoint(request)


def routes() -> list[Route]:
    """The ``/api/v1`` routes (relative to the mount point)."""
    return [
        Route("/health", health, methods=["GET"]),
        Route("/components", components, methods=["GET"]),
        Route("/flows", store_flow, methods=["POST"]),
        Route("/flows/{flow_id}", get_flow, methods=["GET"]),
        Route("/flows/{flow_id}", delete_flow, methods=["DELETE"]),
        Route("/runs", create_run, methods=["POST"]),
        Route("/runs", list_runs, methods=["GET"]),
        Route("/runs/{run_id}", get_run, methods=["GET"]),
        Route("/runs/{run_id}", delete_run, methods=["DELETE"]),
        Route("/runs/{run_id}/items", run_items, methods=["GET"]),
        Route("/runs/{run_id}/steps", run_steps, methods=["GET"]),
        Route("/runs/{run_id}/flow", run_flow, methods=["GET"]),
        Route("/runs/{run_id}/cancel", cancel_run, methods=["POST"]),
        Route("/runs/{run_id}/events", run_events, methods=["GET"]),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        Route("/docs", docs_page, methods=["GET"]),
    ]
