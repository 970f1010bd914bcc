"""MCP ``echo`` over stdio: the bare ``mcp.Client`` vs. the MCP plugin on its two call paths.

Three ways to make the same call to server-everything (stdio), each on its own server process:

* ``client``: ``mcp.Client.call_tool`` straight (the SDK alone, no plugin);
* ``plugin-sdk``: ``McpPlugin.execute`` with the direct path switched off (every call through the
  SDK's ``call_tool``, as before ``_direct.py``);
* ``plugin``: ``McpPlugin.execute`` as shipped (handshake-era stdio: the direct path).

For each: sequential calls (mean and p50 latency in µs, calls/s) and ``--concurrency`` calls in
flight (calls/s), plus this process's CPU per call (``time.process_time()``; the server's CPU is
not counted). Every call is bounded by a timeout. ``--rounds`` repeats the three in turn (so load
from other processes hits them alike) and the table shows medians over rounds.

    .venv/bin/python benchmarks/mcp_direct.py [--calls 2000] [--warmup 200] [--concurrency 32]
        [--rounds 3] [--only client,plugin-sdk,plugin]

Needs the peers of ``scripts/setup.sh`` (``$PEERS`` or ``<repo>/.peers``).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
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
START_TIMEOUT_S = 60.0

Call = Callable[[], Awaitable[object]]
VARIANTS = ("client", "plugin-sdk", "plugin")


class Figures:
    """One round of one variant."""

    def __init__(self, samples: list[float], seq_cpu: float, par_rate: float, par_cpu: float) -> None:
        self.mean = statistics.fmean(samples)
        self.p50 = statistics.median(samples)
        self.seq_rate = 1e6 / self.mean
        self.seq_cpu = seq_cpu
        self.par_rate = par_rate
        self.par_cpu = par_cpu


async def measure(call: Call, calls: int, warmup: int, concurrency: int) -> Figures:
    for _ in range(warmup):
        with anyio.fail_after(CALL_TIMEOUT_S):
            await call()
    samples: list[float] = []
    cpu0 = time.process_time()
    for _ in range(calls):
        started = time.perf_counter()
        with anyio.fail_after(CALL_TIMEOUT_S):
            await call()
        samples.append((time.perf_counter() - started) * 1e6)
    seq_cpu = (time.process_time() - cpu0) / calls * 1e6

    remaining = [calls]

    async def worker() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            with anyio.fail_after(CALL_TIMEOUT_S):
                await call()

    cpu0, wall0 = time.process_time(), time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return Figures(samples, seq_cpu, calls / wall, cpu / calls * 1e6)


@asynccontextmanager
async def bare_client() -> AsyncIterator[Call]:
    params = StdioServerParameters(command="node", args=[str(EVERYTHING), "stdio"])
    with open(os.devnull, "w") as errlog:  # noqa: ASYNC230 - /dev/null never blocks
        # The deadline bounds connect + listing only; it is lifted before measuring (one scope
        # around the whole `async with`, as in the plugin's owner task).
        with anyio.CancelScope(deadline=anyio.current_time() + START_TIMEOUT_S) as connect_scope:
            async with Client(stdio_client(params, errlog=errlog), mode="auto", cache=None) as client:
                await client.list_tools()
                connect_scope.deadline = math.inf
                yield lambda: client.call_tool("echo", {"message": "hi"}, read_timeout_seconds=30.0)
                connect_scope.deadline = anyio.current_time() + 10  # bounded shutdown


@asynccontextmanager
async def plugin_calls(direct: bool) -> AsyncIterator[Call]:
    config = McpPluginConfig.model_validate({"command": "node", "args": [str(EVERYTHING), "stdio"]})
    plugin = McpPlugin("everything", config)
    ctx = PluginContext("everything", REPO, None, dict(os.environ))  # type: ignore[arg-type]
    exec_ctx = ExecutionContext(None, "bench-run", "bench-flow", "echo")  # type: ignore[arg-type]
    with anyio.fail_after(START_TIMEOUT_S):
        await plugin.start(ctx)
    try:
        conn = plugin._conn
        assert conn is not None
        if not direct:
            conn.direct = None  # every call through the SDK's call_tool
        elif conn.direct is None:
            sys.exit("the plugin did not enable its direct call path")
        yield lambda: plugin.execute("/echo", {"message": "hi"}, exec_ctx)
    finally:
        await plugin.close()


def opener(variant: str) -> Callable[[], AsyncIterator[Call]]:
    if variant == "client":
        return bare_client  # type: ignore[return-value]
    return lambda: plugin_calls(direct=variant == "plugin")  # type: ignore[return-value]


async def main(args: argparse.Namespace) -> None:
    if not EVERYTHING.exists():
        sys.exit(f"server-everything not found at {EVERYTHING}; run scripts/setup.sh")
    variants = [v for v in args.only.split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            sys.exit(f"unknown variant {v!r}; known: {', '.join(VARIANTS)}")
    print(
        f"echo over stdio: {args.calls} sequential calls, then {args.calls} with {args.concurrency} "
        f"in flight, after {args.warmup} warm-up calls; {args.rounds} round(s)",
        file=sys.stderr,
    )
    rounds: dict[str, list[Figures]] = {v: [] for v in variants}
    for r in range(args.rounds):
        for v in variants:
            async with opener(v)() as call:  # type: ignore[attr-defined]
                fig = await measure(call, args.calls, args.warmup, args.concurrency)
            rounds[v].append(fig)
            print(
                f"  round {r + 1} {v:<11} p50 {fig.p50:7.1f} µs  seq {fig.seq_rate:6.0f}/s "
                f"{fig.seq_cpu:5.0f} µs CPU   c={args.concurrency} {fig.par_rate:6.0f}/s "
                f"{fig.par_cpu:5.0f} µs CPU",
                file=sys.stderr,
            )
    med = statistics.median
    print(
        f"{'variant':<11} {'p50 µs':>8} {'seq/s':>7} {'seq CPU µs':>11} "
        f"{f'c={args.concurrency}/s':>8} {f'c={args.concurrency} CPU µs':>13}"
    )
    for v, figs in rounds.items():
        print(
            f"{v:<11} {med(f.p50 for f in figs):8.1f} {med(f.seq_rate for f in figs):7.0f} "
            f"{med(f.seq_cpu for f in figs):11.0f} {med(f.par_rate for f in figs):8.0f} "
            f"{med(f.par_cpu for f in figs):13.0f}"
        )


if __name__ == "__main__":
    import logging

    import structlog

    # Keep the plugin's info/debug lines off the terminal (library code never configures logging).
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=",".join(VARIANTS))
    anyio.run(main, parser.parse_args())
