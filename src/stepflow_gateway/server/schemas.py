"""REST bodies (rest-api.md §2): pydantic request models, response builders, and body parsing.

Requests are parsed at the edge with pydantic (camelCase aliases, unknown keys ignored as upstream
does). Responses are built as plain dicts by the small functions below: they are on the path of
every request and need no validation. The response *models* exist for the OpenAPI document only
(``openapi.py``).

``parse_body`` implements rest-api.md §1's body rules: malformed JSON → 400, wrong shape → 422, a
body over the size limit → 413, all with upstream's sentence ("Failed to deserialize the JSON body
into the target type: …") as the message.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request

from ..engine.result import FlowResult
from ..state.base import ItemRecord, RunRecord, StepRecord
from .errors import ApiError

__all__ = [
    "CreateRunRequest",
    "StoreFlowRequest",
    "item_json",
    "item_stats",
    "parse_body",
    "run_details",
    "run_summary",
    "step_json",
]

_M = TypeVar("_M", bound=BaseModel)

EXECUTION_STATUSES = ("running", "completed", "failed", "cancelled", "paused")


class _Body(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class StoreFlowRequest(_Body):
    """``POST /flows``."""

    flow: dict[str, Any] = Field(description="The flow (schema tag optional).")
    dry_run: bool = Field(False, alias="dryRun", description="Validate only; never store.")


class CreateRunRequest(_Body):
    """``POST /runs``."""

    flow_id: str = Field(alias="flowId", description="Id of a stored flow.")
    input: list[Any] = Field(description="One run item per element.")
    variables: dict[str, Any] | None = Field(None, description="Values for `$variable` references.")
    overrides: dict[str, Any] | None = Field(
        None, description="`{steps: {id: {value: …}}}` applied to every item."
    )
    max_concurrency: int | None = Field(
        None, alias="maxConcurrency", ge=1, description="Cap on step tasks in flight across items."
    )
    wait: bool = Field(True, description="[gw] false: answer at once with the run id (status running).")


# -- body parsing ---------------------------------------------------------------------------------
def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes (413) whatever Content-Length says."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"Request body is too large: {declared} bytes (limit {limit} bytes)")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"Request body is too large: more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "body"


async def parse_body(request: Request, model: type[_M], limit: int) -> _M:
    """Read, decode and validate a JSON body: 413 too large, 400 malformed, 422 wrong shape."""
    raw = await read_body(request, limit)
    try:
        value = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"Failed to parse the request body as JSON: {exc}") from None
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ApiError(
            422,
            f"Failed to deserialize the JSON body into the target type: {_loc(first['loc'])}: {first['msg']}",
        ) from None


# -- response builders ----------------------------------------------------------------------------
def item_stats(total: int, statuses: list[str]) -> dict[str, int]:
    """``ItemStatistics``: items not yet finished count as running."""
    completed = statuses.count("completed")
    failed = statuses.count("failed")
    cancelled = statuses.count("cancelled")
    return {
        "total": total,
        "completed": completed,
        "running": max(0, total - completed - failed - cancelled),
        "failed": failed,
        "cancelled": cancelled,
    }


def run_summary(rec: RunRecord, item_statuses: list[str] | None = None) -> dict[str, Any]:
    """``RunSummary``; ``item_statuses`` overrides the stored items (live runs)."""
    statuses = item_statuses if item_statuses is not None else [i.status for i in rec.items]
    out: dict[str, Any] = {"runId": rec.run_id, "flowId": rec.flow_id}
    if rec.flow_name is not None:
        out["flowName"] = rec.flow_name
    out["status"] = rec.status
    out["items"] = item_stats(len(rec.inputs), statuses)
    out["createdAt"] = rec.created_at
    if rec.completed_at is not None:
        out["completedAt"] = rec.completed_at
    out["rootRunId"] = rec.root_run_id or rec.run_id
    if rec.parent_run_id is not None:
        out["parentRunId"] = rec.parent_run_id
    return out


def run_details(rec: RunRecord, item_statuses: list[str] | None = None) -> dict[str, Any]:
    out = run_summary(rec, item_statuses)
    out["inputs"] = rec.inputs
    if rec.overrides is not None:
        out["overrides"] = rec.overrides
    if rec.variables is not None:
        out["variables"] = rec.variables
    return out


def item_status(result: FlowResult | None) -> str:
    if result is None:
        return "running"
    return "failed" if result.outcome == "failed" else "completed"


def item_json(index: int, status: str, result: FlowResult | None, completed_at: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"itemIndex": index, "status": status}
    if result is not None:
        out["result"] = result.to_json()
    if completed_at is not None:
        out["completedAt"] = completed_at
    return out


def item_record_json(item: ItemRecord) -> dict[str, Any]:
    return item_json(item.item_index, item.status, item.result, item.completed_at)


def step_json(
    step_id: str, step_index: int, component: str, status: str, result: FlowResult | None
) -> dict[str, Any]:
    """``StepRunResponse`` plus ``stepIndex`` (as at commit 2e155519)."""
    out: dict[str, Any] = {
        "stepId": step_id,
        "stepIndex": step_index,
        "component": component,
        "status": status,
    }
    if result is not None:
        out["result"] = result.to_json()
    return out


def step_record_json(rec: StepRecord) -> dict[str, Any]:
    return step_json(rec.step_id, rec.step_index, rec.component, rec.status, rec.result)


# -- response models (OpenAPI document only) ------------------------------------------------------
class Diagnostic(_Body):
    kind: str
    code: int
    level: str = Field(description="fatal | error | warning")
    formatted: str
    path: str
    data: Any = None
    experimental: bool | None = None


class Diagnostics(_Body):
    diagnostics: list[Diagnostic]
    num_fatal: int = Field(alias="numFatal")
    num_error: int = Field(alias="numError")
    num_warning: int = Field(alias="numWarning")


class StoreFlowResponse(_Body):
    flow_id: str = Field(alias="flowId")
    stored: bool
    diagnostics: Diagnostics


class FlowResponse(_Body):
    flow: dict[str, Any] = Field(description="The normalised flow (flow-format.md §13).")
    flow_id: str = Field(alias="flowId")
    all_examples: list[dict[str, Any]] | None = Field(None, alias="allExamples")


class FlowResultModel(_Body):
    outcome: str = Field(description="success | failed | skipped")
    result: Any = None
    error: dict[str, Any] | None = Field(None, description="{code, message, data?}")
    reason: str | None = None


class CreateRunResponse(_Body):
    run_id: str = Field(alias="runId")
    item_count: int = Field(alias="itemCount")
    result: FlowResultModel | None = Field(None, description="Present only when itemCount == 1 and finished.")
    status: str


class ItemStatistics(_Body):
    total: int
    completed: int
    running: int
    failed: int
    cancelled: int


class RunSummary(_Body):
    run_id: str = Field(alias="runId")
    flow_id: str = Field(alias="flowId")
    flow_name: str | None = Field(None, alias="flowName")
    status: str
    items: ItemStatistics
    created_at: str = Field(alias="createdAt")
    completed_at: str | None = Field(None, alias="completedAt")
    root_run_id: str = Field(alias="rootRunId")
    parent_run_id: str | None = Field(None, alias="parentRunId")


class RunDetails(RunSummary):
    inputs: list[Any]
    overrides: dict[str, Any] | None = None


class ListRunsResponse(_Body):
    runs: list[RunSummary]


class ItemResult(_Body):
    item_index: int = Field(alias="itemIndex")
    status: str
    result: FlowResultModel | None = None
    completed_at: str | None = Field(None, alias="completedAt")


class ListItemsResponse(_Body):
    item_count: int = Field(alias="itemCount")
    items: list[ItemResult]


class StepRunResponse(_Body):
    step_id: str = Field(alias="stepId")
    step_index: int = Field(alias="stepIndex")
    component: str
    status: str = Field(description="blocked | runnable | running | completed | skipped | failed")
    result: FlowResultModel | None = None


class ListStepRunsResponse(_Body):
    steps: dict[str, StepRunResponse]


class RunFlowResponse(_Body):
    flow: dict[str, Any]
    flow_id: str = Field(alias="flowId")


class HealthResponse(_Body):
    status: str
    timestamp: str
    version: str


class ListComponentsResponse(_Body):
    components: list[dict[str, Any]]


class ErrorResponse(_Body):
    code: int
    message: str
    stack: list[dict[str, Any]]
