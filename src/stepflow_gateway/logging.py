"""Logging for the gateway: lazy structlog loggers, stderr only, JSON off a TTY, secret redaction.

Owns ``get_logger`` (what every gateway module uses instead of ``structlog.get_logger``), the
structlog set-up (``configure`` for the CLI and the server, ``ensure_default`` for embedders) and
secret redaction. Library code never calls ``configure``.

structlog costs ~45 ms to import (it pulls in asyncio, pickle, rich...). A builtin-only
``stepflow-gateway run`` usually logs nothing, so ``get_logger`` returns a small proxy that imports
and sets up structlog only when an event at an enabled level is actually emitted (or once someone
else has imported structlog, e.g. an application or a test that configures it itself). Events
below the configured level are dropped by the proxy without importing anything. Modules that call
``structlog`` directly (server, MCP/StepFlow plugins, protocol, SDK) are covered by a one-shot
import hook: whoever imports structlog first, it is configured (stderr) before anything logs.

stdout may be a JSON-RPC channel or a command's JSON output: every handler writes to stderr.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any

__all__ = ["REDACTED", "configure", "ensure_default", "get_logger", "redact"]

REDACTED = "[REDACTED]"
_secret_keys: set[str] = set()

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "msg": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}

_threshold = logging.WARNING
"""Events below this level are dropped by the proxies while structlog is not loaded."""
_pending: tuple[int, bool | None] | None = None
"""The arguments of a ``configure`` call not yet applied to structlog (it was not loaded)."""
_ready = False
"""structlog is imported and set up (ours, or the application's own configuration)."""


def redact(keys: set[str]) -> None:
    """Redact these key names (``is_secret`` variables/inputs) from every log event from now on."""
    _secret_keys.update(keys)


def _redact_processor(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if _secret_keys:
        for key in list(event):
            if key in _secret_keys:
                event[key] = REDACTED
            elif isinstance(event[key], dict):
                event[key] = {k: (REDACTED if k in _secret_keys else v) for k, v in event[key].items()}
    return event


def _level_of(level: str | None) -> int:
    name = (level or os.environ.get("STEPFLOW_LOG_LEVEL") or "WARNING").upper()
    value = getattr(logging, name, logging.WARNING)
    return value if isinstance(value, int) else logging.WARNING


def _apply(lvl: int, json: bool | None) -> None:
    """Configure structlog (imports it)."""
    import structlog

    if json is None:
        json = not sys.stderr.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
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


def _apply_default() -> None:
    import structlog

    if not structlog.is_configured():
        structlog.configure(
            processors=[structlog.processors.add_log_level, structlog.dev.ConsoleRenderer(colors=False)],
            wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
            logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
            cache_logger_on_first_use=False,
        )


def _configure_now() -> None:
    """Apply the pending configuration (or the quiet default) to the loaded structlog, once."""
    global _ready, _pending
    if _ready:
        return
    _ready = True
    pending, _pending = _pending, None
    if pending is not None:
        _apply(*pending)
    else:
        _apply_default()


def _setup() -> None:
    """Import structlog (the load hook configures it) and make sure it is configured."""
    if not _ready:
        import structlog  # noqa: F401

        _configure_now()


class _StructlogLoadHook:
    """Configures structlog right after *anyone* imports it.

    Modules outside this package (and the server, plugin and protocol modules here) call
    ``structlog.get_logger`` directly; structlog's own default writes to stdout, so the pending
    configuration (or the quiet default) must be in place before their first event. Installed by
    ``configure``/``ensure_default`` while structlog is not loaded; removes itself on first use.
    """

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "structlog":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find is not None else None
            if spec is not None:
                break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_then_configure(module: Any) -> None:
            hide_rich = _pending is not None and "rich" not in sys.modules
            if hide_rich:
                # The CLI's console renderer formats tracebacks plainly: keep structlog.dev from
                # pulling in rich (~100 ms). rich stays importable for whoever wants it later.
                sys.modules["rich"] = None  # type: ignore[assignment]
            try:
                exec_module(module)
            finally:
                if hide_rich:
                    del sys.modules["rich"]
            _configure_now()

        spec.loader.exec_module = exec_then_configure  # this loader instance serves this import only
        return spec


_hook: _StructlogLoadHook | None = None


def _install_hook() -> None:
    global _hook
    if _hook is None or _hook not in sys.meta_path:
        _hook = _StructlogLoadHook()
        sys.meta_path.insert(0, _hook)


def configure(level: str | None = None, *, json: bool | None = None) -> None:
    """Configure structlog and stdlib logging to write to stderr at ``level`` (default: warnings).

    structlog itself is configured now if it is already loaded, else as soon as anything imports
    it (our loggers import it on the first event at an enabled level).
    """
    global _threshold, _pending, _ready
    lvl = _level_of(level)
    logging.basicConfig(stream=sys.stderr, level=max(lvl, logging.WARNING))
    _threshold = lvl
    if "structlog" in sys.modules:
        _pending = None
        _apply(lvl, json)
        _ready = True
    else:
        _pending = (lvl, json)
        _ready = False
        _install_hook()


def ensure_default() -> None:
    """Give structlog a quiet stderr default (warnings and up) when the embedding app configured nothing.

    structlog's own default prints every level to *stdout*, which would corrupt a JSON-RPC channel
    or a command's JSON output. An application that configures structlog itself is left alone.
    Without structlog loaded this only arms the load hook: the default is applied when it loads.
    """
    if "structlog" in sys.modules:
        if _pending is None:
            _apply_default()
    else:
        _install_hook()


class LazyLogger:
    """A structlog logger that loads structlog on the first event it really has to emit.

    Supports the ``FilteringBoundLogger`` calls used in the gateway (``debug`` ... ``critical``,
    ``exception``, ``bind``); anything else is forwarded to the real logger.
    """

    __slots__ = ("_name", "_context", "_real")

    def __init__(self, name: str | None, context: dict[str, Any] | None = None) -> None:
        self._name = name
        self._context = context or {}
        self._real: Any = None

    def _logger(self) -> Any:
        real = self._real
        if real is None:
            if not _ready:
                _setup()
            import structlog

            real = structlog.get_logger(self._name)
            if self._context:
                real = real.bind(**self._context)
            self._real = real
        return real

    def _emit(self, method: str, event: Any, args: tuple[Any, ...], kw: dict[str, Any]) -> Any:
        if not _ready and _LEVELS[method] < _threshold and "structlog" not in sys.modules:
            return None
        return getattr(self._logger(), method)(event, *args, **kw)

    def debug(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        return self._emit("debug", event, args, kw)

    def info(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        return self._emit("info", event, args, kw)

    def msg(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        return self._emit("msg", event, args, kw)

    def warning(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        return self._emit("warning", event, args, kw)

    warn = warning

    def error(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        return self._emit("error", event, args, kw)

    def exception(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        return self._emit("exception", event, args, kw)

    def critical(self, event: Any = None, *args: Any, **kw: Any) -> Any:
        return self._emit("critical", event, args, kw)

    fatal = critical

    def bind(self, **kw: Any) -> LazyLogger:
        return LazyLogger(self._name, {**self._context, **kw})

    def new(self, **kw: Any) -> LazyLogger:
        return LazyLogger(self._name, dict(kw))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger(), name)

    def __repr__(self) -> str:
        return f"<LazyLogger {self._name!r} {self._context!r}>"


def get_logger(name: str | None = None, **context: Any) -> LazyLogger:
    """A logger for ``name`` (use ``__name__``) that imports structlog only when it must."""
    return LazyLogger(name, context or None)
