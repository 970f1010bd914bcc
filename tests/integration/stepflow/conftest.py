"""Fixtures for the stepflow plugin tests (helpers live in ``stepflow_support``)."""

from __future__ import annotations

import pytest
from stepflow_support import DictRuntime


@pytest.fixture
def runtime() -> DictRuntime:
    return DictRuntime()
