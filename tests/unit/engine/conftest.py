"""Fixtures for ``tests/unit/engine`` (the helpers live in ``engine_support.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_support import OpenGateway, make_open_gw


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def open_gw(tmp_path: Path) -> OpenGateway:
    """``async with open_gw(mock_components=..., config_yaml=...) as (gw, probe)``."""
    return make_open_gw(tmp_path)
