"""Shared fixtures, kept minimal: the anyio backend and a free loopback port.

Peer locations live in ``tests/peers.py``; throwaway PostgreSQL servers (``pg_server``,
``pg_url``, ``pg_database``) in ``tests/postgres.py``.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
from postgres import pg_database, pg_server, pg_url  # noqa: F401  (fixtures)


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def free_port() -> Callable[[], int]:
    """A function returning a TCP port on 127.0.0.1 that was free a moment ago."""
    return _free_port
