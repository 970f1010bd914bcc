"""Durable runs (issue 12): the execution journal's cost and recovery, side by side in one run.

    .venv/bin/python benchmarks/journal.py            # full, ~5 min → "Durable runs" in benchmarks/RESULTS.md
    .venv/bin/python benchmarks/journal.py --quick    # < 2 min, the same section (marked "quick")
    .venv/bin/python benchmarks/journal.py --smoke --output /tmp/d.md   # seconds, a standalone file

Our ``serve`` with the SQLite journal, with ``stateStore: {type: inMemory}`` and (when the branch has
the store and its test fixture) with PostgreSQL, against upstream 0.13 with its SQLite and in-memory
stores: sequential noop-1 and chain-100 (server CPU per run and per step, p50), 1,000 sleeping runs
submitted with ``wait: false``, and recovery after SIGKILL. Like ``harness.py`` it re-executes itself
in a private network namespace (upstream binds every interface). See benchmarks/README.md; the
implementation is ``sidebyside/durable.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import logging
import shlex
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import structlog  # noqa: E402
from sidebyside import netns  # noqa: E402
from sidebyside.durable import DURABLE_PROFILES, VARIANTS, Durable, PgCluster  # noqa: E402
from sidebyside.durable_report import splice, to_json, to_markdown  # noqa: E402
from sidebyside.machine import Pinning, describe, pin_client  # noqa: E402
from sidebyside.results import Results  # noqa: E402
from sidebyside.servers import PEERS, Tools, compile_gateway  # noqa: E402

log = structlog.get_logger("journal")


def _args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="< 2 min profile")
    mode.add_argument("--smoke", action="store_true", help="seconds-long profile (checks that it works)")
    ap.add_argument(
        "--variants",
        help="comma-separated subset of: " + ", ".join(v.name for v in VARIANTS),
    )
    ap.add_argument(
        "--skip", default="", help="comma-separated parts to leave out: sequential, sleep, recovery"
    )
    ap.add_argument(
        "--output",
        type=Path,
        help="write the section here instead of splicing it into benchmarks/RESULTS.md (smoke: stdout)",
    )
    ap.add_argument("--json", type=Path, help="also write the results as JSON here")
    ap.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="profile our servers with py-spy during the first round of sequential c=1 cells",
    )
    ap.add_argument("-v", "--verbose", action="store_true", help="log every cell on stderr")
    return ap.parse_args(argv)


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _installed(marker: str) -> str:
    try:
        return (PEERS / marker).read_text().strip()
    except OSError:
        return "not installed"


def main(argv: list[str]) -> int:
    a = _args(argv)
    tools = Tools.discover()
    if not tools.gateway.exists():
        print(
            f"journal: stepflow-gateway not installed ({tools.gateway}); run scripts/setup.sh",
            file=sys.stderr,
        )
        return 2
    netns.enter_or_reexec(Path(__file__).resolve())
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG if a.verbose else logging.INFO),
    )
    profile = DURABLE_PROFILES["smoke" if a.smoke else "quick" if a.quick else "full"]
    variants = VARIANTS
    if a.variants:
        wanted = [x.strip() for x in a.variants.split(",") if x.strip()]
        unknown = sorted(set(wanted) - {v.name for v in VARIANTS})
        if unknown:
            print(f"journal: unknown variants {', '.join(unknown)}", file=sys.stderr)
            return 2
        variants = tuple(v for v in VARIANTS if v.name in wanted)
    skip = {x.strip() for x in a.skip.split(",") if x.strip()}

    pinning = Pinning.choose()
    pin_client(pinning)
    workdir = Path(tempfile.mkdtemp(prefix="journal-"))
    meta = describe(tools, pinning)
    meta.pop("component servers", None)
    meta["date"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    meta["upstream"] = (
        f"{_installed('.installed-orch013')} (stepflow-server; storageConfig sqlite / inMemory)"
    )
    meta["gateway bytecode"] = compile_gateway(tools)

    pg = PgCluster()
    if any(v.store == "postgres" for v in variants):
        pg.start()
    meta["postgres"] = pg.version() if pg.server is not None else f"not measured: {pg.why_not}"
    if a.py_spy:
        meta["profiled"] = f"py-spy sampled our servers (profiles in {a.py_spy}): their figures are inflated"
    meta["load average at start"] = _loadavg()
    res = Results(profile.name, meta=meta)
    bench = Durable(profile, tools, pinning.server, workdir, res, variants=variants, pg=pg, py_spy=a.py_spy)
    log.info(
        "starting", profile=profile.name, variants=",".join(v.name for v in bench.live()), logs=str(workdir)
    )

    try:
        asyncio.run(bench.run(skip))
    finally:
        pg.stop()
    res.meta["load average at end"] = _loadavg()

    command = ("benchmarks/journal.py " + shlex.join(argv)).strip()
    text = to_markdown(res, profile, list(variants), command)
    if a.output is not None:
        a.output.write_text(text)
        log.info("section written", path=str(a.output))
    elif a.smoke:
        sys.stdout.write(text)
    else:
        results = HERE / "RESULTS.md"
        old = results.read_text() if results.exists() else ""
        results.write_text(splice(old, text))
        log.info("section spliced", path=str(results))
    if a.json:
        a.json.write_text(to_json(res, list(variants)))
    log.info("done", logs=str(workdir), wall=res.meta["wall time"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
