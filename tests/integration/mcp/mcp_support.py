"""Helpers for the MCP plugin tests: a plugin context, a running plugin, real MCP servers.

The ``RuntimeAPI`` stub below is the plugin's host, not a stand-in for a peer: the MCP plugin
never calls back into the runtime, so every method fails loudly if it ever does.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import peers

from stepflow_gateway.plugins.base import ExecutionContext, PluginContext
from stepflow_gateway.plugins.mcp import McpPlugin, McpPluginConfig

FIXTURE_SERVER = Path(__file__).with_name("fixture_server.py")
START_BOUND_S = 40.0
"""Upper bound on a plugin start in tests (Python servers take ~1 s; CI machines are slow)."""


class HostRuntime:
    """The runtime callbacks; the MCP plugin must never use them."""

    async def put_blob(self, data: Any, blob_type: str = "data") -> str:
        raise AssertionError("the MCP plugin called put_blob")

    async def get_blob(self, blob_id: str) -> tuple[Any, str]:
        raise AssertionError("the MCP plugin called get_blob")

    async def submit_run(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the MCP plugin called submit_run")

    async def get_run(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the MCP plugin called get_run")

    async def flow_metadata(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        raise AssertionError("the MCP plugin called flow_metadata")


class FastRetry:
    """A ``retry`` section with a short constant backoff, so reconnect tests stay quick."""

    class backoff:  # noqa: N801 - mirrors the config attribute name
        @staticmethod
        def jittered_delay_s(n: int) -> float:
            return 0.05


def make_context(
    working_directory: Path,
    *,
    name: str = "mcp",
    environ: dict[str, str] | None = None,
    on_components_changed: Callable[[], Any] | None = None,
) -> PluginContext:
    return PluginContext(
        plugin_name=name,
        working_directory=working_directory,
        runtime=HostRuntime(),
        environ=dict(os.environ) if environ is None else environ,
        retry=FastRetry(),
        on_components_changed=on_components_changed,
    )


def exec_ctx(step_id: str = "step1") -> ExecutionContext:
    return ExecutionContext(runtime=HostRuntime(), run_id="run-1", flow_id="flow-1", step_id=step_id)


@asynccontextmanager
async def running_plugin(
    config: dict[str, Any],
    working_directory: Path,
    *,
    name: str = "mcp",
    environ: dict[str, str] | None = None,
    on_components_changed: Callable[[], Any] | None = None,
) -> AsyncIterator[McpPlugin]:
    """Start a plugin from a config mapping (as the registry would) and always close it."""
    plugin = McpPlugin(name, McpPluginConfig.model_validate(config))
    ctx = make_context(
        working_directory, name=name, environ=environ, on_components_changed=on_components_changed
    )
    with anyio.fail_after(START_BOUND_S):
        await plugin.start(ctx)
    try:
        yield plugin
    finally:
        with anyio.fail_after(15):
            await plugin.close()


async def assert_long_calls_overlap(plugin: Any) -> None:
    """Three 1 s ``trigger-long-running-operation`` calls on one session end within 2.5 s together."""
    started = time.perf_counter()
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(
                    plugin.execute, "/trigger-long-running-operation", {"duration": 1, "steps": 2}, exec_ctx()
                )
    assert time.perf_counter() - started < 2.5


async def wait_until(predicate: Callable[[], bool], limit_s: float = 10.0) -> None:
    """Poll ``predicate`` (bounded), for state changes that no event exposes."""
    with anyio.fail_after(limit_s):
        while not predicate():  # noqa: ASYNC110 - the plugin exposes no event for this
            await anyio.sleep(0.02)


# -- server configs -------------------------------------------------------------------------------


def time_config(**extra: Any) -> dict[str, Any]:
    argv = peers.mcp_time_command()
    peers.require(argv[0], why="mcp-server-time")
    return {"command": argv[0], "args": argv[1:], **extra}


def _npm_server(name: str) -> Path:
    return peers.node_modules() / "@modelcontextprotocol" / f"server-{name}" / "dist" / "index.js"


def everything_stdio_config(**extra: Any) -> dict[str, Any]:
    script = _npm_server("everything")
    peers.require(script, why="server-everything")
    return {"command": "node", "args": [str(script), "stdio"], **extra}


def filesystem_config(root: Path, **extra: Any) -> dict[str, Any]:
    script = _npm_server("filesystem")
    peers.require(script, why="server-filesystem")
    return {"command": "node", "args": [str(script), str(root)], **extra}


def memory_config(memory_file: Path, **extra: Any) -> dict[str, Any]:
    script = _npm_server("memory")
    peers.require(script, why="server-memory")
    return {"command": "node", "args": [str(script)], "env": {"MEMORY_FILE_PATH": str(memory_file)}, **extra}


def fixture_config(kind: str = "dynamic", **extra: Any) -> dict[str, Any]:
    return {"command": sys.executable, "args": [str(FIXTURE_SERVER), kind], **extra}


# -- server-everything over HTTP ---------------------------------------------------------------------


class HttpEverything:
    """server-everything in ``streamableHttp`` or ``sse`` mode on 127.0.0.1, restartable."""

    def __init__(self, mode: str, port: int) -> None:
        self.mode = mode
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        path = "/mcp" if self.mode == "streamableHttp" else "/sse"
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        script = _npm_server("everything")
        peers.require(script, peers.loopback_preload(), why="server-everything over HTTP")
        env = dict(os.environ, PORT=str(self.port), NODE_OPTIONS=f"--require {peers.loopback_preload()}")
        # In HTTP mode it logs every request to stdout: discard it.
        self.proc = subprocess.Popen(
            [str(peers.node()), str(script), self.mode],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 15
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError as exc:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"server-everything ({self.mode}) did not listen on {self.port}"
                    ) from exc
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None


def child_pids() -> set[int]:
    """Direct children of this test process (Linux ``/proc``)."""
    pids: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            pids.update(int(p) for p in (task / "children").read_text().split())
        except OSError:
            continue
    return pids
