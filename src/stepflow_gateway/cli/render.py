"""Output helpers for the CLI: JSON on stdout, diagnostics and errors on stderr, exit codes."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any, NoReturn

import typer

from ..errors import ConfigError, FlowError, GatewayError, RunNotFound, unwrap_exception_group

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
EXIT_INTERRUPTED = 130
"""A journaled run stopped by SIGINT/SIGTERM (128 + SIGINT, as shells report Ctrl-C); it can be resumed."""


class UsageError(GatewayError):
    """The command cannot do what it was asked (a bad ``--state``, a run that cannot be resumed): exit 2."""


def err(message: str) -> None:
    sys.stderr.write(message.rstrip("\n") + "\n")


def fail(exc: BaseException) -> NoReturn:
    """Print a one-line error for ``exc`` on stderr and exit with the matching code."""
    exc = unwrap_exception_group(exc)
    if isinstance(exc, KeyboardInterrupt):  # Ctrl-C outside a journaled run's wait (or a second one)
        err("interrupted")
        raise typer.Exit(EXIT_INTERRUPTED)
    if isinstance(exc, (ConfigError, FlowError, UsageError, RunNotFound)):
        err(f"error: {exc}")
        raise typer.Exit(EXIT_INVALID)
    if isinstance(exc, GatewayError):
        err(f"error: {exc}")
        raise typer.Exit(EXIT_FAILED)
    if isinstance(exc, OSError):
        err(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
        raise typer.Exit(EXIT_INVALID)
    import os

    if os.environ.get("STEPFLOW_DEBUG"):
        raise exc
    err(f"internal error: {type(exc).__name__}: {exc} (set STEPFLOW_DEBUG=1 for a traceback)")
    raise typer.Exit(EXIT_FAILED)


def write_json(value: Any, *, out: Any = None, pretty: bool = False) -> None:
    out = out or sys.stdout
    out.write(json.dumps(value, ensure_ascii=False, indent=2 if pretty else None) + "\n")
    out.flush()


def print_diagnostics(diags: Iterable[Any], *, source: str | None = None, min_level: str = "warning") -> None:
    order = {"warning": 0, "error": 1, "fatal": 2}
    for d in diags:
        if order[d.level] >= order[min_level]:
            prefix = f"{source}: " if source else ""
            err(f"{prefix}{d.level}: {d.path}: {d.formatted} [{d.kind}]")


def print_config_warnings(warnings: Iterable[Any]) -> None:
    for w in warnings:
        path = getattr(w, "path", "")
        msg = getattr(w, "message", str(w))
        err(f"config warning: {path}: {msg}")
