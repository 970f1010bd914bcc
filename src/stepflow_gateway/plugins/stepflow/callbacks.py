"""Owns the answers to component → runtime calls (protocol.md §4): ``blobs/put``, ``blobs/get``,
``runs/submit``, ``runs/get`` (G1/G2) and the stepflow-py 0.7 methods ``flows/evaluate``,
``flows/get_metadata``, ``flows/submit_batch`` and ``flows/get_batch`` (G0), through the
:class:`~stepflow_gateway.plugins.base.RuntimeAPI`.

Errors use upstream's codes and messages (protocol.md §4, "Error responses sent by the gateway").
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from ...core.result import FlowResult
from ...errors import GatewayError, RunNotFound
from ...protocol.jsonrpc import METHOD_NOT_FOUND, RpcError
from ...protocol.messages import (
    BlobsGetParams,
    BlobsPutParams,
    FlowsEvaluateParams,
    FlowsGetBatchParams,
    FlowsGetMetadataParams,
    FlowsSubmitBatchParams,
    Method,
    RunsGetParams,
    RunsSubmitParams,
)
from ..base import ExecutionContext, RunInfo, RuntimeAPI

__all__ = ["CallbackHandler", "run_status_json"]

log = structlog.get_logger(__name__)

GENERIC = -32000
NOT_FOUND = -32011
INVALID_VALUE = -32012


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _item_status(result: FlowResult | None) -> str:
    if result is None:
        return "running"
    return "failed" if result.outcome == "failed" else "completed"


def run_status_json(info: RunInfo, *, include_results: bool, by_completion: bool = False) -> dict[str, Any]:
    """``RunStatusProtocol`` (camelCase) of a run (protocol.md §3.1)."""
    statuses = [_item_status(r) for r in info.results]
    out: dict[str, Any] = {
        "runId": info.run_id,
        "flowId": info.flow_id,
        "status": info.status,
        "items": {
            "total": len(info.results),
            "completed": statuses.count("completed"),
            "running": statuses.count("running"),
            "failed": statuses.count("failed"),
            "cancelled": 0,
        },
        "createdAt": info.created_at or _now(),
    }
    if info.completed_at:
        out["completedAt"] = info.completed_at
    if include_results:
        items = []
        for index, (result, status) in enumerate(zip(info.results, statuses, strict=True)):
            item: dict[str, Any] = {"itemIndex": index, "status": status}
            if result is not None:
                item["result"] = result.to_json()
                if info.completed_at:
                    item["completedAt"] = info.completed_at
            items.append(item)
        if by_completion:
            # Finished items first (their relative order is the best completion order we know).
            items.sort(key=lambda i: i["status"] == "running")
        out["results"] = items
    return out


def _batch_details(info: RunInfo) -> dict[str, Any]:
    statuses = [_item_status(r) for r in info.results]
    details: dict[str, Any] = {
        "batch_id": info.run_id,
        "flow_id": info.flow_id,
        "total_runs": len(info.results),
        "status": "cancelled" if info.status == "cancelled" else "running",
        "created_at": info.created_at or _now(),
        "completed_runs": statuses.count("completed"),
        "running_runs": statuses.count("running"),
        "failed_runs": statuses.count("failed"),
        "cancelled_runs": 0,
        "paused_runs": 0,
    }
    if info.completed_at:
        details["completed_at"] = info.completed_at
    return details


def _flow_error(exc: GatewayError, flow_id: str) -> RpcError:
    if isinstance(exc, RunNotFound):
        return RpcError(NOT_FOUND, str(exc.message))
    if exc.code == 404:
        return RpcError(NOT_FOUND, f"Not found: flow with ID '{flow_id}'")
    if "not a flow" in exc.message.lower() or "invalid flow" in exc.message.lower():
        return RpcError(GENERIC, "Invalid flow blob")
    return RpcError(GENERIC, exc.message)


class CallbackHandler:
    """Serves callbacks for one plugin.

    ``find_context(observability)`` maps the ``observability`` a callback carries to the
    :class:`ExecutionContext` of the execute it belongs to (used as the parent of nested runs);
    over HTTP/SSE the context is known exactly and passed to :meth:`handle` instead.
    """

    def __init__(
        self,
        runtime: RuntimeAPI,
        *,
        plugin: str,
        find_context: Callable[[Any], ExecutionContext | None] | None = None,
    ) -> None:
        self.runtime = runtime
        self.plugin = plugin
        self._find_context = find_context
        self._table = {
            Method.BLOBS_PUT: self._blobs_put,
            Method.BLOBS_GET: self._blobs_get,
            Method.RUNS_SUBMIT: self._runs_submit,
            Method.RUNS_GET: self._runs_get,
            Method.FLOWS_EVALUATE: self._flows_evaluate,
            Method.FLOWS_GET_METADATA: self._flows_get_metadata,
            Method.FLOWS_SUBMIT_BATCH: self._flows_submit_batch,
            Method.FLOWS_GET_BATCH: self._flows_get_batch,
        }

    async def __call__(self, method: str, params: Any) -> Any:
        """The Peer handler form (no execution context known)."""
        return await self.handle(method, params, None)

    async def handle(self, method: str, params: Any, ctx: ExecutionContext | None) -> Any:
        """Answer one callback. Raises ``RpcError`` (and ``ValidationError`` for bad params)."""
        fn = self._table.get(method)
        if fn is None:
            raise RpcError(METHOD_NOT_FOUND, f"Method not found: '{method}'")
        if ctx is None and self._find_context is not None and isinstance(params, dict):
            ctx = self._find_context(params.get("observability"))
        return await fn(params, ctx)

    async def _blobs_put(self, params: Any, ctx: ExecutionContext | None) -> Any:
        p = BlobsPutParams.model_validate(params)
        try:
            blob_id = await self.runtime.put_blob(p.data, p.blob_type)
        except GatewayError as exc:
            log.info("blobs/put failed", plugin=self.plugin, error=str(exc))
            raise RpcError(GENERIC, "Failed to put blob", {"reason": exc.message}) from exc
        return {"blob_id": blob_id}

    async def _blobs_get(self, params: Any, ctx: ExecutionContext | None) -> Any:
        p = BlobsGetParams.model_validate(params)
        try:
            data, blob_type = await self.runtime.get_blob(p.blob_id)
        except GatewayError as exc:
            log.info("blobs/get failed", plugin=self.plugin, blob_id=p.blob_id, error=str(exc))
            raise RpcError(GENERIC, "Failed to get blob", {"reason": exc.message}) from exc
        return {"data": data, "blob_type": blob_type}

    async def _runs_submit(self, params: Any, ctx: ExecutionContext | None) -> Any:
        p = RunsSubmitParams.model_validate(params)
        try:
            info = await self.runtime.submit_run(
                p.flow_id,
                p.inputs,
                wait=p.wait,
                max_concurrency=p.max_concurrency,
                overrides=p.overrides,
                parent=ctx,
            )
        except GatewayError as exc:
            raise _flow_error(exc, p.flow_id) from exc
        return run_status_json(info, include_results=p.wait)

    async def _runs_get(self, params: Any, ctx: ExecutionContext | None) -> Any:
        p = RunsGetParams.model_validate(params)
        if not _is_uuid(p.run_id):
            raise RpcError(INVALID_VALUE, "Invalid value for field 'run_id': expected valid UUID")
        try:
            info = await self.runtime.get_run(p.run_id, wait=p.wait)
        except GatewayError as exc:
            raise RpcError(NOT_FOUND, f"Not found: run with ID '{p.run_id}'") from exc
        return run_status_json(
            info, include_results=p.include_results, by_completion=p.result_order == "by_completion"
        )

    async def _flows_evaluate(self, params: Any, ctx: ExecutionContext | None) -> Any:
        p = FlowsEvaluateParams.model_validate(params)
        try:
            info = await self.runtime.submit_run(p.flow_id, [p.input], wait=True, parent=ctx)
        except GatewayError as exc:
            err = _flow_error(exc, p.flow_id)
            if err.code == GENERIC and err.message != "Invalid flow blob":
                err = RpcError(GENERIC, "Failed to evaluate flow", {"reason": exc.message})
            raise err from exc
        result = info.results[0] if info.results else None
        if result is None:
            raise RpcError(GENERIC, "Failed to evaluate flow")
        return {"result": result.to_json()}

    async def _flows_get_metadata(self, params: Any, ctx: ExecutionContext | None) -> Any:
        p = FlowsGetMetadataParams.model_validate(params)
        try:
            meta = await self.runtime.flow_metadata(p.flow_id, p.step_id)
        except GatewayError as exc:
            if exc.code == 404 and p.step_id is not None and "step" in exc.message.lower():
                raise RpcError(NOT_FOUND, f"Not found: step with ID '{p.step_id}'") from exc
            raise _flow_error(exc, p.flow_id) from exc
        out: dict[str, Any] = {"flow_metadata": meta.get("flow_metadata", {})}
        if meta.get("step_metadata") is not None:
            out["step_metadata"] = meta["step_metadata"]
        return out

    async def _flows_submit_batch(self, params: Any, ctx: ExecutionContext | None) -> Any:
        p = FlowsSubmitBatchParams.model_validate(params)
        try:
            info = await self.runtime.submit_run(
                p.flow_id, p.inputs, wait=False, max_concurrency=p.max_concurrency, parent=ctx
            )
        except GatewayError as exc:
            raise _flow_error(exc, p.flow_id) from exc
        return {"batch_id": info.run_id, "total_runs": len(p.inputs)}

    async def _flows_get_batch(self, params: Any, ctx: ExecutionContext | None) -> Any:
        p = FlowsGetBatchParams.model_validate(params)
        try:
            info = await self.runtime.get_run(p.batch_id, wait=bool(p.wait))
        except GatewayError as exc:
            raise RpcError(NOT_FOUND, f"Not found: batch with ID '{p.batch_id}'") from exc
        out: dict[str, Any] = {"details": _batch_details(info)}
        if p.include_results:
            out["outputs"] = [
                {"batch_input_index": i, "status": _item_status(r), **({"result": r.to_json()} if r else {})}
                for i, r in enumerate(info.results)
            ]
        return out


def _is_uuid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
