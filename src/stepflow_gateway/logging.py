"""structlog set-up: stderr only (stdout may be a JSON-RPC channel), JSON off a TTY, secret redaction.

Library code never calls ``configure``; only the CLI and the server do.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog

__all__ = ["REDACTED", "configure", "redact"]

REDACTED = "[REDACTED]"
_secret_keys: set[str] = set()


def redact(keys: set[str]) -> None:
    """Redact these key names (``is_secret`` variables/inputs) from every log event from now on."""
    _secret_keys.update(keys)


def _redact_processor(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    if _secret_keys:
        for key in list(event):
            if key in _secret_keys:
                event[key] = REDACTED
            elif isinstance(event[key], dict):
                event[key] = {k: (REDACTED if k in _secret_keys else v) for k, v in event[key].items()}
    return event


def configure(level: str | None = None, *, json: bool | None = None) -> None:
    """Configure structlog and stdlib logging to write to stderr."""
    name = (level or os.environ.get("STEPFLOW_LOG_LEVEL") or "WARNING").upper()
    lvl = getattr(logging, name, logging.WARNING)
    if json is None:
        json = not sys.stderr.isatty()
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(stream=sys.stderr, level=max(lvl, logging.WARNING))


def ensure_default() -> None:
    """Give structlog a quiet stderr default (warnings and up) when the embedding app configured nothing.

    structlog's own default prints every level to *stdout*, which would corrupt a JSON-RPC channel
    or a command's JSON output. An application that configures structlog itself is left alone.
    """
    if not structlog.is_configured():
        structlog.configure(
            processors=[structlog.processors.add_log_level, structlog.dev.ConsoleRenderer(colors=False)],
            wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
            logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
            cache_logger_on_first_use=False,
        )
