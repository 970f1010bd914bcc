"""API-key access control for REST and ``/mcp`` (ASGI middleware).

When a key is configured (``STEPFLOW_GATEWAY_API_KEY``) every HTTP request except
``GET /api/v1/health`` (and CORS preflights, which carry no credentials) must present it as
``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. Keys are compared in constant time
(``hmac.compare_digest`` over bytes) and never logged; the 401 body says what is missing, not what
was sent.
"""

from __future__ import annotations

import hmac
import json

from starlette.types import ASGIApp, Receive, Scope, Send

from ..logging import get_logger

__all__ = ["ApiKeyMiddleware", "key_allowed"]

log = get_logger(__name__)

OPEN_PATHS = frozenset({"/api/v1/health"})
"""Paths reachable without the key: load balancers and readiness probes poll health."""


class ApiKeyMiddleware:
    """Reject HTTP requests without the API key with a 401 JSON error body."""

    def __init__(self, app: ASGIApp, *, api_key: str | None) -> None:
        self.app = app
        self._key = api_key.encode("utf-8") if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._key is None or scope["type"] != "http" or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        log.info("request without a valid API key refused", path=path, method=scope.get("method"))
        message = "Missing or invalid API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
        body = json.dumps({"code": 401, "message": message, "stack": [{"error": message}]}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="stepflow-gateway"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _allowed(self, scope: Scope) -> bool:
        assert self._key is not None
        return key_allowed(scope, self._key)


def key_allowed(scope: Scope, key: bytes) -> bool:
    """Whether an HTTP request may pass: an open path, a CORS preflight, or the right key presented."""
    if scope.get("method", "GET") == "OPTIONS" or scope.get("path", "") in OPEN_PATHS:
        return True
    presented: bytes | None = None
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer":
                presented = token.strip()
        elif name == b"x-api-key":
            presented = value.strip()
        if presented is not None and hmac.compare_digest(presented, key):
            return True
    return False
