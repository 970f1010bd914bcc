"""``/eval``, ``/map`` and ``/iterate`` (builtins.md §5–7): nested runs through the runtime.

Each nested run goes through ``ctx.runtime.submit_run`` (validation, own run id, parent recorded,
no variables and no overrides from the parent). Inline flows (``map.workflow``, ``iterate.flow``) are
first stored with ``put_blob(flow, "flow")``, which validates them and yields their flow id.
"""

from __future__ import annotations

from typing import Any

from ...core.result import FlowResult
from ...errors import GatewayError
from ..base import ExecutionContext, RunInfo
from ._errors import (
    builtin_error,
    describe,
    expect_object,
    invalid_input,
    optional_int,
    require,
    require_str,
)
from .blobs import check_blob_id

__all__ = ["eval_flow", "iterate_flow", "map_flow"]

DEFAULT_MAX_ITERATIONS = 1000
"""builtins.md §7: the default bound of ``/iterate``, as upstream."""

NOT_RESULT_OR_NEXT = "Workflow result must contain either 'result' or 'next' field"
ITERATION_SKIPPED = "Workflow cannot be skipped during iteration"


async def eval_flow(input: Any, ctx: ExecutionContext) -> FlowResult:
    """``{flow_id, input}`` → ``{result: FlowResult, run_id: <calling run id>}``.

    Succeeds whenever the nested run could be started: a nested failure is reported in ``result``.
    """
    obj = expect_object(input)
    flow_id = require_str(obj, "flow_id")
    flow_input = require(obj, "input")
    check_blob_id(flow_id)
    try:
        _data, blob_type = await ctx.runtime.get_blob(flow_id)
    except GatewayError as exc:
        raise builtin_error("internal error", f"flow {flow_id} could not be read: {exc}") from exc
    if blob_type != "flow":
        raise invalid_input(f"blob {flow_id} holds {blob_type!r} data, not a flow")
    info = await _run(ctx, flow_id, [flow_input], None)
    return FlowResult.success({"result": info.results[0].to_json(), "run_id": ctx.run_id})  # type: ignore[union-attr]


async def map_flow(input: Any, ctx: ExecutionContext) -> FlowResult:
    """``{workflow, items, max_concurrency?}`` → ``{results, successful, failed[, skipped]}``.

    All items run as one nested batch run, results in item order. ``skipped`` is added only when
    some result was skipped (upstream has no such counter).
    """
    obj = expect_object(input)
    workflow = _flow_object(require(obj, "workflow"))
    items = require(obj, "items")
    if items.__class__ is not list:
        raise invalid_input(f"invalid type: {describe(items)}, expected a sequence")
    max_concurrency = optional_int(obj, "max_concurrency")
    # Store (and so validate) the flow even when there are no items: an invalid flow is an error
    # whatever the items, as upstream, where the input parse fails first.
    flow_id = await _put_flow(ctx, workflow)
    if not items:
        return FlowResult.success({"results": [], "successful": 0, "failed": 0})
    info = await _run(ctx, flow_id, items, max_concurrency or len(items))
    results = []
    successful = failed = skipped = 0
    for r in info.results:
        assert r is not None  # _run checked
        outcome = r.outcome
        if outcome == "success":
            successful += 1
        elif outcome == "failed":
            failed += 1
        else:
            skipped += 1
        results.append(r.to_json())
    out: dict[str, Any] = {"results": results, "successful": successful, "failed": failed}
    if skipped:
        out["skipped"] = skipped
    return FlowResult.success(out)


async def iterate_flow(input: Any, ctx: ExecutionContext) -> FlowResult:
    """``{flow, initial_input, max_iterations?}`` → ``{result, iterations, terminated}``.

    Runs ``flow`` (one nested run per iteration) until its output has ``result``; ``next`` becomes
    the next input. A nested failure is returned as the step's failure.
    """
    obj = expect_object(input)
    flow = _flow_object(require(obj, "flow"))
    current = require(obj, "initial_input")
    max_iterations = optional_int(obj, "max_iterations")
    if max_iterations is None:
        max_iterations = DEFAULT_MAX_ITERATIONS
    flow_id = await _put_flow(ctx, flow)
    iterations = 0
    while True:
        if iterations >= max_iterations:
            return FlowResult.success({"result": current, "iterations": iterations, "terminated": True})
        info = await _run(ctx, flow_id, [current], None)
        result = info.results[0]
        assert result is not None  # _run checked
        iterations += 1
        if result.outcome == "failed":
            return result
        if result.outcome == "skipped":
            return FlowResult.failed(400, ITERATION_SKIPPED)
        output = result.result
        if isinstance(output, dict):
            # ``result`` wins over ``next`` when both are present.
            if "result" in output:
                return FlowResult.success(
                    {"result": output["result"], "iterations": iterations, "terminated": False}
                )
            if "next" in output:
                current = output["next"]
                continue
        return FlowResult.failed(400, NOT_RESULT_OR_NEXT)


def _flow_object(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    raise invalid_input(f"invalid type: {describe(value)}, expected a flow object")


async def _put_flow(ctx: ExecutionContext, flow: dict[str, Any]) -> str:
    """Store an inline flow as a ``flow`` blob; an invalid flow is an ``invalid input`` error."""
    try:
        return await ctx.runtime.put_blob(flow, "flow")
    except GatewayError as exc:
        raise invalid_input(f"invalid flow: {exc}") from exc


async def _run(
    ctx: ExecutionContext, flow_id: str, inputs: list[Any], max_concurrency: int | None
) -> RunInfo:
    """Submit a nested run and wait for it; every item must have a result."""
    try:
        info = await ctx.runtime.submit_run(
            flow_id, inputs, wait=True, max_concurrency=max_concurrency, parent=ctx
        )
    except GatewayError as exc:
        raise builtin_error("internal error", f"nested run of flow {flow_id} failed: {exc}") from exc
    results = info.results
    if len(results) != len(inputs) or any(r is None for r in results):
        raise builtin_error(
            "internal error",
            f"nested run {info.run_id} of flow {flow_id} ended with status {info.status!r} "
            f"before all {len(inputs)} item(s) finished",
        )
    return info
