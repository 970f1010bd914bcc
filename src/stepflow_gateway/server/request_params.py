"""REST request parameters (rest-api.md §2): the run id in the path, the query parameters, and the
``ServerRuntime`` a request is served by.

Shared by ``api.py`` and ``events.py`` (``GET /runs/{id}/events``, loaded on first use), so neither
imports the other for them. A malformed value is an ``ApiError`` 400 naming the parameter.
"""

from __future__ import annotations

import uuid

from starlette.requests import Request

from .errors import ApiError
from .runtime import ServerRuntime

__all__ = ["path_run_id", "query_bool", "query_int", "query_uuid", "runtime_of"]


def runtime_of(request: Request) -> ServerRuntime:
    """The ``ServerRuntime`` the app's lifespan stored for its requests."""
    return request.app.state.runtime  # type: ignore[no-any-return]


def path_run_id(request: Request) -> str:
    """The ``{run_id}`` path parameter in canonical UUID form (400 if it is not a UUID)."""
    raw = request.path_params["run_id"]
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise ApiError(
            400, f"Invalid run id '{raw}': expected a UUID such as '01a209c8-e19e-7f32-9634-90cd69a6e1e1'"
        ) from None


def query_int(request: Request, name: str) -> int | None:
    """A non-negative integer query parameter; ``None`` when absent or empty."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"Query parameter '{name}' must be a non-negative integer, got '{raw}'") from None
    if value < 0:
        raise ApiError(400, f"Query parameter '{name}' must be a non-negative integer, got '{raw}'")
    return value


def query_uuid(request: Request, name: str) -> str | None:
    """A UUID query parameter in canonical form; ``None`` when absent or empty."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise ApiError(400, f"Query parameter '{name}' must be a UUID, got '{raw}'") from None


def query_bool(request: Request, name: str, default: bool) -> bool:
    """A boolean query parameter (``true``/``1``/``yes``, ``false``/``0``/``no``); ``default`` when absent."""
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    low = raw.lower()
    if low in ("true", "1", "yes"):
        return True
    if low in ("false", "0", "no"):
        return False
    raise ApiError(400, f"Query parameter '{name}' must be true or false, got '{raw}'")
