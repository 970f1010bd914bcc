"""Owns one connection to an MCP server: transport choice, child env, and loss detection.

``open_connection(config, ...)`` is an async context manager yielding a :class:`Connection`
(the entered ``mcp.Client`` plus a ``lost`` event). It must be entered and exited in the same
task (the plugin's owner task): the SDK's task groups live inside it.

Loss detection: the SDK keeps ``async with Client`` open after the server's stdout (or SSE
stream) ends; only the requests fail with ``Connection closed``. We wrap the transport's read
stream so that its end sets ``Connection.lost``, which the owner task waits on. Transport crashes
(e.g. an HTTP POST that cannot connect) instead end the ``async with`` with an exception group.

Direct calls: on our own stdio transport (asyncio) and a handshake-era session, the connection
also carries the transport's :class:`~._direct.DirectCalls` (``Connection.direct``), which the
plugin uses for ``tools/call`` instead of the SDK's request machinery.
"""

from __future__ import annotations

import shutil
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import httpx2
import structlog
from mcp import Client, StdioServerParameters
from mcp.client.session import LoggingFnT
from mcp.client.sse import sse_client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from .._process import on_asyncio
from ._direct import DirectCalls
from ._stderr import StderrPump
from ._stdio import open_stdio
from .config import McpPluginConfig

__all__ = ["BASE_ENV_KEYS", "Connection", "child_env", "open_connection", "resolve_command"]

log = structlog.get_logger(__name__)

BASE_ENV_KEYS = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER")
"""The minimal environment every child gets from the gateway's own (config.md §2.1)."""

_SSE_READ_TIMEOUT_S = 300.0
"""How long an SSE stream may stay silent before the SDK drops it (its own default)."""
_HTTP_TIMEOUT_S = 30.0
"""Connect/write/pool timeout of the HTTP client (the SDK's default)."""

MessageHandler = Callable[["Connection", Any], Awaitable[None]]
"""``(connection, notification | Exception)``: server notifications of one connection."""


@dataclass(slots=True, eq=False)
class Connection:
    """One live MCP session, shared by every call of the plugin."""

    client: Client
    lost: anyio.Event = field(default_factory=anyio.Event)
    """Set once the session is unusable (stream ended, connection closed, session expired)."""
    lost_reason: str = ""
    refresh_wanted: anyio.Event = field(default_factory=anyio.Event)
    """Set by a ``list_changed`` notification; the owner's refresher re-lists the tools."""
    session_expired: bool = False
    """Streamable HTTP: the server rejected our ``Mcp-Session-Id`` (it restarted or expired it),
    so the failed request never ran and may be re-sent on a new session."""
    direct: DirectCalls | None = None
    """The direct ``tools/call`` path (stdio, asyncio, handshake era), else ``None``."""

    def mark_lost(self, reason: str) -> None:
        if not self.lost.is_set():
            self.lost_reason = reason
            self.lost.set()


class _WatchedReadStream:
    """Delegates to a transport read stream and reports its end (EOF or close) to a callback."""

    __slots__ = ("_inner", "_on_end")

    def __init__(self, inner: Any, on_end: Callable[[], None]) -> None:
        self._inner = inner
        self._on_end = on_end

    @property
    def last_context(self) -> Any:
        # The SDK's dispatcher reads the sender's contextvars snapshot from here (duck-typed).
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._on_end()
            raise

    def __aiter__(self) -> _WatchedReadStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def __aenter__(self) -> _WatchedReadStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


class _WatchedTransport:
    """A ``Transport`` wrapper: enters the real transport, wraps its read stream."""

    def __init__(self, inner: Any, on_end: Callable[[], None]) -> None:
        self._inner = inner
        self._on_end = on_end
        self.read: Any = None
        """The transport's own read stream, once entered."""

    async def __aenter__(self) -> tuple[Any, Any]:
        read, write = await self._inner.__aenter__()
        self.read = read
        return _WatchedReadStream(read, self._on_end), write

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        suppress: bool | None = await self._inner.__aexit__(exc_type, exc, tb)
        return suppress


def _rejects_session(response: httpx2.Response) -> bool:
    """A 404 (spec) or 400 (TypeScript SDK) answer to a request that carried a session id."""
    return response.status_code in (400, 404) and "mcp-session-id" in response.request.headers


async def _says_session(response: httpx2.Response) -> bool:
    # The SDK turns these answers into generic errors; the body tells a forgotten session
    # ("No valid session ID provided") from an ordinary bad request. It is small, and reading it
    # here leaves it cached for the SDK.
    if response.status_code == 404:
        return True
    try:
        body = await response.aread()
    except httpx2.HTTPError:
        return False
    return b"session" in body.lower()


def child_env(environ: Any, configured: dict[str, str]) -> dict[str, str]:
    """The stdio child's environment: the minimal base from ``environ``, then ``configured``."""
    env = {k: environ[k] for k in BASE_ENV_KEYS if k in environ and not str(environ[k]).startswith("()")}
    env.update(configured)
    return env


def resolve_command(command: str, cwd: Path, env: dict[str, str]) -> str:
    """Find the executable: a relative path is taken against ``cwd``; a bare name is looked up
    on the child's ``PATH``, then in ``cwd`` (config.md §2.3)."""
    path = Path(command)
    if path.is_absolute():
        return command
    if "/" in command:
        return str(cwd / path)
    found = shutil.which(command, path=env.get("PATH"))
    if found:
        return found
    local = cwd / command
    if local.is_file():
        return str(local)
    return command


@asynccontextmanager
async def open_connection(
    config: McpPluginConfig,
    *,
    plugin: str,
    working_directory: Path,
    environ: Any,
    message_handler: MessageHandler,
    logging_callback: LoggingFnT,
    stderr_tail: deque[str] | None = None,
) -> AsyncIterator[Connection]:
    """Connect and handshake (in ``config.mode``); yield the live connection.

    No timeout here: the caller bounds the whole connect + handshake + listing.

    Raises:
        OSError: the child could not be spawned.
        Exception: transport and handshake failures, often wrapped in exception groups.
    """
    holder: list[Connection] = []

    def on_end() -> None:
        if holder:
            holder[0].mark_lost("the server closed the connection")

    async def on_message(message: Any) -> None:
        # Notifications can arrive during the handshake, before `holder` is filled.
        if holder:
            await message_handler(holder[0], message)

    async with AsyncExitStack() as stack:
        transport: Any
        if config.transport == "stdio":
            assert config.command is not None
            cwd = working_directory / config.cwd if config.cwd else working_directory
            env = child_env(environ, config.env)
            params = StdioServerParameters(
                command=resolve_command(config.command, cwd, env), args=list(config.args), env=env, cwd=cwd
            )
            pump = StderrPump(plugin, stderr_tail)
            # Our copy of the pipe's write end is closed when the connection ends; the reader
            # thread then stops once the child (and anything it spawned) has exited too.
            stack.callback(pump.close)
            if on_asyncio():  # our stdio transport is asyncio only
                transport = open_stdio(params, pump.writer)
            else:
                transport = stdio_client(params, errlog=pump.writer)
        elif config.transport == "http":
            assert config.url is not None
            # What the SDK's own client factory builds: our timeouts, no redirect following
            # (the SDK's transports follow same-origin redirects themselves).
            http_client = httpx2.AsyncClient(
                headers=dict(config.headers) or None,
                timeout=httpx2.Timeout(_HTTP_TIMEOUT_S, read=_SSE_READ_TIMEOUT_S),
            )

            async def on_response(response: httpx2.Response) -> None:
                if holder and _rejects_session(response) and await _says_session(response):
                    holder[0].session_expired = True

            http_client.event_hooks["response"].append(on_response)
            await stack.enter_async_context(http_client)
            transport = streamable_http_client(config.url, http_client=http_client)
        else:
            assert config.url is not None
            transport = sse_client(
                config.url,
                headers=dict(config.headers) or None,
                timeout=_HTTP_TIMEOUT_S,
                sse_read_timeout=_SSE_READ_TIMEOUT_S,
            )
        watched = _WatchedTransport(transport, on_end)
        client = Client(
            watched,
            mode=config.mode,
            message_handler=on_message,
            logging_callback=logging_callback,
            # We keep our own catalogue; the SDK's response cache would only hide list_changed.
            cache=None,
        )
        conn = Connection(client)
        holder.append(conn)
        await stack.enter_async_context(client)
        direct: DirectCalls | None = getattr(watched.read, "direct", None)
        version = client.protocol_version
        if direct is not None and version is not None and version not in MODERN_PROTOCOL_VERSIONS:
            conn.direct = direct.enable(version)
        log.debug(
            "mcp connected",
            plugin=plugin,
            transport=config.transport,
            protocol_version=client.protocol_version,
            direct_calls=conn.direct is not None,
        )
        yield conn
