"""Choosing and building the state store from the config's ``stateStore`` section (config.md §3).

``type: postgres`` with a ``databaseUrl`` is a ``postgres.PostgresStore`` (imported only then).

``open_store`` returns an *unopened* store: enter it with ``async with store:`` (or call
``open()``/``close()``). With no ``stateStore`` section, ``default`` decides: ``"memory"`` for
``run``/``test``, ``"sqlite"`` for ``serve`` (``<data_dir>/state.db``, created if missing).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ConfigError, StateStoreError
from .base import StateStore
from .memory import MemoryStore

if TYPE_CHECKING:
    from .sqlite import SqliteStore

__all__ = ["StateStoreSettings", "open_store"]


class StateStoreSettings(Protocol):
    """What ``open_store`` reads: the fields of ``config.model.StateStoreConfig``."""

    type: str
    database_url: str | None
    auto_migrate: bool
    max_connections: int | None


_MEMORY_NAMES = ("inMemory", "memory", "in_memory")


def open_store(cfg: StateStoreSettings | Any | None, *, default: str, data_dir: Path) -> StateStore:
    """Build the store ``cfg`` describes, or the ``default`` kind when ``cfg`` is ``None``.

    Raises ``ConfigError`` for an unsupported type and ``StateStoreError`` for a bad URL or a
    data directory that cannot be created.
    """
    if cfg is None:
        if default in _MEMORY_NAMES:
            return MemoryStore()
        if default == "sqlite":
            return _default_sqlite(data_dir)
        raise ValueError(f"unknown default state store {default!r}; expected 'memory' or 'sqlite'")

    kind = getattr(cfg, "type", None)
    if kind in _MEMORY_NAMES:
        return MemoryStore()
    if kind == "sqlite":
        auto_migrate = bool(getattr(cfg, "auto_migrate", True))
        url = getattr(cfg, "database_url", None)
        if not url:
            return _default_sqlite(data_dir, auto_migrate=auto_migrate)
        from .sqlite import SqliteStore, parse_database_url  # only SQLite users pay its import

        return SqliteStore(parse_database_url(url), auto_migrate=auto_migrate, url=url)
    if kind == "postgres":
        return _postgres(cfg)
    raise ConfigError(
        f"unknown state store type {kind!r}; expected 'inMemory', 'sqlite' or 'postgres'",
        json_path="$.stateStore.type",
    )


def _postgres(cfg: Any) -> StateStore:
    """A ``PostgresStore`` for ``databaseUrl`` (psycopg is imported only here)."""
    url = getattr(cfg, "database_url", None)
    if not url:
        raise ConfigError(
            "state store 'postgres' needs a databaseUrl (e.g. 'postgresql://user@host:5432/stepflow')",
            json_path="$.stateStore.databaseUrl",
        )
    try:
        from .postgres import PostgresStore
    except ImportError as exc:
        raise StateStoreError(
            f"state store 'postgres' needs psycopg 3 with its pool ({exc}); "
            "install it with: pip install 'stepflow-gateway[postgres]'"
        ) from exc
    max_connections = getattr(cfg, "max_connections", None)
    return PostgresStore(
        url,
        auto_migrate=bool(getattr(cfg, "auto_migrate", True)),
        **({} if max_connections is None else {"max_connections": int(max_connections)}),
    )


def _default_sqlite(data_dir: Path, *, auto_migrate: bool = True) -> SqliteStore:
    """``<data_dir>/state.db``, its directory created."""
    from .sqlite import SqliteStore, SqliteTarget

    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StateStoreError(
            f"cannot create the state directory '{data_dir}': {exc.strerror or exc}"
        ) from exc
    return SqliteStore(SqliteTarget(data_dir / "state.db", "rwc"), auto_migrate=auto_migrate)
