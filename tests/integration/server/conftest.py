"""Fixtures for the server tests: a real ``stepflow-gateway serve`` subprocess on 127.0.0.1.

``start_server(config_text, env=...)`` writes the config into the test's directory, starts the
server there with ``--data-dir <dir>/.stepflow-gateway`` (so the SQLite state lands in
``<tmp>/.stepflow-gateway/state.db``) on a free port, waits for
``/api/v1/health`` (bounded) and returns a ``ServerProcess``. Servers still running at the end of
the test are stopped with SIGTERM (then SIGKILL after a bound).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import pytest

REPO = Path(__file__).resolve().parents[3]
GATEWAY = REPO / ".venv" / "bin" / "stepflow-gateway"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0

BUILTIN_CONFIG = """\
plugins:
  builtin:
    type: builtin
routes:
  "/builtin/{*component}":
    - plugin: builtin
"""

GREET = {
    # a one-step flow with input and variable schemas (shared by the MCP façade and start-up tests)
    "name": "greet",
    "description": "Greets someone",
    "schemas": {
        "type": "object",
        "properties": {
            "input": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
            "variables": {"type": "object", "properties": {"tone": {"type": "string", "default": "calm"}}},
        },
    },
    "steps": [
        {
            "id": "m",
            "component": "/builtin/create_messages",
            "input": {"user_prompt": {"$input": "q"}, "system_instructions": {"$variable": "tone"}},
        }
    ],
    "output": {"messages": {"$step": "m", "path": "messages"}},
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return f"{self.url}/api/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S) -> int:
        """Signal the server and wait (bounded) for it to exit; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                message = f"server did not stop within {timeout} s after {sig!r}:\n{self.log()}"
                raise AssertionError(message) from None
        return self.proc.returncode


def _wait_healthy(server: ServerProcess) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise AssertionError(
                f"server exited with {server.proc.returncode} during startup:\n{server.log()}"
            )
        try:
            if httpx2.get(f"{server.api}/health", timeout=1.0).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.05)
    server.stop(signal.SIGKILL)
    raise AssertionError(f"server not healthy within {START_TIMEOUT_S} s:\n{server.log()}")


@pytest.fixture
def start_server(tmp_path: Path, free_port: Callable[[], int]) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def start(
        config: str = BUILTIN_CONFIG,
        *,
        env: dict[str, str] | None = None,
        port: int | None = None,
        workdir: Path | None = None,
    ) -> ServerProcess:
        wd = workdir or tmp_path
        wd.mkdir(parents=True, exist_ok=True)
        cfg = wd / "stepflow-config.yml"
        cfg.write_text(config)
        port = port or free_port()
        log_path = wd / f"server-{port}-{len(started)}.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("STEPFLOW_")}
        full_env.update(env or {})
        full_env["STEPFLOW_LOG_LEVEL"] = full_env.get("STEPFLOW_LOG_LEVEL", "INFO")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [str(GATEWAY), "serve", "--config", str(cfg), "--port", str(port)]
                + ["--data-dir", str(wd / ".stepflow-gateway")],
                cwd=wd,
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        server = ServerProcess(proc, port, wd, log_path, env or {})
        started.append(server)
        _wait_healthy(server)
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            try:
                server.stop()
            except AssertionError:
                pass


def python_exe() -> str:
    return sys.executable
