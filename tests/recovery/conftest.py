"""Fixtures for the crash tests: the server fixture of ``tests/integration/server`` and the stores.

``start_server`` (and ``ServerProcess``) are reused from ``tests/integration/server/conftest.py``:
a real ``stepflow-gateway serve`` subprocess in the test's directory, waited for (bounded) until
``/api/v1/health`` answers, stopped at the end of the test.

``store`` is parametrized over the state stores the crash tests run against (``STORES``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_INTEGRATION = Path(__file__).resolve().parents[1] / "integration"
if str(_INTEGRATION) not in sys.path:
    sys.path.insert(0, str(_INTEGRATION))

from recovery_support import STORES, Store, make_store  # noqa: E402
from server.conftest import start_server  # noqa: E402,F401  (the fixture, re-exported here)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: SIGKILLs and restarts real servers (deselect: -m 'not slow')")


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    return make_store(request.param, tmp_path, request)
