"""One MCP ``echo`` call through the MCP plugin vs. the same call made directly with ``mcp.Client``.

Both talk to the same kind of server (server-everything over stdio), call ``echo`` N times one
after the other (each call bounded by a timeout), and report mean and p50 latency in µs. The
difference is the plugin's own overhead: catalogue lookup, argument check, progress callback,
result mapping into a ``FlowResult``.

    .venv/bin/python benchmarks/mcp_direct.py [--calls 2000] [--warmup 200]

Needs the peers of ``scripts/setup.sh`` (``$PEERS`` or ``<repo>/.peers``).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from stepflow_gateway.plugins.base import ExecutionContext, PluginContext
from stepflow_gateway.plugins.mcp import McpPlugin, McpPluginConfig

REPO = Path(__file__).resolve().parent.parent
PEERS = Path(os.environ.get("PEERS") or REPO / ".peers")
EVERYTHING = (
    PEERS / "npm" / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
)
CALL_TIMEOUT_S = 10.0
"""Bound on each call: a stuck server fails the benchmark instead of hanging it."""


async def measure(call: Callable[[], Awaitable[object]], calls: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        with anyio.fail_after(CALL_TIMEOUT_S):
            await call()
    samples: list[float] = []
    for _ in range(calls):
        started = time.perf_counter()
        with anyio.fail_after(CALL_TIMEOUT_S):
            await call()
        samples.append((time.perf_counter() - started) * 1e6)
    return samples


def report(label: str, samples: list[float]) -> None:
    print(f"{label:<8} mean {statistics.fmean(samples):9.1f} µs   p50 {statistics.median(samples):9.1f} µs")


async def direct(calls: int, warmup: int) -> list[float]:
    params = StdioServerParameters(command="node", args=[str(EVERYTHING), "stdio"])
    with open(os.devnull, "w") as errlog:  # noqa: ASYNC230 - /dev/null never blocks
        # The deadline bounds connect + listing only; it is lifted before measuring (one scope
        # around the whole `async with`, as in the plugin's owner task).
        with anyio.CancelScope(deadline=anyio.current_time() + 60) as connect_scope:
            async with Client(stdio_client(params, errlog=errlog), mode="auto", cache=None) as client:
                await client.list_tools()
                connect_scope.deadline = math.inf
                return await measure(
                    lambda: client.call_tool("echo", {"message": "hi"}, read_timeout_seconds=30.0),
                    calls,
                    warmup,
                )
    sys.exit("could not connect to server-everything within 60 s")


async def via_plugin(calls: int, warmup: int) -> list[float]:
    config = McpPluginConfig.model_validate({"command": "node", "args": [str(EVERYTHING), "stdio"]})
    plugin = McpPlugin("everything", config)
    ctx = PluginContext("everything", REPO, None, dict(os.environ))  # type: ignore[arg-type]
    exec_ctx = ExecutionContext(None, "bench-run", "bench-flow", "echo")  # type: ignore[arg-type]
    with anyio.fail_after(60):
        await plugin.start(ctx)
    try:
        return await measure(lambda: plugin.execute("/echo", {"message": "hi"}, exec_ctx), calls, warmup)
    finally:
        await plugin.close()


async def main(calls: int, warmup: int) -> None:
    if not EVERYTHING.exists():
        sys.exit(f"server-everything not found at {EVERYTHING}; run scripts/setup.sh")
    print(f"echo over stdio, {calls} sequential calls after {warmup} warm-up calls")
    direct_samples = await direct(calls, warmup)
    plugin_samples = await via_plugin(calls, warmup)
    report("direct", direct_samples)
    report("plugin", plugin_samples)
    overhead = statistics.median(plugin_samples) - statistics.median(direct_samples)
    print(f"plugin overhead (p50 difference): {overhead:.1f} µs")


if __name__ == "__main__":
    import logging

    import structlog

    # Keep the plugin's info/debug lines off the terminal (library code never configures logging).
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()
    anyio.run(main, args.calls, args.warmup)
