"""Fixtures for the MCP plugin tests (helpers live in ``mcp_support.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from mcp_support import HttpEverything


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def http_everything(free_port: Callable[[], int]) -> Iterator[Callable[[str], HttpEverything]]:
    servers: list[HttpEverything] = []

    def launch(mode: str) -> HttpEverything:
        server = HttpEverything(mode, free_port())
        server.start()
        servers.append(server)
        return server

    yield launch
    for server in servers:
        server.stop()
