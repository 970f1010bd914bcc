"""Per-step engine overhead: chains of N builtin steps run in process (no server, no I/O).

Each step is ``/builtin/create_messages`` fed the previous step's ``$.messages[0].content``, so every
step really executes. Reports wall time per run and µs per step for N = 1, 10, 100, 1000, 3000.

    .venv/bin/python benchmarks/chain_overhead.py [--repeat 5] [--sizes 1,10,100,1000,3000]

Upstream Rust reference (shared/bench/README.md, same machine class): about 22 µs/step at N=1000,
superlinear growth (N=3000: 214 ms).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import anyio

from stepflow_gateway.config.load import default_config
from stepflow_gateway.flow.load import parse_flow
from stepflow_gateway.gateway import Gateway


def chain_flow(n: int) -> dict:
    steps = [
        {"id": "s1", "component": "/builtin/create_messages", "input": {"user_prompt": {"$input": "data"}}}
    ]
    for i in range(2, n + 1):
        steps.append(
            {
                "id": f"s{i}",
                "component": "/builtin/create_messages",
                "input": {"user_prompt": {"$step": f"s{i - 1}", "path": "$.messages[0].content"}},
            }
        )
    return {"name": f"chain-{n}", "steps": steps, "output": {"$step": f"s{n}"}}


async def main(sizes: list[int], repeat: int) -> None:
    async with Gateway(default_config(Path.cwd())) as gw:
        print(f"{'N':>6} {'best ms':>10} {'median ms':>10} {'µs/step (best)':>15} {'µs/step (median)':>17}")
        for n in sizes:
            flow = parse_flow(chain_flow(n)).flow
            await gw.run(flow, {"data": "bench"})  # warm-up: plan, route cache
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                r = await gw.run(flow, {"data": "bench"}, check=False)
                times.append(time.perf_counter() - t0)
                assert r.outcome == "success", r
            best, med = min(times), statistics.median(times)
            per_best, per_med = best / n * 1e6, med / n * 1e6
            print(f"{n:>6} {best * 1e3:>10.2f} {med * 1e3:>10.2f} {per_best:>15.1f} {per_med:>17.1f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,10,100,1000,3000")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    anyio.run(main, [int(s) for s in a.sizes.split(",")], a.repeat)
