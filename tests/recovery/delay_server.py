"""The recovery tests' component server: ``/delay`` (upstream's ``/test/delay``) that records itself.

    python delay_server.py stepflow          # StepFlow over stdio (stepflow_gateway.sdk)
    python delay_server.py stepflow --http   # StepFlow over HTTP, a self-launching worker
    python delay_server.py mcp               # an MCP stdio server (mcp SDK) with a ``delay`` tool

``/delay`` takes ``{seconds, step_label, payload}`` (``seconds`` may be fractional) and returns
``{step_label, payload}``. The StepFlow server also has ``/nested``: it runs a stored flow through
the ``runs/submit`` callback, after a pause that depends on its ``attempt``.

Every execution appends one JSON line when it starts, and one when it ends (or is cancelled), to
the file named by ``$RECOVERY_RECORD``; the process appends a ``boot`` line when it starts. Each
line is written with a single ``write`` on an ``O_APPEND`` descriptor, so lines from several
processes (the killed gateway's servers and the restarted one's) never mix.

A line: ``{"ev": "boot"|"start"|"end"|"cancel", "pid", "ppid", "t", "transport", "run_id",
"step_id", "attempt", "label", "idem"}`` (``run_id``/``step_id``/``attempt`` come from the StepFlow
execution context; MCP calls have none of them, but ``idem`` is their ``_meta``
``io.stepflow/idempotency-key`` when the gateway sends one).
"""

import json
import os
import sys
import time
from typing import Any

import anyio
from pydantic import BaseModel

RECORD = os.environ.get("RECOVERY_RECORD", "")
IDEMPOTENCY_KEY = "io.stepflow/idempotency-key"


def record(ev: str, transport: str, **fields: Any) -> None:
    if not RECORD:
        return
    line = {"ev": ev, "pid": os.getpid(), "ppid": os.getppid(), "t": time.time(), "transport": transport}
    line.update(fields)
    data = (json.dumps(line, separators=(",", ":")) + "\n").encode()
    fd = os.open(RECORD, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


async def delay(transport: str, seconds: float, step_label: str, payload: Any, **ids: Any) -> dict[str, Any]:
    record("start", transport, label=step_label, seconds=seconds, **ids)
    try:
        await anyio.sleep(float(seconds))
    except anyio.get_cancelled_exc_class():
        record("cancel", transport, label=step_label, **ids)
        raise
    record("end", transport, label=step_label, **ids)
    return {"step_label": step_label, "payload": payload}


class DelayIn(BaseModel):
    seconds: float
    step_label: str
    payload: Any = None


class NestedIn(BaseModel):
    flow_id: str
    input: Any = None
    pause: list[float] = []


def stepflow_main(argv: list[str]) -> None:
    from stepflow_gateway.sdk import ComponentServer, Context

    transport = "stepflow-http" if "--http" in argv else "stepflow-stdio"
    server = ComponentServer("recovery-delay")

    @server.component(name="/delay")
    async def delay_component(input: DelayIn, ctx: Context) -> dict:
        return await delay(
            transport,
            input.seconds,
            input.step_label,
            input.payload,
            run_id=ctx.run_id,
            step_id=ctx.step_id,
            attempt=ctx.attempt,
        )

    @server.component(name="/nested")
    async def nested_component(input: NestedIn, ctx: Context) -> Any:
        """Pause (``pause[attempt - 1]`` seconds), then run the stored flow ``flow_id`` on
        ``input`` as a nested run (``runs/submit`` callback) and return its result."""
        ids = {"run_id": ctx.run_id, "step_id": ctx.step_id, "attempt": ctx.attempt}
        label = f"nested:{input.input.get('label') if isinstance(input.input, dict) else input.input}"
        record("start", transport, label=label, **ids)
        if ctx.attempt <= len(input.pause):
            await anyio.sleep(input.pause[ctx.attempt - 1])
        result = await ctx.evaluate_flow(input.flow_id, input.input)
        record("end", transport, label=label, **ids)
        return result

    record("boot", transport)
    server.run(argv)


def _meta_of(ctx: Any) -> dict[str, Any]:
    """The request's ``_meta`` as a dict, whichever shape this mcp SDK version gives it."""
    try:
        rc = ctx.request_context
    except ValueError:
        return {}
    meta = getattr(rc, "meta", None)
    if meta is not None:
        if hasattr(meta, "model_dump"):
            meta = meta.model_dump(by_alias=True, exclude_none=True)
        if isinstance(meta, dict) and meta:
            return meta
    params = getattr(rc, "params", None)
    if isinstance(params, dict) and isinstance(params.get("_meta"), dict):
        return params["_meta"]
    return {}


def mcp_main() -> None:
    from mcp.server.mcpserver import Context, MCPServer

    server = MCPServer("recovery-delay", version="0.0.1")

    @server.tool(name="delay")
    async def delay_tool(
        seconds: float, step_label: str, ctx: Context, payload: Any = None
    ) -> dict[str, Any]:
        """Sleep ``seconds``, then return ``{step_label, payload}``."""
        meta = _meta_of(ctx)
        return await delay("mcp", seconds, step_label, payload, idem=meta.get(IDEMPOTENCY_KEY))

    record("boot", "mcp")
    server.run()


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in ("stepflow", "mcp"):
        sys.exit("usage: delay_server.py stepflow [--http] | mcp")
    if sys.argv[1] == "mcp":
        mcp_main()
    else:
        stepflow_main(sys.argv[2:])
