"""Owns the ``type: stepflow`` plugin: one connection per server incarnation held open by an owner
task, the ``initialize``/``initialized`` handshake (with the optional fast-transport switch),
``components/list|info|execute``, restart-and-re-initialise after a crash, and the transport retry
of an interrupted execute with ``attempt + 1`` (protocol.md §3, §6–8; config.md §2.3, §6).

Failure mapping (flow-format.md §9.2): a JSON-RPC error from ``components/execute`` raises
``ComponentError`` whose stack ends in ``component server error(<code>): <message>``; transport
failures that are not (or no longer) retried raise ``ComponentError`` with the transport message.
A successful response is always ``success(output)``: a FlowResult-shaped output (stepflow-py 0.7's
``SkipStep``) is ordinary data, as upstream (protocol.md §3.3).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import anyio
import structlog
from anyio.abc import TaskGroup, TaskStatus

from ...core.result import FlowResult
from ...errors import (
    CallTimeout,
    ComponentError,
    ConnectError,
    GatewayError,
    PluginStartError,
    ProtocolError,
    TransportClosed,
    TransportError,
    UnknownComponentError,
)
from ...protocol.framepeer import FramePeer
from ...protocol.jsonrpc import Peer, RpcError
from ...protocol.messages import OFFER_FIELD, ComponentInfoModel, InitializeResult, Method
from ..base import ComponentInfo, ExecutionContext, PluginContext
from .callbacks import CallbackHandler
from .config import StepflowPluginConfig
from .fast import FastListener, open_fast_listener
from .http import PORT_LINE_TIMEOUT, HttpChannel, drain_stdout, make_client, read_port, wait_healthy
from .stdio import Child, child_env, open_child, resolve_command

__all__ = ["StepflowPlugin"]

log = structlog.get_logger(__name__)

DEFAULT_TRANSPORT_MAX_RETRIES = 3
# Fibonacci 1000 → 10000 ms, the config.md §6 default when the config has no ``retry`` section.
_FIB = (1, 1, 2, 3, 5, 8, 13)


def _default_delay_ms(n: int) -> float:
    return min(1000 * _FIB[min(max(n, 1), len(_FIB)) - 1], 10000)


class _Link(Protocol):
    async def request(
        self,
        method: str,
        params: Any,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        ctx: ExecutionContext | None = None,  # noqa: ASYNC109
    ) -> Any: ...

    async def notify(self, method: str, params: Any = None) -> None: ...


class _PeerLink:
    """A Peer seen as a link (the execution context is found from ``observability`` instead)."""

    __slots__ = ("peer",)

    def __init__(self, peer: Peer | FramePeer) -> None:
        self.peer = peer

    async def request(
        self,
        method: str,
        params: Any,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        ctx: ExecutionContext | None = None,  # noqa: ASYNC109
    ) -> Any:
        return await self.peer.request(method, params, timeout=timeout)

    async def notify(self, method: str, params: Any = None) -> None:
        await self.peer.notify(method, params)


@dataclass(slots=True, eq=False)
class _Connection:
    """One incarnation of the server, as the owner task publishes it."""

    generation: int
    link: _Link
    fast: bool
    stop: anyio.Event = field(default_factory=anyio.Event)
    dead: bool = False
    reason: str = ""

    def kill(self, reason: str) -> None:
        if not self.dead:
            self.dead = True
            self.reason = reason
        self.stop.set()


class _Status:
    """Wraps ``task_status`` to remember whether the connection was published."""

    __slots__ = ("_inner", "published")

    def __init__(self, inner: TaskStatus[_Connection]) -> None:
        self._inner = inner
        self.published = False

    def started(self, value: _Connection) -> None:
        self.published = True
        self._inner.started(value)


def _leaf(exc: BaseException) -> BaseException:
    """The meaningful exception inside (nested, single-member) exception groups."""
    while isinstance(exc, BaseExceptionGroup):
        inner = [e for e in exc.exceptions if not isinstance(e, anyio.get_cancelled_exc_class())]
        if not inner:
            return exc
        exc = inner[0]
    return exc


async def _wait_any(*events: anyio.Event) -> None:
    async with anyio.create_task_group() as tg:

        async def wait(event: anyio.Event) -> None:
            await event.wait()
            tg.cancel_scope.cancel()

        for event in events:
            tg.start_soon(wait, event)


def _component_failure(exc: BaseException, plugin: str) -> ComponentError:
    if isinstance(exc, RpcError):
        text = f"component server error({exc.code}): {exc.message}"
    else:
        text = exc.message if isinstance(exc, GatewayError) else str(exc)
    return ComponentError(
        text, stack=[{"error": "error executing component"}, {"error": text}], plugin=plugin
    )


class StepflowPlugin:
    """A StepFlow JSON-RPC component server over stdio, HTTP, or a self-launching HTTP worker."""

    config_model: ClassVar[type[StepflowPluginConfig]] = StepflowPluginConfig

    def __init__(self, name: str, config: StepflowPluginConfig) -> None:
        self.name = name
        self.config = config
        self._ctx: PluginContext | None = None
        self._host: asyncio.Task[None] | None = None
        self._closing = anyio.Event()
        self._tg: TaskGroup | None = None
        self._conn: _Connection | None = None
        self._lock = anyio.Lock()
        self._generations = itertools.count(1)
        self._http: Any = None
        self._inflight: dict[tuple[str, int, str], ExecutionContext] = {}
        """Calls in flight by ``(run_id, item_index, step_id)``; callbacks name theirs in observability."""
        self._callbacks: CallbackHandler | None = None
        self._timeout = config.request_timeout
        self._log = log.bind(plugin=name)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, ctx: PluginContext) -> None:
        """Start the server (unless ``lazyStart``) and complete the handshake.

        Raises:
            PluginStartError: spawn, port/health wait or handshake failed.
        """
        self._ctx = ctx
        self._callbacks = CallbackHandler(ctx.runtime, plugin=self.name, find_context=self._find_context)
        if self.config.shape != "stdio":
            self._http = make_client()
        # ``start`` and ``close`` are separate calls, each of which the registry may wrap in its own
        # cancel scope (the start timeout), so a task group entered here could not be exited in
        # ``close``. The connection owner tasks therefore live in a task of their own, which
        # ``close`` stops and awaits.
        ready = anyio.Event()
        self._closing = anyio.Event()
        self._host = asyncio.get_running_loop().create_task(
            self._host_main(ready), name=f"stepflow:{self.name}"
        )
        await ready.wait()
        if not self.config.lazy_start:
            try:
                await self._connection()
            except BaseException:
                await self.close()
                raise

    async def _host_main(self, ready: anyio.Event) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                ready.set()
                await self._closing.wait()
                tg.cancel_scope.cancel()
        except Exception:  # owner tasks never raise once published; this is a last resort
            self._log.exception("plugin host task failed")
        finally:
            self._tg = None
            ready.set()

    async def close(self) -> None:
        """Stop the server: close stdin, wait, terminate, kill (bounded; no orphans)."""
        host, self._host = self._host, None
        with anyio.CancelScope(shield=True):
            await self._stop_connection()
            if host is not None:
                self._closing.set()
                with anyio.move_on_after(self.config.shutdown_grace_ms / 1000 * 3 + 5):
                    await asyncio.shield(host)
            if self._http is not None:
                http, self._http = self._http, None
                await http.aclose()

    async def _stop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.kill("plugin closed")

    # -- component calls -----------------------------------------------------------------------

    async def list_components(self) -> list[ComponentInfo]:
        conn = await self._connection()
        try:
            result = await conn.link.request(Method.COMPONENTS_LIST, {}, timeout=self.config.start_timeout)
        except (RpcError, TransportError) as exc:
            raise PluginStartError(f"components/list failed: {exc}", plugin=self.name) from exc
        items = result.get("components") if isinstance(result, dict) else None
        if not isinstance(items, list):
            raise ProtocolError(f"components/list returned {result!r}", plugin=self.name)
        return [self._info(ComponentInfoModel.model_validate(item)) for item in items]

    async def component_info(self, component: str) -> ComponentInfo:
        """``components/info`` for one component."""
        conn = await self._connection()
        try:
            result = await conn.link.request(
                Method.COMPONENTS_INFO, {"component": component}, timeout=self.config.start_timeout
            )
        except RpcError as exc:
            raise UnknownComponentError(f"component '{component}': {exc.message}", plugin=self.name) from exc
        info = result.get("info") if isinstance(result, dict) else None
        return self._info(ComponentInfoModel.model_validate(info))

    @staticmethod
    def _info(model: ComponentInfoModel) -> ComponentInfo:
        return ComponentInfo(model.component, model.description, model.input_schema, model.output_schema)

    async def execute(self, component: str, input: Any, ctx: ExecutionContext) -> FlowResult:
        """``components/execute``, retried on a new server incarnation after a transport failure."""
        attempt = ctx.attempt
        obs = {k: v for k, v in ctx.observability().items() if v}
        params = {"component": component, "input": input, "attempt": attempt, "observability": obs}
        key = (ctx.run_id, ctx.item_index, ctx.step_id)
        failures = 0
        while True:
            conn: _Connection | None = None
            self._inflight[key] = ctx
            try:
                conn = await self._connection()
                result = await conn.link.request(
                    Method.COMPONENTS_EXECUTE, params, timeout=self._timeout, ctx=ctx
                )
            except RpcError as exc:
                raise _component_failure(exc, self.name) from None
            except (TransportError, PluginStartError) as exc:
                if not self._retryable(exc) or failures >= self._max_retries():
                    if failures:
                        exc.message = f"{exc.message} (after {failures + 1} attempts)"
                    raise _component_failure(exc, self.name) from exc
                failures += 1
                if conn is not None and not isinstance(exc, PluginStartError):
                    conn.kill(str(exc))
                delay = self._delay_ms(failures) / 1000
                self._log.warning(
                    "component call interrupted; retrying on a restarted server",
                    component=component,
                    step_id=ctx.step_id,
                    attempt=attempt + 1,
                    delay_s=delay,
                    error=str(exc),
                )
                await anyio.sleep(delay)
                attempt += 1
                params = {**params, "attempt": attempt}
                continue
            except ProtocolError as exc:
                raise _component_failure(exc, self.name) from exc
            finally:
                if self._inflight.get(key) is ctx:
                    del self._inflight[key]
            if type(result) is dict and "output" in result:
                return FlowResult.success(result["output"])
            raise _component_failure(
                ProtocolError(f"components/execute returned no output: {result!r}"[:300], plugin=self.name),
                self.name,
            )

    def _retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, CallTimeout):
            return False
        if self.config.shape == "remote":
            return isinstance(exc, ConnectError)  # nothing delivered (protocol.md §7.4)
        return isinstance(exc, (TransportClosed, ConnectError, PluginStartError))

    def _max_retries(self) -> int:
        retry = self._ctx.retry if self._ctx is not None else None
        value = getattr(retry, "transport_max_retries", None)
        return DEFAULT_TRANSPORT_MAX_RETRIES if value is None else int(value)

    def _delay_ms(self, n: int) -> float:
        retry = self._ctx.retry if self._ctx is not None else None
        backoff = getattr(retry, "backoff", None)
        if backoff is not None and hasattr(backoff, "delay_ms"):
            return float(backoff.delay_ms(n))
        return _default_delay_ms(n)

    def _find_context(self, observability: Any) -> ExecutionContext | None:
        if isinstance(observability, dict):
            run_id, step_id = observability.get("run_id"), observability.get("step_id")
            item = observability.get("item_index")
            if isinstance(item, str) and item.isdigit():
                found = self._inflight.get((run_id, int(item), step_id))  # type: ignore[arg-type]
                if found is not None:
                    return found
            # a server that does not send the item back: only a unique (run, step) is certain
            matches = [c for (r, _i, s), c in self._inflight.items() if r == run_id and s == step_id]
            if len(matches) == 1:
                return matches[0]
        if len(self._inflight) == 1:
            return next(iter(self._inflight.values()))
        return None

    # -- connections ---------------------------------------------------------------------------

    async def _connection(self) -> _Connection:
        conn = self._conn
        if conn is not None and not conn.dead:
            return conn
        async with self._lock:
            conn = self._conn
            if conn is not None and not conn.dead:
                return conn
            if conn is not None:
                conn.stop.set()
            if self._tg is None:
                raise PluginStartError("plugin is not started", plugin=self.name)
            bound = self.config.start_timeout
            if self.config.shape == "worker":
                bound = max(bound, PORT_LINE_TIMEOUT + self.config.health_check.timeout_ms / 1000)
            generation = next(self._generations)
            try:
                with anyio.fail_after(bound):
                    started: _Connection = await self._tg.start(self._serve_connection, generation)
            except TimeoutError:
                raise PluginStartError(
                    f"server did not become ready within {bound:g} s", plugin=self.name
                ) from None
            self._conn = started
            return started

    async def _serve_connection(self, generation: int, *, task_status: TaskStatus[_Connection]) -> None:
        """Owner task of one incarnation: opens it, publishes it, waits for its end, tears it down.

        It never raises once the connection is published (an error here would cancel the task that
        started the plugin). Before that, it raises ``PluginStartError``.
        """
        status = _Status(task_status)
        try:
            if self.config.shape == "stdio":
                await self._serve_stdio(generation, status)
            elif self.config.shape == "worker":
                await self._serve_worker(generation, status)
            else:
                await self._serve_remote(generation, status)
        except Exception as raw:
            exc = _leaf(raw)
            if status.published:
                self._log.error("connection owner failed", error=repr(exc))
                return
            if isinstance(exc, PluginStartError):
                raise exc from None
            if isinstance(exc, GatewayError):
                raise PluginStartError(f"start failed: {exc.message}", plugin=self.name) from exc
            if isinstance(exc, RpcError):
                raise PluginStartError(f"initialize failed: {exc}", plugin=self.name) from exc
            raise PluginStartError(f"start failed: {exc!r}", plugin=self.name) from exc

    def _child_argv_env(self) -> tuple[list[str], dict[str, str], Any]:
        assert self._ctx is not None and self.config.command is not None
        env = child_env(self._ctx.environ, self.config.env)
        cwd = self._ctx.working_directory
        if self.config.cwd:
            cwd = (cwd / self.config.cwd).resolve()
        command = resolve_command(self.config.command, cwd, self._ctx.environ.get("PATH"))
        return [command, *self.config.args], env, cwd

    async def _handshake(
        self, base: _Link, listener: FastListener | None, tg: TaskGroup
    ) -> tuple[_Link, bool]:
        params: dict[str, Any] = {"runtime_protocol_version": 1}
        if listener is not None:
            params[OFFER_FIELD] = [listener.offer.model_dump()]
        result = await base.request(Method.INITIALIZE, params, timeout=self.config.start_timeout)
        init = InitializeResult.model_validate(result if isinstance(result, dict) else {})
        link, fast = base, False
        if listener is not None and init.transport is not None:
            assert self._callbacks is not None
            peer = await listener.accept(init.transport, self.config.start_timeout, self._callbacks)
            await tg.start(peer.run)
            link, fast = _PeerLink(peer), True
            self._log.debug("switched to fast transport", codec=peer.codec)
        await link.notify(Method.INITIALIZED, {})
        return link, fast

    async def _open_fast_listener(self, stack: AsyncExitStack) -> FastListener | None:
        """The socket offered for the fast transport, or ``None`` when it is switched off."""
        if not self.config.fast_transport:
            return None
        return await stack.enter_async_context(open_fast_listener(self.name))

    async def _serve_stdio(self, generation: int, task_status: _Status) -> None:
        argv, env, cwd = self._child_argv_env()
        grace = self.config.shutdown_grace_ms / 1000
        async with AsyncExitStack() as stack:
            listener = await self._open_fast_listener(stack)
            child = await stack.enter_async_context(
                open_child(
                    argv,
                    env=env,
                    cwd=cwd,
                    plugin=self.name,
                    stdin_pipe=True,
                    line_limit=self.config.line_limit,
                    grace=grace,
                )
            )
            assert self._callbacks is not None
            base = Peer(child.stdout, self._callbacks, name=self.name)
            await self._run_incarnation(generation, task_status, child, base, listener)

    async def _run_incarnation(
        self,
        generation: int,
        task_status: _Status,
        child: Child | None,
        base: Peer | HttpChannel,
        listener: FastListener | None,
        extra: Callable[[TaskGroup], Awaitable[None]] | None = None,
    ) -> None:
        error: BaseException | None = None
        async with anyio.create_task_group() as tg:
            try:
                if extra is not None:
                    await extra(tg)
                if isinstance(base, Peer):
                    await tg.start(base.run)
                    base_link: _Link = _PeerLink(base)
                else:
                    base_link = base
                link, fast = await self._handshake(base_link, listener, tg)
            except BaseException as exc:  # keep it out of the task group's exception group
                if child is not None and isinstance(exc, (TransportError, anyio.EndOfStream)):
                    with anyio.move_on_after(1):
                        await child.exited.wait()
                    exc = PluginStartError(
                        f"server {child.describe_exit()} during the handshake", plugin=self.name
                    )
                error = exc
                tg.cancel_scope.cancel()
            else:
                conn = _Connection(generation, link, fast)
                self._log.info(
                    "server ready", generation=generation, fast=fast, pid=child.pid if child else None
                )
                task_status.started(conn)
                watched = [conn.stop]
                if child is not None:
                    watched.append(child.exited)
                if isinstance(base, Peer):
                    watched.append(base.closed_event)
                if isinstance(link, _PeerLink) and link.peer is not base:
                    watched.append(link.peer.closed_event)
                await _wait_any(*watched)
                reason = conn.reason or (
                    child.describe_exit() if child is not None and child.exited.is_set() else "closed"
                )
                conn.kill(reason)
                if reason != "plugin closed":
                    self._log.warning("server connection ended", generation=generation, reason=reason)
                for peer in (base, getattr(link, "peer", None)):
                    if isinstance(peer, (Peer, FramePeer)):
                        peer.close(reason)
                tg.cancel_scope.cancel()
        if error is not None:
            raise error

    async def _serve_worker(self, generation: int, task_status: _Status) -> None:
        argv, env, cwd = self._child_argv_env()
        grace = self.config.shutdown_grace_ms / 1000
        async with AsyncExitStack() as stack:
            listener = await self._open_fast_listener(stack)
            child = await stack.enter_async_context(
                open_child(argv, env=env, cwd=cwd, plugin=self.name, stdin_pipe=False, grace=grace)
            )
            port = await read_port(child, self.name)
            base_url = f"http://127.0.0.1:{port}"
            channel = self._http_channel(base_url)

            async def after_port(tg: TaskGroup) -> None:
                tg.start_soon(drain_stdout, child, self.name)
                await wait_healthy(self._http, base_url, self.config.health_check, child, self.name)

            try:
                await self._run_incarnation(generation, task_status, child, channel, listener, after_port)
            finally:
                channel.close()

    async def _serve_remote(self, generation: int, task_status: _Status) -> None:
        assert self.config.url is not None
        channel = self._http_channel(self.config.url)
        try:
            await self._run_incarnation(generation, task_status, None, channel, None)
        finally:
            channel.close()

    def _http_channel(self, url: str) -> HttpChannel:
        assert self._callbacks is not None
        return HttpChannel(
            self._http, url, plugin=self.name, callbacks=self._callbacks, headers=self.config.headers
        )
