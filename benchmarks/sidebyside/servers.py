"""The two runtimes: how each is found, configured, started (pinned), probed for readiness and stopped.

``ours`` is ``stepflow-gateway serve`` from this repository's venv; ``upstream`` is the Rust
``stepflow-server`` 0.9.0 from the ``stepflow-orchestrator`` wheel under ``.peers/orch090``. Both read the
same substituted config file (``write_configs``) and log at warning level to a file, so stdout stays
quiet and neither pays for per-request info logs. A ``Runtime`` may carry another name, ``kind`` ("ours"
or "upstream") and ``binary`` (another upstream build, e.g. 0.13 from ``.peers/orch013``): the durable-runs
benchmark (``benchmarks/journal.py``) runs several of each kind side by side.

``running(runtime, ...)`` is an async context manager: it spawns the server in its own session (so the
whole process tree can be killed), waits for ``GET /api/v1/health`` (bounded), yields a ``Server``
and always stops it: SIGTERM, a bounded wait, then SIGKILL to every process left in the tree.
A runtime that cannot start raises ``StartError`` with a one-line reason (for "n/a: <reason>").
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import string
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from . import client, procstat

__all__ = [
    "PORTS",
    "RUNTIMES",
    "Runtime",
    "Server",
    "StartError",
    "Tools",
    "compile_gateway",
    "running",
    "write_configs",
]

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks"
PEERS = Path(os.environ.get("PEERS") or REPO / ".peers")

READY_TIMEOUT_S = 60.0
"""Bound of a start: the full config waits for a Python child and a node child (about 1 s upstream)."""
STOP_GRACE_S = 10.0
COMPILE_TIMEOUT_S = 120.0
"""SIGTERM first; after this the tree is killed."""
POLL_S = 0.002
"""Health polling interval: cold start of the Rust server is ~30 ms, so poll finely."""

RUNTIMES = ("ours", "upstream")
PORTS = {"ours": 7841, "upstream": 7840}


class StartError(Exception):
    """A runtime did not start; ``str()`` is a one-line reason for the table."""


@dataclass(frozen=True, slots=True)
class Tools:
    """Paths of everything outside the repository's Python package that the benchmark needs."""

    upstream_server: Path
    gateway: Path
    sf092_python: Path
    node: Path
    node_modules: Path
    upstream013_server: Path | None = None
    """Upstream 0.13 (``.peers/orch013``): optional, used by ``benchmarks/journal.py`` only."""

    @classmethod
    def discover(cls) -> Tools:
        found = sorted(
            (PEERS / "orch090" / "lib").glob(
                "python3*/site-packages/stepflow_orchestrator/bin/stepflow-server"
            )
        )
        upstream = Path(os.environ.get("STEPFLOW_SERVER") or (found[-1] if found else PEERS / "orch090"))
        default_gateway = Path(sys.executable).with_name("stepflow-gateway")
        gateway = Path(os.environ.get("STEPFLOW_GATEWAY_BIN") or default_gateway)
        node = Path(shutil.which("node") or "/usr/bin/node")
        found013 = sorted(
            (PEERS / "orch013" / "lib").glob(
                "python3*/site-packages/stepflow_orchestrator/bin/stepflow-server"
            )
        )
        up013 = os.environ.get("STEPFLOW_SERVER_013") or (found013[-1] if found013 else None)
        return cls(
            upstream,
            gateway,
            PEERS / "sf092" / "bin" / "python",
            node,
            PEERS / "npm" / "node_modules",
            Path(up013) if up013 else None,
        )

    def missing(self) -> list[str]:
        """Human-readable list of absent prerequisites (empty when all are there)."""
        out = []
        checks = [
            (self.upstream_server, "upstream stepflow-server 0.9.0"),
            (self.gateway, "stepflow-gateway"),
            (self.sf092_python, "stepflow-py 0.9.2 venv"),
            (self.node, "node"),
            (self.node_modules / "@modelcontextprotocol" / "server-everything", "server-everything"),
        ]
        for path, what in checks:
            if not path.exists():
                out.append(f"{what} ({path})")
        return out


def write_configs(tools: Tools, workdir: Path) -> dict[str, Path]:
    """Substitute ``$PYTHON``/``$NODE_MODULES``/``$NODE`` into every ``configs/*.yml``; copy echo_server.py.

    Returns ``{config name: absolute path}`` (upstream uses the config's directory as children's cwd).
    """
    values = {
        "PYTHON": str(tools.sf092_python),
        "NODE_MODULES": str(tools.node_modules),
        "NODE": str(tools.node),
    }
    shutil.copy(BENCH / "configs" / "echo_server.py", workdir / "echo_server.py")
    out = {}
    for src in sorted((BENCH / "configs").glob("*.yml")):
        dst = workdir / src.name
        dst.write_text(string.Template(src.read_text()).substitute(values))
        out[src.stem] = dst
    return out


def compile_gateway(tools: Tools) -> str:
    """Byte-compile the gateway package (as ``pip install`` does), so start-up cells do not time the
    compiler. Returns what was done, for the report header."""
    if tools.gateway != Path(sys.executable).with_name("stepflow-gateway"):
        return "not compiled by the harness (STEPFLOW_GATEWAY_BIN is another installation)"
    import stepflow_gateway

    package = Path(stepflow_gateway.__file__).parent
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(package)],
        env=env,
        capture_output=True,
        timeout=COMPILE_TIMEOUT_S,
        check=False,
    )
    return "compiled (compileall)" if done.returncode == 0 else f"compileall failed: {done.stderr[-200:]!r}"


@dataclass(frozen=True, slots=True)
class Runtime:
    """One side of the comparison: its name, port, argv and environment.

    ``kind`` is "ours" or "upstream" (default: the name); ``binary`` replaces the upstream 0.9.0
    executable (another upstream release)."""

    name: str
    port: int
    tools: Tools
    server_cpu: int | None
    logdir: Path
    kind: str = ""
    binary: Path | None = None

    @property
    def flavour(self) -> str:
        """ "ours" or "upstream"."""
        return self.kind or ("ours" if self.name == "ours" else "upstream")

    @property
    def executable(self) -> Path:
        if self.flavour == "ours":
            return self.tools.gateway
        return self.binary or self.tools.upstream_server

    def argv(self, config: Path, port: int) -> list[str]:
        if self.flavour == "ours":
            cmd = [
                str(self.tools.gateway),
                "serve",
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "WARNING",
            ]
        else:
            cmd = [
                str(self.executable),
                "--port",
                str(port),
                "--config",
                str(config),
                "--log-level",
                "warn",
                "--log-destination",
                "file",
                "--log-file",
                str(self.logdir / self.name),
            ]
        if self.server_cpu is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", str(self.server_cpu), *cmd]
        return cmd

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("SIDEBYSIDE_NETNS", None)
        # Measure what an installed package does: read (and keep) compiled bytecode. A shell with
        # PYTHONDONTWRITEBYTECODE=1 would otherwise recompile every module at every start.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        if self.flavour == "ours":
            env["STEPFLOW_GATEWAY_SHUTDOWN_GRACE"] = "2"
        return env


@dataclass(slots=True)
class Server:
    """A started server: its process, port and readiness time (seconds from spawn to healthy)."""

    runtime: Runtime
    proc: subprocess.Popen[bytes]
    port: int
    ready_s: float
    spawned_at: float
    log: Path
    lines: list[tuple[float, str]] | None = None
    """With ``running(..., capture_stderr=True)``: every stderr line with its ``time.time()`` of arrival."""

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive_reason(self) -> str | None:
        """``None`` while running, else why it is not (exit code and the log's last line)."""
        code = self.proc.poll()
        if code is None:
            return None
        return f"server exited with code {code}: {_log_tail(self.log)}"


def _log_tail(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return lines[-1][:200] if lines else "(empty log)"


async def _wait_healthy(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        code = proc.poll()
        if code is not None:
            raise StartError(f"exited with code {code} before becoming healthy: {_log_tail(log)}")
        try:
            status, _ = await client.request(port, "GET", "/api/v1/health", limit_s=5.0)
            if status == 200:
                return
        except (OSError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise StartError(f"not healthy after {READY_TIMEOUT_S:g} s: {_log_tail(log)}")
        await asyncio.sleep(POLL_S)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    pids = procstat.tree_pids(proc.pid) if proc.poll() is None else []
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
    for pid in [*pids, proc.pid]:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the session: children that were re-parented
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        pass


def _spawn(
    argv: list[str], cwd: Path, env: dict[str, str], log: Path, lines: list[tuple[float, str]] | None = None
) -> subprocess.Popen[bytes]:
    """Start the server in its own session (a blocking fork/exec of a few ms: part of cold start).

    With ``lines``, stderr comes through a pipe: a thread appends each line to ``lines`` with its
    arrival time (``time.time()``, comparable with other processes' clocks) and to the log file."""
    with log.open("ab") as logf:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=logf if lines is None else subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    if lines is not None:
        threading.Thread(target=_tee, args=(proc, log, lines), daemon=True).start()
    return proc


def _tee(proc: subprocess.Popen[bytes], log: Path, lines: list[tuple[float, str]]) -> None:
    assert proc.stderr is not None
    with log.open("ab") as logf:
        for raw in proc.stderr:
            lines.append((time.time(), raw.decode(errors="replace").rstrip("\n")))
            logf.write(raw)
            logf.flush()


@asynccontextmanager
async def running(
    runtime: Runtime, config: Path, *, port: int | None = None, tag: str = "", capture_stderr: bool = False
) -> AsyncIterator[Server]:
    """Start ``runtime`` with ``config`` and yield it once healthy; always stop it (tree included).

    ``capture_stderr``: keep every stderr line with its arrival time in ``Server.lines``."""
    port = port or runtime.port
    log = runtime.logdir / f"{runtime.name}{tag}.log"
    if runtime.flavour == "upstream" and not runtime.executable.exists():
        raise StartError(f"binary not found: {runtime.executable}")
    if runtime.flavour == "ours" and not runtime.tools.gateway.exists():
        raise StartError(f"not installed: {runtime.tools.gateway}")
    lines: list[tuple[float, str]] | None = [] if capture_stderr else None
    t0 = time.perf_counter()
    proc = _spawn(runtime.argv(config, port), config.parent, runtime.env(), log, lines)
    try:
        await _wait_healthy(proc, port, log)
        yield Server(runtime, proc, port, time.perf_counter() - t0, t0, log, lines)
    finally:
        await asyncio.to_thread(_stop, proc)
