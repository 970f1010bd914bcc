"""Per-call overhead of the StepFlow HTTP plugin and the MCP plugin, measured in process (no REST).

A one-step flow runs through ``Gateway.run`` N times, routed to

* ``python``: the stepflow-py 0.9.2 self-launching HTTP worker (``.peers/sf092/bin/python
  /work/shared/bench/echo_server.py``; config with ``command``/``args`` and no ``transport``), component
  ``echo``;
* ``mcp``: MCP server-everything over stdio (``node .../server-everything/dist/index.js stdio``), tool
  ``echo``.

For each target and concurrency (default 1, 8, 32: an anyio task group with C workers sharing one bounded
counter) it reports runs/s and the gateway process's CPU per call (``time.process_time()``, this process
only: the component servers are not counted). Every call is bounded by ``fail_after``; every cell by a
count and a time limit.

    .venv/bin/python benchmarks/plugin_calls.py [--targets python,mcp] [--calls 3000] [--seconds 3]
        [--concurrency 1,8,32] [--rounds 1] [--profile OUT.prof] [--uvloop]

``--profile`` wraps the measured cells (not the start-up) in cProfile and writes the stats file.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio

from stepflow_gateway.config.load import parse_config
from stepflow_gateway.gateway import Gateway

REPO = Path(__file__).resolve().parent.parent
PEERS = Path(os.environ.get("PEERS") or REPO / ".peers")
BENCH = Path(os.environ.get("BENCH_DIR") or "/work/shared/bench")
SF_PYTHON = PEERS / "sf092" / "bin" / "python"
EVERYTHING = (
    PEERS / "npm" / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
)
CALL_TIMEOUT_S = 30.0
START_TIMEOUT_S = 90.0
WARMUP = 200

FLOWS: dict[str, dict[str, Any]] = {
    "python": {
        "name": "python-echo",
        "steps": [{"id": "echo", "component": "/python/echo", "input": {"$input": "$"}}],
        "output": {"$step": "echo"},
    },
    "mcp": {
        "name": "mcp-echo",
        "steps": [{"id": "echo", "component": "/mcp/echo", "input": {"message": {"$input": "data"}}}],
        "output": {"$step": "echo"},
    },
}


def config(targets: list[str]) -> Any:
    plugins: dict[str, Any] = {}
    routes: dict[str, Any] = {}
    if "python" in targets:
        plugins["python"] = {
            "type": "stepflow",
            "command": str(SF_PYTHON),
            "args": [str(BENCH / "echo_server.py")],
            "env": {"STEPFLOW_LOG_LEVEL": "WARNING"},
        }
        routes["/python/{component}"] = [{"plugin": "python"}]
    if "mcp" in targets:
        plugins["mcp"] = {"type": "mcp", "command": "node", "args": [str(EVERYTHING), "stdio"]}
        routes["/mcp/{component}"] = [{"plugin": "mcp"}]
    data = {"plugins": plugins, "routes": routes, "stateStore": {"type": "inMemory"}}
    return parse_config(data, source=None, working_dir=REPO).config


async def cell(
    gw: Gateway, flow: Any, calls: int, seconds: float, concurrency: int
) -> tuple[int, float, float]:
    """Run up to ``calls`` runs (or until ``seconds`` pass) with ``concurrency`` in flight.

    Returns (completed runs, wall seconds, CPU seconds of this process)."""
    remaining = [calls]
    done = [0]
    deadline = time.perf_counter() + seconds
    payload = {"data": "bench"}

    async def worker() -> None:
        while remaining[0] > 0 and time.perf_counter() < deadline:
            remaining[0] -= 1
            with anyio.fail_after(CALL_TIMEOUT_S):
                result = await gw.run(flow, payload)
            if result.outcome != "success":
                raise SystemExit(f"run failed: {result}")
            done[0] += 1

    cpu0, wall0 = time.process_time(), time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(concurrency):
            tg.start_soon(worker)
    return done[0], time.perf_counter() - wall0, time.process_time() - cpu0


async def main(args: argparse.Namespace) -> None:
    targets = [t for t in args.targets.split(",") if t]
    levels = [int(c) for c in args.concurrency.split(",")]
    for t in targets:
        if t not in FLOWS:
            sys.exit(f"unknown target {t!r}; known: {', '.join(FLOWS)}")
    if "python" in targets and not SF_PYTHON.exists():
        sys.exit(f"missing {SF_PYTHON} (run scripts/setup.sh)")
    if "mcp" in targets and not EVERYTHING.exists():
        sys.exit(f"missing {EVERYTHING} (run scripts/setup.sh)")
    profiler = cProfile.Profile() if args.profile else None
    results: dict[tuple[str, int], list[tuple[float, float]]] = {}
    # The deadline bounds start-up only; it is lifted before measuring (the plugins' task groups live
    # inside this scope, so it must wrap the whole ``async with``).
    with anyio.CancelScope(deadline=anyio.current_time() + START_TIMEOUT_S) as start_scope:
        async with Gateway(config(targets)) as gw:
            start_scope.deadline = float("inf")
            flows = {t: gw.load(FLOWS[t]) for t in targets}
            for t in targets:  # warm-up: connections, plan cache
                await cell(gw, flows[t], WARMUP, 30.0, 8)
            for _ in range(args.rounds):
                for t in targets:
                    for c in levels:
                        if profiler:
                            profiler.enable()
                        n, wall, cpu = await cell(gw, flows[t], args.calls, args.seconds, c)
                        if profiler:
                            profiler.disable()
                        results.setdefault((t, c), []).append((n / wall, cpu / n * 1e6))
                        print(
                            f"  {t:<7} c={c:<3} {n:6d} runs  {n / wall:8.0f} runs/s  "
                            f"{cpu / n * 1e6:7.0f} µs CPU/run",
                            file=sys.stderr,
                        )
            start_scope.deadline = anyio.current_time() + 60  # bounded shutdown
    if start_scope.cancelled_caught:
        sys.exit("gateway did not start (or stop) in time")
    print(f"{'target':<8} {'c':>3} {'runs/s (median, min-max)':>28} {'CPU µs/run (median)':>20}")
    for (t, c), rows in results.items():
        rates = [r for r, _ in rows]
        cpus = [u for _, u in rows]
        print(
            f"{t:<8} {c:>3} {statistics.median(rates):10.0f} ({min(rates):.0f}-{max(rates):.0f})"
            f"{statistics.median(cpus):>20.0f}"
        )
    if profiler:
        profiler.dump_stats(args.profile)
        print(f"profile written to {args.profile}", file=sys.stderr)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", default="python,mcp")
    p.add_argument("--calls", type=int, default=3000, help="runs per cell at most")
    p.add_argument("--seconds", type=float, default=3.0, help="time per cell at most")
    p.add_argument("--concurrency", default="1,8,32")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--profile", default=None, metavar="OUT.prof")
    p.add_argument("--uvloop", action="store_true", help="run on uvloop (as `serve` does)")
    ns = p.parse_args()
    anyio.run(main, ns, backend_options={"use_uvloop": ns.uvloop})
