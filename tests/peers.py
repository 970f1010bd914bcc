"""Where the real peers live (installed by ``scripts/setup.sh`` under ``.peers/``, spec peers.md).

Each function returns a path and does not check it; tests call :func:`require` with the paths
they need. ``require`` fails the test in CI (``CI=true``: a missing peer there is a broken
install) and skips it locally, naming ``scripts/setup.sh`` either way.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

__all__ = [
    "PEERS",
    "REPO",
    "loopback_preload",
    "mcp_time_command",
    "node",
    "node_modules",
    "require",
    "run_upstream_script",
    "sf07_python",
    "sf07_stepflow_py",
    "sf092_python",
    "sf092_worker",
    "upstream_server_binary",
]

REPO = Path(__file__).resolve().parent.parent
"""The repository root."""
PEERS = Path(os.environ.get("PEERS") or REPO / ".peers")
"""The peers directory (``$PEERS`` if set, else ``<repo>/.peers``)."""


def sf07_python() -> Path:
    """Python of the stepflow-py 0.7.0 venv (stdio component server SDK)."""
    return PEERS / "sf07" / "bin" / "python"


def sf07_stepflow_py() -> Path:
    """Console script of stepflow-py 0.7.0: a stdio server exposing only ``/udf``."""
    return PEERS / "sf07" / "bin" / "stepflow_py"


def sf092_python() -> Path:
    """Python of the stepflow-py 0.9.2 venv (HTTP worker SDK)."""
    return PEERS / "sf092" / "bin" / "python"


def sf092_worker() -> Path:
    """Console script of stepflow-py 0.9.2: an HTTP worker exposing only ``/udf``."""
    return PEERS / "sf092" / "bin" / "stepflow_worker"


def upstream_server_binary() -> Path:
    """The upstream ``stepflow-server`` 0.9.0 binary shipped in stepflow-orchestrator.

    It binds 0.0.0.0: run it only inside a private network namespace (``run_upstream_script``).
    """
    site = PEERS / "orch090" / "lib"
    found = sorted(site.glob("python3*/site-packages/stepflow_orchestrator/bin/stepflow-server"))
    if found:
        return found[-1]
    return site / "python3" / "site-packages" / "stepflow_orchestrator" / "bin" / "stepflow-server"


def run_upstream_script() -> Path:
    """``.peers/run-upstream.sh``: upstream server plus one client command in a namespace."""
    return PEERS / "run-upstream.sh"


def mcp_time_command() -> list[str]:
    """argv of the ``mcp-server-time`` stdio MCP server, pinned to UTC."""
    return [str(PEERS / "mcp-time" / "bin" / "mcp-server-time"), "--local-timezone", "UTC"]


def node_modules() -> Path:
    """``node_modules`` of the npm MCP servers (server-everything, -filesystem, -memory)."""
    return PEERS / "npm" / "node_modules"


def loopback_preload() -> Path:
    """``.peers/loopback.cjs``: ``NODE_OPTIONS=--require`` it so host-less listens bind 127.0.0.1."""
    return PEERS / "loopback.cjs"


def node() -> Path:
    """The ``node`` executable on PATH (``node`` itself when absent, so ``require`` names it)."""
    found = shutil.which("node")
    return Path(found) if found else Path("node")


def require(*paths: Path | str, why: str = "") -> None:
    """Fail (CI) or skip (locally) the calling test unless every path exists.

    Executables must also be executable. ``why`` names the peer for the message.
    """
    missing = []
    for raw in paths:
        path = Path(raw)
        # Files without a suffix (binaries, console scripts) and shell scripts must be executable.
        executable = path.suffix in ("", ".sh")
        if not path.exists() or (executable and path.is_file() and not os.access(path, os.X_OK)):
            missing.append(str(path))
    if not missing:
        return
    what = f" ({why})" if why else ""
    message = f"peer missing{what}: {', '.join(missing)}; run scripts/setup.sh to install the peers"
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
