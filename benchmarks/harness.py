"""Side-by-side benchmark: stepflow-gateway vs the upstream Rust stepflow-server 0.9.0, one table.

    .venv/bin/python benchmarks/harness.py            # full profile, ~15 min → benchmarks/RESULTS.md
    .venv/bin/python benchmarks/harness.py --quick    # ~2 min → benchmarks/RESULTS.md (marked "quick")
    .venv/bin/python benchmarks/harness.py --smoke --output /tmp/smoke.md   # seconds (CI; no speed checks)

The process re-executes itself in a private network namespace (loopback only), starts both servers there
with the same config, drives them with the same bounded load client and writes a markdown table with the
ours/upstream ratio per cell. See benchmarks/README.md. The implementation is in ``sidebyside/``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shlex
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import structlog  # noqa: E402
from sidebyside import netns  # noqa: E402
from sidebyside.cells import Bench  # noqa: E402
from sidebyside.durable_report import carry_over  # noqa: E402
from sidebyside.flows import ALL_FLOWS  # noqa: E402
from sidebyside.machine import Pinning, describe, memory_guard_mib, pin_client  # noqa: E402
from sidebyside.profiles import PROFILES  # noqa: E402
from sidebyside.report import to_json, to_markdown  # noqa: E402
from sidebyside.results import Results  # noqa: E402
from sidebyside.servers import PORTS, RUNTIMES, Runtime, Tools, compile_gateway, write_configs  # noqa: E402

log = structlog.get_logger("sidebyside")


def _args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="~1-2 min profile")
    mode.add_argument("--smoke", action="store_true", help="seconds-long profile (CI)")
    ap.add_argument("--flows", help=f"comma-separated subset of: {', '.join(ALL_FLOWS)}")
    ap.add_argument("--memory-runs", type=int, help="runs for the 'RSS after N runs' cell (full: 50000)")
    ap.add_argument(
        "--flows-dir", type=Path, help="read <name>.json flows from here instead of building them"
    )
    ap.add_argument(
        "--output", type=Path, help="markdown report (default benchmarks/RESULTS.md; smoke: stdout)"
    )
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="profile our server with py-spy during each flow's cells (profiles in DIR)",
    )
    ap.add_argument(
        "--restart-above-mib",
        type=float,
        help="restart both servers between cells when either tree's RSS passes this (default: RAM/4, ≤ 4096)",
    )
    ap.add_argument("-v", "--verbose", action="store_true", help="log every cell on stderr")
    return ap.parse_args(argv)


def _loadavg() -> str:
    """1/5/15-minute load averages: other work on the machine shows up here (it skews every figure)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def main(argv: list[str]) -> int:
    a = _args(argv)
    tools = Tools.discover()
    missing = tools.missing()
    if missing:
        print("harness: missing prerequisites (run scripts/setup.sh): " + "; ".join(missing), file=sys.stderr)
        return 2
    netns.enter_or_reexec(Path(__file__).resolve())
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG if a.verbose else logging.INFO),
    )

    profile = PROFILES["smoke" if a.smoke else "quick" if a.quick else "full"]
    if a.flows:
        profile = profile.with_flows(tuple(f.strip() for f in a.flows.split(",") if f.strip()))
    if a.memory_runs:
        first = min(profile.memory_checkpoints[0], a.memory_runs)
        profile = replace(profile, memory_checkpoints=tuple(sorted({first, a.memory_runs})))
    pinning = Pinning.choose()
    pin_client(pinning)

    workdir = Path(tempfile.mkdtemp(prefix="sidebyside-"))
    configs = write_configs(tools, workdir)
    runtimes = {name: Runtime(name, PORTS[name], tools, pinning.server, workdir) for name in RUNTIMES}
    results = Results(profile.name, meta=describe(tools, pinning))
    guard = a.restart_above_mib or memory_guard_mib()
    results.meta["memory guard"] = (
        f"both servers restart between cells if either tree's RSS > {guard:,.0f} MiB"
    )
    results.meta["gateway bytecode"] = compile_gateway(tools)
    results.meta["load average at start"] = _loadavg()
    if a.py_spy:
        results.meta["profiled"] = (
            f"py-spy sampled our server (profiles in {a.py_spy}): its figures are inflated"
        )
    log.info("starting", profile=profile.name, flows=",".join(profile.flows), logs=str(workdir))
    asyncio.run(Bench(profile, runtimes, configs, results, a.flows_dir, a.py_spy, guard).run())

    results.meta["load average at end"] = _loadavg()
    command = "benchmarks/harness.py " + shlex.join(argv) if argv else "benchmarks/harness.py"
    text = to_markdown(results, profile, command.strip())
    output = a.output or (None if a.smoke else HERE / "RESULTS.md")
    if output is None:
        sys.stdout.write(text)
    else:
        # keep the "Durable runs" section that benchmarks/journal.py splices into the same file
        old = output.read_text() if output.exists() else ""
        output.write_text(carry_over(old, text))
        log.info("report written", path=str(output))
    if a.json:
        a.json.write_text(to_json(results))
    log.info("done", logs=str(workdir), wall=results.meta.get("harness wall time"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
