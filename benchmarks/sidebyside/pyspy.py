"""Optional sampling profile of our server while a flow's cells run (``harness.py --py-spy DIR``).

``py-spy record`` attaches to the server process for the duration of one flow's load cells and writes
collapsed stacks to ``DIR/<flow>.txt`` (plus ``DIR/<flow>.top.txt``: the functions with the most samples
on top of the stack, and those most often anywhere on it). Sampling costs the server a little CPU, so
figures from a profiled run are not for the table. Upstream is not profiled (a Rust binary).
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import structlog

from .servers import Server

__all__ = ["profiling", "summarise"]

log = structlog.get_logger(__name__)

RATE_HZ = 250
STOP_TIMEOUT_S = 30.0
TOP_N = 25


def _py_spy() -> str | None:
    return shutil.which("py-spy") or (
        str(Path(sys.executable).with_name("py-spy"))
        if Path(sys.executable).with_name("py-spy").exists()
        else None
    )


def _start(exe: str, pid: int, raw: Path, log: Path) -> subprocess.Popen[bytes]:
    raw.parent.mkdir(parents=True, exist_ok=True)
    argv = [exe, "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--format", "raw", "--function"]
    argv += ["--nonblocking", "--output", str(raw)]
    with log.open("wb") as err:
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)


@asynccontextmanager
async def profiling(out_dir: Path | None, server: Server | None, flow: str) -> AsyncIterator[None]:
    """Record ``server`` while the block runs (no-op without ``out_dir``, a server, or py-spy)."""
    exe = _py_spy()
    if out_dir is None or server is None or exe is None:
        if out_dir is not None and exe is None:
            log.warning("py-spy not found: pip install py-spy into the venv")
        yield
        return
    raw = out_dir / f"{flow}.txt"
    proc = _start(exe, server.pid, raw, out_dir / f"{flow}.py-spy.log")
    try:
        await asyncio.sleep(0.5)  # let py-spy attach before the load starts
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            await asyncio.to_thread(proc.wait, STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)
        if raw.exists():
            (out_dir / f"{flow}.top.txt").write_text(summarise(raw))


LAYERS = (
    ("flow re-parse per run (get_flow / parse_flow / flow_id)", ("parse_flow", "Flow.flow_id")),
    ("state store", ("stepflow_gateway/state/",)),
    ("MCP plugin + mcp SDK", ("plugins/mcp", "/mcp/", "mcp_types")),
    ("StepFlow plugin + JSON-RPC + httpx2", ("plugins/stepflow", "gateway/protocol/", "httpx", "httpcore")),
    ("engine (executor, expressions, builtins, router)", ("engine/", "flow/expr", "builtin", "plugins/r")),
    ("gateway.py (submit, _execute, now_iso)", ("stepflow_gateway/gateway.py",)),
    ("REST handlers + JSON", ("stepflow_gateway/server/", "json/", "jsonutil", "pydantic")),
    ("HTTP: uvicorn + h11", ("uvicorn/", "h11/")),
    ("starlette middleware + routing", ("starlette/",)),
    ("anyio", ("anyio/",)),
    ("event loop: select (idle)", ("EpollSelector.select",)),
    ("event loop: other", ("asyncio/",)),
)
"""Sample attribution by layer: the deepest frame matching a layer's markers wins (first layer on ties)."""


def _layer(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, markers in LAYERS:
            if any(m in frame for m in markers):
                return name
    return "other"


def summarise(raw: Path, top: int = TOP_N) -> str:
    """Shares per layer, and self and inclusive sample shares per function, from collapsed stacks."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    layers: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        layers[_layer(frames)] += n
        for f in set(frames):
            incl[f] += n
    if not total:
        return "no samples\n"
    lines = [f"{total} samples", "", "by layer (deepest matching frame):"]
    lines += [f"{c / total:6.1%}  {f}" for f, c in layers.most_common()]
    lines += ["", "self (top of stack):"]
    lines += [f"{c / total:6.1%}  {f}" for f, c in own.most_common(top)]
    lines += ["", "inclusive (anywhere on the stack):"]
    lines += [f"{c / total:6.1%}  {f}" for f, c in incl.most_common(top)]
    return "\n".join(lines) + "\n"
