"""The component servers the stepflow tests run, as plugin options (config mapping minus ``type``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SERVERS = HERE / "servers"
sys.path.insert(0, str(HERE.parents[1]))  # tests/ for ``peers``

import peers  # noqa: E402

SDK_SERVER = str(SERVERS / "sdk_server.py")


def sf07_stdio() -> dict[str, Any]:
    peers.require(peers.sf07_python(), why="stepflow-py 0.7.0")
    return {
        "transport": "stdio",
        "command": str(peers.sf07_python()),
        "args": [str(SERVERS / "server07.py")],
        "env": {"STEPFLOW_LOG_LEVEL": "WARNING"},
    }


def sf092_worker() -> dict[str, Any]:
    peers.require(peers.sf092_python(), why="stepflow-py 0.9.2")
    return {
        "command": str(peers.sf092_python()),
        "args": [str(SERVERS / "worker092.py")],
        "env": {"STEPFLOW_LOG_LEVEL": "WARNING"},
        "healthCheck": {"timeoutMs": 20000},
    }


def sdk_stdio(fast: bool) -> dict[str, Any]:
    return {"transport": "stdio", "command": sys.executable, "args": [SDK_SERVER], "fastTransport": fast}


def sdk_worker(fast: bool) -> dict[str, Any]:
    return {"command": sys.executable, "args": [SDK_SERVER, "--http"], "fastTransport": fast}


KINDS = {
    "sf07-stdio": sf07_stdio,
    "sf092-http-worker": sf092_worker,
    "sdk-stdio": lambda: sdk_stdio(False),
    "sdk-stdio-fast": lambda: sdk_stdio(True),
    "sdk-http-worker": lambda: sdk_worker(False),
    "sdk-http-worker-fast": lambda: sdk_worker(True),
}
"""Server kind → options factory (factories of peer kinds skip/fail when the peer is missing)."""
