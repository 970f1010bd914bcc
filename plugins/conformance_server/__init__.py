"""The class-C companion server for upstream's conformance flows (conformance/upstream/SOURCE.md,
"Companion-server behaviour"), written with ``stepflow_gateway.sdk``.

Serves ``tests/http/*`` (``echo``, ``math``, ``process_list``, ``error_test``, ``data_analysis``,
``chain_processing``) and ``examples/loop-components/*`` (``counter_step``, ``double_value``,
``iterate``, ``map``). Run ``python -m conformance_server`` (stdio) or
``python -m conformance_server --http --port N`` from the ``plugins/`` directory.
"""

from __future__ import annotations

import math
import time
from typing import Any

from stepflow_gateway.sdk import ComponentServer, Context

server = ComponentServer("conformance_server")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@server.component
def echo(input: dict) -> dict:
    """Echo a message back with a timestamp."""
    return {"echo": f"Echo: {input.get('message', '')}", "timestamp": time.time()}


def math_op(input: dict) -> dict:
    """Float arithmetic: add, subtract, multiply, divide."""
    a, b, op = float(input["a"]), float(input["b"]), input.get("operation", "add")
    if op == "add":
        result = a + b
    elif op == "subtract":
        result = a - b
    elif op == "multiply":
        result = a * b
    elif op == "divide":
        if b == 0:
            raise ValueError("division by zero")
        result = a / b
    else:
        raise ValueError(f"unknown operation: {op}")
    return {"result": result, "operation_performed": f"{a} {op} {b} = {result}"}


server.add(math_op, name="/math")


@server.component
def process_list(input: dict) -> dict:
    """Prefix every item."""
    items = [f"{input.get('prefix', 'item')}_{item}" for item in input.get("items", [])]
    return {"processed_items": items, "count": len(items)}


@server.component
def error_test(input: dict) -> dict:
    """Raise for mode ``error`` / ``runtime_error``; succeed otherwise."""
    mode = input.get("mode")
    if mode == "error":
        raise ValueError(f"Component error: {input.get('message', '')}")
    if mode == "runtime_error":
        raise RuntimeError(f"Unexpected runtime error: {input.get('message', '')}")
    return {"result": "success"}


@server.component
async def data_analysis(input: dict, ctx: Context) -> dict:
    """Analyse numbers, store the analysis as a blob, return its id and a summary."""
    data = [float(x) for x in input.get("data", [])]
    kind = input.get("analysis_type", "statistics")
    n = len(data)
    mean = sum(data) / n if n else 0.0
    std = math.sqrt(sum((x - mean) ** 2 for x in data) / n) if n else 0.0
    if kind == "distribution":
        outliers = [x for x in data if std and abs(x - mean) > 2 * std]
        analysis = {
            "type": kind,
            "count": n,
            "outliers": outliers,
            "min": min(data, default=None),
            "max": max(data, default=None),
        }
        summary = f"Distribution analysis for {n} data points with {len(outliers)} outliers"
    else:
        analysis = {"type": kind, "count": n, "mean": mean, "std_dev": std}
        summary = f"Statistics for {n} data points: mean={mean:.2f}, std_dev={std:.2f}"
    blob_id = await ctx.put_blob(analysis)
    return {"analysis_blob_id": blob_id, "summary": summary}


def _apply(step: str, data: dict[str, Any]) -> dict[str, Any]:
    if step == "uppercase_strings":
        return {k: v.upper() if isinstance(v, str) else v for k, v in data.items()}
    if step == "multiply_numbers":
        return {k: v * 2 if _number(v) else v for k, v in data.items()}
    if step == "add_metadata":
        return {**data, "metadata": {"processed": True, "timestamp": time.time()}}
    raise ValueError(f"unknown processing step: {step}")


@server.component
async def chain_processing(input: dict, ctx: Context) -> dict:
    """Apply processing steps in order, storing each intermediate result as a blob."""
    data = dict(input.get("initial_data", {}))
    blob_ids = []
    for step in input.get("processing_steps", []):
        data = _apply(step, data)
        blob_ids.append(await ctx.put_blob({"step": step, "result": data}))
    return {"final_result": data, "intermediate_blob_ids": blob_ids}


@server.component
def counter_step(input: dict) -> dict:
    """One loop step: done when ``current >= target``, else the next state."""
    current, target = input["current"], input["target"]
    if current >= target:
        return {"result": f"Reached target {target}"}
    return {"next": {"current": current + 1, "target": target}}


@server.component
def double_value(input: dict) -> dict:
    """Double a number (always a float)."""
    return {"result": float(input["value"]) * 2}


@server.component
async def iterate(input: dict, ctx: Context) -> dict:
    """Evaluate a stored flow repeatedly until it returns ``result`` (or ``max_iterations``)."""
    state = input.get("initial_input")
    limit = int(input.get("max_iterations", 100))
    for iteration in range(1, limit + 1):
        output = await ctx.evaluate_flow(input["flow_id"], state)
        if isinstance(output, dict) and "result" in output:
            return {"result": output["result"], "iterations": iteration, "terminated": False}
        state = output.get("next") if isinstance(output, dict) else output
    return {"result": state, "iterations": limit, "terminated": True}


@server.component(name="/map")
async def map_items(input: dict, ctx: Context) -> dict:
    """Evaluate a stored flow once per item; return the plain results."""
    return {"results": [await ctx.evaluate_flow(input["flow_id"], item) for item in input.get("items", [])]}
