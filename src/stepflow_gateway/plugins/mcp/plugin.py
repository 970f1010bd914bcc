"""Owns the MCP plugin (``type: mcp``): one long-lived MCP session per server, shared by all calls.

Structure (mcp.md §4):

* **Owner task** (:meth:`McpPlugin.serve`). It alone enters and exits ``async with Client``
  (anyio: cancel scopes are entered and exited in the same task). It connects, lists every tool
  page, publishes the connection and the catalogue, then waits until the connection is lost or
  the plugin closes. After a loss it reconnects lazily: on the next call, spacing failed attempts
  with the config's ``retry.backoff``.
* **Calls** (:meth:`McpPlugin.execute`) run in the callers' tasks and share the published
  session; the SDK multiplexes them. ``maxConcurrency`` caps them with a ``CapacityLimiter``.
  Cancelling a caller cancels its request (the SDK sends ``notifications/cancelled``). On stdio
  handshake-era sessions ``tools/call`` skips the SDK's request machinery (``_direct.py``) with
  the same results, errors, timeouts, cancellation and progress.
* **Refresh**: ``notifications/tools/list_changed`` (handshake era) or a ``listen()`` stream
  (2026-07-28) re-lists the tools, debounced, and swaps the catalogue atomically.

Interrupted calls are never retried (tools are not known to be idempotent), except a call
rejected because an HTTP session expired: the server never ran it, so it is re-sent once on a
fresh session.

Every ``tools/call`` carries ``_meta["io.stepflow/idempotency-key"]`` =
``"{runId}/{itemIndex}/{stepId}"`` (:func:`idempotency_key`): the same value for every attempt of
one step execution, a retry or a re-run after recovery included, so a server can recognise a call
it has already carried out.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections import deque
from functools import partial
from typing import Any, ClassVar, Final, cast

import anyio
import structlog
from anyio.abc import TaskStatus
from mcp.shared.exceptions import MCPError
from mcp.types import LoggingMessageNotificationParams, ToolListChangedNotification
from mcp_types import CONNECTION_CLOSED, INVALID_REQUEST, REQUEST_TIMEOUT, RequestParamsMeta
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from ...core.result import FlowResult
from ...errors import ComponentError, PluginStartError
from ...types import JsonValue
from ..base import ComponentInfo, ExecutionContext, PluginConfig, PluginContext
from . import mapping
from ._catalogue import Catalogue, build_catalogue, list_all_tools
from ._connection import Connection, open_connection
from ._direct import DirectCalls, NotEncodable, check_call_result
from ._extras import call_extra
from .config import McpPluginConfig

__all__ = ["IDEMPOTENCY_META_KEY", "McpPlugin", "idempotency_key"]

log = structlog.get_logger(__name__)

IDEMPOTENCY_META_KEY: Final = "io.stepflow/idempotency-key"
"""The ``tools/call`` ``_meta`` key of :func:`idempotency_key`."""


def idempotency_key(ctx: ExecutionContext) -> str:
    """``{runId}/{itemIndex}/{stepId}``: stable across the attempts of one step execution."""
    return f"{ctx.run_id}/{ctx.item_index}/{ctx.step_id}"


REFRESH_DEBOUNCE_S = 0.2
"""Coalesce bursts of ``list_changed`` into one re-listing (mcp.md §4)."""
CLOSE_TIMEOUT_S = 10.0
"""Bound on close(): the SDK's stdio shutdown takes at most ~6 s (2 s grace, SIGTERM, SIGKILL)."""
_STDERR_TAIL_LINES = 5
"""How many of the server's last stderr lines a start/reconnect failure quotes."""
_SESSION_EXPIRED = "Session terminated"
"""The SDK's message for an HTTP 404 on a known session id (streamable HTTP)."""


class McpPlugin:
    """A component source backed by one MCP server; each tool ``X`` is the component ``/X``."""

    config_model: ClassVar[type[PluginConfig]] = McpPluginConfig

    def __init__(self, name: str, config: McpPluginConfig) -> None:
        self.name = name
        self.config = config
        self._timeout_s = config.timeout_s
        self._start_timeout_s = config.start_timeout_ms / 1000.0
        self._output = config.output
        self._limiter = anyio.CapacityLimiter(config.max_concurrency) if config.max_concurrency else None
        self._log = log.bind(plugin=name)
        self._ctx: PluginContext | None = None
        self._conn: Connection | None = None
        self._catalogue = Catalogue({}, [])
        self._catalogue_gen = 0
        self._last_error = "not connected"
        self._stderr_tail: deque[str] = deque(maxlen=_STDERR_TAIL_LINES)
        self._closing = False
        self._owner_task: asyncio.Task[None] | None = None
        """Strong reference: the event loop keeps only weak ones."""
        self._owner_done: anyio.Event | None = None
        self._owner_scope: anyio.CancelScope | None = None
        # Created in serve(): anyio primitives want a running event loop.
        self._want: anyio.Event | None = None
        self._attempt_done: anyio.Event | None = None
        self._refresh_lock: anyio.Lock | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self, ctx: PluginContext) -> None:
        """Connect, handshake and list the tools (bounded by ``startTimeoutMs``).

        The owner task (:meth:`serve`) runs as its own asyncio task, so the caller may wrap
        ``start`` in any cancel scope (``fail_after``) and call ``close`` from any task. Hosts
        that prefer structured concurrency run ``await tg.start(plugin.serve, ctx)`` instead.

        Raises:
            PluginStartError: spawn, connect, handshake or listing failed or timed out.
        """
        started = anyio.Event()
        failure: list[BaseException] = []
        self._owner_done = anyio.Event()

        async def owner() -> None:
            try:
                await self.serve(ctx, task_status=_StartedFlag(started))
            except BaseException as exc:  # noqa: BLE001 - handed to start(), or logged below
                if not started.is_set():
                    failure.append(exc)
                elif not isinstance(exc, asyncio.CancelledError):
                    self._log.error("mcp owner task crashed", error=describe(exc))
            finally:
                started.set()
                assert self._owner_done is not None
                self._owner_done.set()

        self._owner_task = asyncio.get_running_loop().create_task(owner(), name=f"mcp-owner-{self.name}")
        try:
            await started.wait()
        except BaseException:
            await self.close()
            raise
        if failure:
            raise failure[0]

    async def serve(
        self, ctx: PluginContext, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """The owner task: run connections until :meth:`close`; ``started`` after the first one.

        Raises:
            PluginStartError: the first connection failed (before ``started``). Later failures
                are logged and reported to the calls that wait for a reconnect, never raised.
        """
        self._ctx = ctx
        self._want = anyio.Event()
        self._attempt_done = anyio.Event()
        self._refresh_lock = anyio.Lock()
        with anyio.CancelScope() as scope:
            self._owner_scope = scope
            if self._closing:
                scope.cancel()
            failures = 0
            first = True
            while True:
                if not first:
                    # Lazy reconnect: wait for a call that needs the server (mcp.md §4).
                    await self._want.wait()
                    if failures:
                        await anyio.sleep(self._backoff_s(failures))
                self._want = anyio.Event()
                self._stderr_tail.clear()
                try:
                    await self._run_connection(task_status if first else None)
                    failures = 0
                except Exception as exc:
                    detail = describe(exc)
                    if self._stderr_tail:
                        # Let stderr lines written just before the exit reach the tail.
                        await anyio.sleep(0.05)
                        detail = f"{detail} (server stderr: {' | '.join(self._stderr_tail)})"
                    if first:
                        raise PluginStartError(
                            f"MCP server failed to start: {detail}", plugin=self.name
                        ) from exc
                    failures += 1
                    self._last_error = detail
                    self._log.warning("mcp reconnect failed", error=detail, failures=failures)
                    self._signal_attempt()
                first = False

    async def close(self) -> None:
        """Stop the owner task and the server; bounded and shielded. Idempotent."""
        self._closing = True
        if self._owner_scope is not None:
            self._owner_scope.cancel()
        if self._attempt_done is not None:
            self._attempt_done.set()
        done = self._owner_done
        if done is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT_S) as scope:
                await done.wait()
            if scope.cancelled_caught:
                self._log.warning("mcp owner task did not stop in time", timeout_s=CLOSE_TIMEOUT_S)

    # -- catalogue ----------------------------------------------------------------------------------

    async def list_components(self) -> list[ComponentInfo]:
        """The current catalogue: one component per tool, plus resource/prompt components."""
        return list(self._catalogue.components)

    @property
    def connected(self) -> bool:
        """Whether a live MCP session is published right now."""
        conn = self._conn
        return conn is not None and not conn.lost.is_set()

    def validate_input(self, component: str, input: JsonValue) -> list[str]:
        """Check a literal input against the tool's input schema; messages name JSON paths."""
        hit = self._catalogue.resolve(component)
        if hit is None:
            return [mapping.unknown_component_message(component)]
        is_tool, name = hit
        value = {} if input is None else input
        if not is_tool:
            return [] if isinstance(value, dict) else [f"$: {component} needs an object as input"]
        return self._catalogue.validate(name, value)

    # -- calls ----------------------------------------------------------------------------------------

    async def execute(self, component: str, input: JsonValue, ctx: ExecutionContext) -> FlowResult:
        """Call the tool (or resource/prompt component) named ``component``.

        Returns ``success(output)``, or ``failed`` for ``isError`` results and MCP JSON-RPC
        errors (mcp.md §3).

        Raises:
            ComponentError: unknown component, bad input, timeout, lost connection, output that
                fails the tool's own schema, or a server that cannot be reached.
        """
        hit = self._catalogue.resolve(component)
        if hit is None:
            hit = await self._resolve_after_refresh(component)
        is_tool, name = hit
        if not is_tool:
            return await self._execute_extra(name, input)
        arguments = mapping.input_to_arguments(name, input)
        meta = {IDEMPOTENCY_META_KEY: idempotency_key(ctx)}
        # An open map at runtime (PEP 728 `extra_items`), which mypy does not model yet.
        sdk_meta = cast("RequestParamsMeta", meta)
        for attempt in (1, 2):
            conn = self._conn
            if conn is None or conn.lost.is_set():
                conn = await self._await_connection()
            if conn.direct is not None:
                try:
                    return await self._call_direct(
                        conn, conn.direct, component, name, arguments, ctx.step_id, meta
                    )
                except NotEncodable:
                    pass  # e.g. an integer beyond 64 bits; nothing was sent, the SDK path can send it
            progress = partial(self._on_progress, component, ctx.step_id)
            try:
                if self._limiter is None:
                    result = await conn.client.call_tool(
                        name, arguments, self._timeout_s, progress, meta=sdk_meta
                    )
                else:
                    async with self._limiter:
                        result = await conn.client.call_tool(
                            name, arguments, self._timeout_s, progress, meta=sdk_meta
                        )
            except MCPError as exc:
                if attempt == 1 and (
                    conn.session_expired or (exc.code == INVALID_REQUEST and exc.message == _SESSION_EXPIRED)
                ):
                    # The server forgot our session (restart or expiry): it never ran this call.
                    self._log.info("mcp session expired; re-initialising", component=component)
                    conn.mark_lost("the HTTP session expired")
                    continue
                return self._map_mcp_error(conn, "tools/call", name, exc)
            except Exception as exc:
                raise self._call_failure(conn, exc) from exc
            return mapping.map_call_result(name, result, self._output)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _call_direct(
        self,
        conn: Connection,
        direct: DirectCalls,
        component: str,
        name: str,
        arguments: dict[str, Any],
        step_id: str,
        meta: dict[str, Any] | None = None,
    ) -> FlowResult:
        """``tools/call`` on the direct path: the same outcomes as the SDK path in :meth:`execute`.

        Raises:
            NotEncodable: the arguments cannot be encoded (nothing was sent).
            ComponentError: as :meth:`execute`.
        """
        progress = partial(self._log_progress, component, step_id)
        try:
            if self._limiter is None:
                raw = await direct.call(name, arguments, self._timeout_s, progress, meta)
            else:
                async with self._limiter:
                    raw = await direct.call(name, arguments, self._timeout_s, progress, meta)
        except MCPError as exc:
            return self._map_mcp_error(conn, "tools/call", name, exc)
        except NotEncodable:
            raise
        except Exception as exc:
            raise self._call_failure(conn, exc) from exc
        tool = self._catalogue.tools.get(name)
        if tool is not None and tool.output_schema is None:
            # Nothing to check against a schema: a plain result maps without building models.
            plain = mapping.map_plain_call_result(name, raw, self._output)
            if plain is not None:
                return plain
        try:
            assert direct.adapter is not None
            # What the SDK's call_tool does with a result, in its order.
            result = check_call_result(raw, direct.version, direct.adapter)
            if not result.is_error:
                await conn.client.session.validate_tool_result(name, result)
        except MCPError as exc:
            return self._map_mcp_error(conn, "tools/call", name, exc)
        except Exception as exc:
            raise self._call_failure(conn, exc) from exc
        return mapping.map_call_result(name, result, self._output)

    async def _execute_extra(self, component: str, input: JsonValue) -> FlowResult:
        conn = self._conn
        if conn is None or conn.lost.is_set():
            conn = await self._await_connection()
        try:
            with anyio.fail_after(self._timeout_s):
                if self._limiter is None:
                    return await call_extra(conn.client, component, input)
                async with self._limiter:
                    return await call_extra(conn.client, component, input)
        except ComponentError:
            raise
        except TimeoutError as exc:
            raise ComponentError(
                mapping.timeout_message(component[1:], None, self.config.timeout_ms), plugin=self.name
            ) from exc
        except MCPError as exc:
            if exc.code in (REQUEST_TIMEOUT, CONNECTION_CLOSED):
                return self._map_mcp_error(conn, component[1:], None, exc)
            mcp_error: dict[str, Any] = {"code": exc.code, "message": exc.message}
            if exc.data is not None:
                mcp_error["data"] = exc.data
            return FlowResult.failed(500, f"MCP request '{component[1:]}' failed", {"mcpError": mcp_error})
        except Exception as exc:
            raise self._call_failure(conn, exc) from exc

    def _map_mcp_error(self, conn: Connection, method: str, tool: str | None, exc: MCPError) -> FlowResult:
        """Timeouts and lost connections raise component errors; other errors are failures."""
        if exc.code == REQUEST_TIMEOUT:
            raise ComponentError(
                mapping.timeout_message(method, tool, self.config.timeout_ms), plugin=self.name
            ) from exc
        if exc.code == CONNECTION_CLOSED:
            conn.mark_lost(exc.message)
            raise ComponentError(mapping.connection_lost_message(exc.message), plugin=self.name) from exc
        assert tool is not None
        return mapping.mcp_error_result(tool, exc.code, exc.message, exc.data)

    def _call_failure(self, conn: Connection, exc: Exception) -> ComponentError:
        """A ``ComponentError`` for a non-MCPError exception out of the SDK."""
        if isinstance(exc, ValidationError):
            return ComponentError(
                f"MCP server returned an invalid result: {exc.errors()[0].get('msg', exc)}", plugin=self.name
            )
        if isinstance(exc, RuntimeError) and (
            "structured content" in str(exc) or str(exc).startswith("Invalid schema")
        ):
            return ComponentError(mapping.schema_error_message(str(exc)), plugin=self.name)
        if isinstance(exc, (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError)):
            conn.mark_lost(describe(exc))
            return ComponentError(mapping.connection_lost_message(describe(exc)), plugin=self.name)
        return ComponentError(f"MCP call failed: {describe(exc)}", plugin=self.name)

    async def _await_connection(self) -> Connection:
        """The live connection, asking the owner task to reconnect if the server is down.

        Bounded by the call timeout (or twice the start timeout when calls are unbounded).

        Raises:
            ComponentError: the plugin is closed, or the reconnect attempt failed or timed out.
        """
        assert self._want is not None
        limit = self._timeout_s or 2 * self._start_timeout_s
        with anyio.move_on_after(limit):
            while not self._closing:
                done = self._attempt_done
                assert done is not None
                self._want.set()
                await done.wait()
                conn = self._conn
                if conn is not None and not conn.lost.is_set():
                    return conn
                if self._closing:
                    break
                raise ComponentError(
                    f"MCP server '{self.name}' is unavailable: {self._last_error}", plugin=self.name
                )
        if self._closing:
            raise ComponentError(f"MCP plugin '{self.name}' is closed", plugin=self.name)
        raise ComponentError(
            f"MCP server '{self.name}' did not reconnect within {int(limit * 1000)} ms: {self._last_error}",
            plugin=self.name,
        )

    async def _resolve_after_refresh(self, component: str) -> tuple[bool, str]:
        """An unknown name triggers one catalogue refresh (coalesced across callers)."""
        seen = self._catalogue_gen
        conn = self._conn
        if conn is None or conn.lost.is_set():
            conn = await self._await_connection()
        assert self._refresh_lock is not None
        async with self._refresh_lock:
            if self._catalogue_gen == seen:
                try:
                    await self._refresh(conn)
                except Exception as exc:
                    self._log.warning("mcp tool refresh failed", error=describe(exc))
        hit = self._catalogue.resolve(component)
        if hit is None:
            raise ComponentError(mapping.unknown_component_message(component), plugin=self.name)
        return hit

    async def _on_progress(
        self, component: str, step_id: str, progress: float, total: float | None, message: str | None
    ) -> None:
        self._log_progress(component, step_id, progress, total, message)

    def _log_progress(
        self, component: str, step_id: str, progress: float, total: float | None, message: str | None
    ) -> None:
        self._log.debug(
            "mcp progress",
            component=component,
            step_id=step_id,
            progress=progress,
            total=total,
            message=message,
        )

    # -- owner-task internals -------------------------------------------------------------------

    async def _run_connection(self, task_status: TaskStatus[None] | None) -> None:
        """One connection's lifetime: connect + list (bounded), publish, serve until lost.

        Returns once an established connection is lost; raises if it never got established.
        """
        ctx = self._ctx
        assert ctx is not None
        established = False
        deadline = anyio.CancelScope(deadline=anyio.current_time() + self._start_timeout_s)
        try:
            # One scope around the whole `async with`: its deadline bounds connect, handshake
            # and listing, and is lifted once they are done. (A `fail_after` around the entry
            # alone would exit before the SDK's task groups: non-LIFO cancel scopes.)
            with deadline:
                async with open_connection(
                    self.config,
                    plugin=self.name,
                    working_directory=ctx.working_directory,
                    environ=ctx.environ,
                    message_handler=self._on_message,
                    logging_callback=self._on_server_log,
                    stderr_tail=self._stderr_tail,
                ) as conn:
                    try:
                        async with anyio.create_task_group() as tg:
                            tg.start_soon(self._refresher, conn)
                            caps = conn.client.server_capabilities.tools
                            if (
                                conn.client.protocol_version in MODERN_PROTOCOL_VERSIONS
                                and caps is not None
                                and caps.list_changed
                            ):
                                # Subscribe before the first listing: no change can fall between.
                                await tg.start(self._listener, conn)
                            tools = await list_all_tools(conn.client)
                            changed = self._set_catalogue(
                                build_catalogue(tools, conn.client.server_capabilities)
                            )
                            deadline.deadline = math.inf
                            established = True
                            self._conn = conn
                            self._log.info(
                                "mcp server ready",
                                tools=len(tools),
                                protocol_version=conn.client.protocol_version,
                            )
                            if task_status is not None:
                                task_status.started()
                            elif changed:
                                await self._notify_changed()
                            self._signal_attempt()
                            await conn.lost.wait()
                            tg.cancel_scope.cancel()
                    finally:
                        if self._conn is conn:
                            self._conn = None
                        conn.mark_lost("the plugin is closing")
                        self._last_error = conn.lost_reason
                    self._log.warning("mcp connection lost", reason=conn.lost_reason)
        except Exception as exc:
            if established:
                self._log.warning("mcp connection lost", error=describe(exc))
                self._last_error = describe(exc)
                return
            raise
        if not established:
            raise TimeoutError(
                f"connect, handshake and tool listing did not finish within "
                f"{self.config.start_timeout_ms} ms (startTimeoutMs)"
            )

    def _signal_attempt(self) -> None:
        """Wake the calls waiting for the outcome of a connection attempt."""
        done = self._attempt_done
        self._attempt_done = anyio.Event()
        if done is not None:
            done.set()

    def _set_catalogue(self, catalogue: Catalogue) -> bool:
        """Swap the catalogue; return whether the component list changed."""
        old = self._catalogue
        self._catalogue = catalogue
        self._catalogue_gen += 1
        return [c.to_json() for c in old.components] != [c.to_json() for c in catalogue.components]

    async def _refresh(self, conn: Connection) -> None:
        """Re-list every tool page on ``conn`` and swap the catalogue; notify on change."""
        with anyio.fail_after(self._timeout_s or self._start_timeout_s):
            tools = await list_all_tools(conn.client)
        changed = self._set_catalogue(build_catalogue(tools, conn.client.server_capabilities))
        self._log.info("mcp tools refreshed", tools=len(tools), changed=changed)
        if changed:
            await self._notify_changed()

    async def _notify_changed(self) -> None:
        """Tell the registry the component list changed (``PluginContext.on_components_changed``)."""
        callback = self._ctx.on_components_changed if self._ctx is not None else None
        if callback is None:
            return
        try:
            outcome = callback()
            if inspect.isawaitable(outcome):
                await outcome
        except Exception as exc:
            self._log.warning("on_components_changed failed", error=describe(exc))

    async def _refresher(self, conn: Connection) -> None:
        while True:
            await conn.refresh_wanted.wait()
            await anyio.sleep(REFRESH_DEBOUNCE_S)
            conn.refresh_wanted = anyio.Event()
            assert self._refresh_lock is not None
            async with self._refresh_lock:
                try:
                    await self._refresh(conn)
                except Exception as exc:
                    self._log.warning("mcp tool refresh failed", error=describe(exc))

    async def _listener(
        self, conn: Connection, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """2026-07-28 connections: ``list_changed`` arrives only on a ``listen()`` stream.

        ``started`` once the server acknowledged the subscription, or once it failed: a server
        that cannot listen still serves calls, it just never refreshes by itself.
        """
        reported = False
        try:
            async with conn.client.listen(tools_list_changed=True) as sub:
                task_status.started()
                reported = True
                async for _event in sub:
                    conn.refresh_wanted.set()
        except Exception as exc:
            self._log.debug("mcp listen stream ended", error=describe(exc))
        finally:
            if not reported:
                task_status.started()

    async def _on_message(self, conn: Connection, message: Any) -> None:
        if isinstance(message, ToolListChangedNotification):
            conn.refresh_wanted.set()
        elif isinstance(message, Exception):
            self._log.warning("mcp transport reported an error", error=describe(message))

    async def _on_server_log(self, params: LoggingMessageNotificationParams) -> None:
        self._log.info("mcp server log", level=params.level, logger=params.logger, data=params.data)

    def _backoff_s(self, failures: int) -> float:
        retry = self._ctx.retry if self._ctx is not None else None
        backoff = getattr(retry, "backoff", None)
        if backoff is not None and hasattr(backoff, "jittered_delay_s"):
            return float(backoff.jittered_delay_s(failures))
        # The config default: fibonacci 1000 -> 10000 ms (config.md §6).
        a, b = 1, 1
        for _ in range(failures - 1):
            a, b = b, a + b
        return min(1.0 * a, 10.0)


class _StartedFlag:
    """A ``TaskStatus`` that sets an event: lets :meth:`McpPlugin.start` await ``serve``."""

    __slots__ = ("_event",)

    def __init__(self, event: anyio.Event) -> None:
        self._event = event

    def started(self, value: object = None) -> None:
        self._event.set()


def describe(exc: BaseException) -> str:
    """One line for an exception, flattening the groups that escape ``async with Client``."""
    if isinstance(exc, BaseExceptionGroup):
        parts = [describe(e) for e in exc.exceptions]
        return "; ".join(dict.fromkeys(parts))
    if isinstance(exc, MCPError):
        return f"MCP error {exc.code}: {exc.message}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
