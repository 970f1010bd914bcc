"""Owns the pydantic models of StepFlow's methods, their params and results (protocol.md §3–4).

Field names follow upstream's ``schemas/protocol.json``: snake_case everywhere except the ``runs/*``
params and ``RunStatusProtocol``, which are camelCase. Incoming params are validated with these
models at the edge (a failure becomes ``-32602 Invalid parameters``); the execute hot path works on
plain dicts and does not use them.

The gateway's transport-negotiation extension rides in optional fields that official peers ignore
(msgspec ignores unknown keys inside ``params``): :data:`OFFER_FIELD` in ``initialize`` params and
:data:`ACCEPT_FIELD` in its result.
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ACCEPT_FIELD",
    "OFFER_FIELD",
    "BlobsGetParams",
    "BlobsPutParams",
    "ComponentExecuteParams",
    "ComponentInfoModel",
    "FlowsEvaluateParams",
    "FlowsGetBatchParams",
    "FlowsGetMetadataParams",
    "FlowsSubmitBatchParams",
    "InitializeResult",
    "Method",
    "RunsGetParams",
    "RunsSubmitParams",
    "TransportAccept",
    "TransportOffer",
]


class Method:
    """Method names (runtime → component, then component → runtime)."""

    INITIALIZE = "initialize"
    INITIALIZED = "initialized"
    COMPONENTS_LIST = "components/list"
    COMPONENTS_INFO = "components/info"
    COMPONENTS_EXECUTE = "components/execute"
    BLOBS_PUT = "blobs/put"
    BLOBS_GET = "blobs/get"
    RUNS_SUBMIT = "runs/submit"
    RUNS_GET = "runs/get"
    FLOWS_EVALUATE = "flows/evaluate"
    FLOWS_GET_METADATA = "flows/get_metadata"
    FLOWS_SUBMIT_BATCH = "flows/submit_batch"
    FLOWS_GET_BATCH = "flows/get_batch"


OFFER_FIELD = "stepflow_gateway_transports"
"""``initialize`` params key carrying a list of :class:`TransportOffer` (ignored by official peers)."""
ACCEPT_FIELD: Final = "stepflow_gateway_transport"
"""``initialize`` result key carrying the :class:`TransportAccept` of a server that switched."""


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class TransportOffer(_Wire):
    """One transport the runtime offers: a Unix socket speaking length-prefixed frames."""

    kind: Literal["unix-frames"] = "unix-frames"
    path: str
    token: str
    """Sent back as the first frame so the runtime knows which child connected."""
    codecs: list[str]
    """Codec names the runtime can decode, best first."""


class TransportAccept(_Wire):
    """The server's choice: it has connected to ``path`` and will speak ``codec`` from now on."""

    kind: Literal["unix-frames"] = "unix-frames"
    codec: str


class InitializeResult(_Wire):
    server_protocol_version: int | None = None
    transport: TransportAccept | None = Field(default=None, alias=ACCEPT_FIELD)


class ComponentInfoModel(_Wire):
    component: str
    description: str | None = None
    input_schema: Any = None
    output_schema: Any = None


class ComponentExecuteParams(_Wire):
    component: str
    input: Any = None
    attempt: int = 1
    observability: dict[str, Any] | None = None


class BlobsPutParams(_Wire):
    data: Any = None
    blob_type: Literal["data", "flow"] = "data"
    observability: dict[str, Any] | None = None


class BlobsGetParams(_Wire):
    blob_id: str
    observability: dict[str, Any] | None = None


class RunsSubmitParams(_Wire):
    flow_id: str = Field(alias="flowId")
    inputs: list[Any]
    wait: bool = False
    max_concurrency: int | None = Field(default=None, alias="maxConcurrency")
    overrides: dict[str, Any] | None = None
    observability: dict[str, Any] | None = None


class RunsGetParams(_Wire):
    run_id: str = Field(alias="runId")
    wait: bool = False
    include_results: bool = Field(default=False, alias="includeResults")
    result_order: Literal["by_index", "by_completion"] = Field(default="by_index", alias="resultOrder")
    observability: dict[str, Any] | None = None


class FlowsEvaluateParams(_Wire):
    flow_id: str
    input: Any = None
    observability: dict[str, Any] | None = None


class FlowsGetMetadataParams(_Wire):
    flow_id: str
    step_id: str | None = None
    observability: dict[str, Any] | None = None


class FlowsSubmitBatchParams(_Wire):
    flow_id: str
    inputs: list[Any]
    max_concurrency: int | None = None
    observability: dict[str, Any] | None = None


class FlowsGetBatchParams(_Wire):
    batch_id: str
    wait: bool | None = False
    include_results: bool | None = False
    observability: dict[str, Any] | None = None
