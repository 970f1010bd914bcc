"""The pydantic models of the REST bodies (rest-api.md §2): the request models, which word every 422,
and the response models, which exist for the OpenAPI document (``openapi.py``) only.

Imported only when needed (pydantic costs ~130 ms of imports): by ``request_bodies.py`` for a body
that is not of the plain shape, and by ``openapi.py`` when the document is first asked for. Requests
are parsed with camelCase aliases, snake_case names also accepted, unknown keys ignored (as upstream
does). Responses themselves are built as plain dicts (``responses.py``).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ApiError

__all__ = [
    "CreateRunRequest",
    "CreateRunResponse",
    "ErrorResponse",
    "FlowResponse",
    "HealthResponse",
    "ListComponentsResponse",
    "ListItemsResponse",
    "ListRunsResponse",
    "ListStepRunsResponse",
    "RunDetails",
    "RunFlowResponse",
    "RunSummary",
    "StoreFlowRequest",
    "StoreFlowResponse",
    "validate_body",
]

_M = TypeVar("_M", bound=BaseModel)


class _Body(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")


# -- requests -------------------------------------------------------------------------------------
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
    timeout_secs: int | None = Field(
        None,
        alias="timeoutSecs",
        ge=0,
        le=2**64 - 1,
        description="With wait: answer after at most this many seconds; a run still going is answered "
        "with status running and no result, and keeps running. Absent: wait for the end. An integer "
        "or, as upstream writes a uint64, a string of digits.",
    )


def _loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc) or "body"


def validate_body(model: type[_M], value: Any) -> _M:
    """``value`` (a decoded JSON body) as ``model``, or a 422 naming the first problem's location."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ApiError(
            422,
            f"Failed to deserialize the JSON body into the target type: {_loc(first['loc'])}: {first['msg']}",
        ) from None


# -- responses (OpenAPI document only) ------------------------------------------------------------
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
