"""Errors of the REST API: one table from exception class to HTTP status, and the JSON error body.

Handlers raise ``ApiError`` (an HTTP condition that has no domain exception: a bad query
parameter, a body that is too large, a run that cannot be cancelled) or let domain errors
(``GatewayError`` and its tree) escape; the handlers installed by ``EXCEPTION_HANDLERS`` turn both
into rest-api.md §1's body::

    {"code": 404, "message": "Workflow '…' not found", "stack": [{"error": "Workflow '…' not found"}]}

sent as ``application/json`` (upstream labels the same JSON ``text/plain``). Unexpected exceptions
become a 500 with a one-line message; the traceback goes to the log, never to the client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import (
    ConfigError,
    FlowError,
    FlowLoadError,
    GatewayError,
    PluginError,
    RunNotFound,
    StateStoreError,
)
from ..logging import get_logger

__all__ = ["EXCEPTION_HANDLERS", "ApiError", "error_body", "error_response", "status_for"]

log = get_logger(__name__)


class ApiError(Exception):
    """An HTTP error with the REST error body; ``status`` is also the body's ``code``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        stack: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.stack = stack
        self.headers = headers


# Most specific class first: ``status_for`` takes the first match.
_STATUS_TABLE: tuple[tuple[type[BaseException], int], ...] = (
    (RunNotFound, 404),
    (FlowLoadError, 422),  # the body parsed as JSON but the flow does not (rest-api.md §1)
    (FlowError, 400),  # overrides naming an unknown step, invalid variables, fatal diagnostics
    (ConfigError, 500),
    (StateStoreError, 500),
    (PluginError, 500),
)


def status_for(exc: BaseException) -> int:
    """The HTTP status for a domain exception."""
    for cls, status in _STATUS_TABLE:
        if isinstance(exc, cls):
            return status
    if isinstance(exc, GatewayError) and 400 <= exc.code <= 599:
        return exc.code
    return 500


def error_body(status: int, message: str, stack: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"code": status, "message": message, "stack": stack if stack is not None else [{"error": message}]}


def error_response(
    status: int,
    message: str,
    stack: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(status, message, stack), status_code=status, headers=headers)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.message, exc.stack, exc.headers)


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    status = status_for(exc)
    message = str(exc)
    if status >= 500:
        log.warning("request failed", path=request.url.path, status=status, error=message)
    stack = getattr(exc, "stack", None)
    return error_response(status, message, stack if isinstance(stack, list) and stack else None)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"No route for {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, message, headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error(
        "unexpected error in request handler",
        path=request.url.path,
        method=request.method,
        error=f"{type(exc).__name__}: {exc}",
        exc_info=exc,
    )
    return error_response(500, f"Internal server error: {type(exc).__name__}: {exc}")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ApiError: _api_error,
    GatewayError: _gateway_error,
    HTTPException: _http_error,
    Exception: _unexpected,
}
"""``Starlette(exception_handlers=...)``: every error a client can see goes through this table."""
