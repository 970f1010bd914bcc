"""Owns the HTTP transport of stepflow plugins (protocol.md §7–8): one POST per message, JSON or SSE
responses, callbacks found in an SSE stream answered by POSTs carrying ``Stepflow-Instance-Id``,
and the self-launching worker handshake (``{"port": N}`` on stdout, then ``GET /health``).

httpx2 is imported lazily (only HTTP plugins pay for it). Its errors are translated here, once:
a connect failure becomes ``ConnectError`` (nothing was delivered, safe to retry), anything after
delivery ``TransportClosed``, and the deadline ``CallTimeout``.
"""

from __future__ import annotations

import asyncio
import codecs
import itertools
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
import structlog

from ...errors import CallTimeout, ConnectError, PluginStartError, TransportClosed, TransportError
from ...protocol.framing import dumps, loads
from ...protocol.jsonrpc import RpcError, handle_request, notification_message, request_message
from ..base import ExecutionContext
from .callbacks import CallbackHandler
from .config import HealthCheckConfig
from .http11 import Http11Conn, Http11Pool, HttpBroken, HttpConnectError
from .stdio import Child

if TYPE_CHECKING:
    import httpx2

__all__ = ["HttpChannel", "make_client", "read_port", "drain_stdout", "wait_healthy"]

log = structlog.get_logger(__name__)

_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
INSTANCE_HEADER = "Stepflow-Instance-Id"
PORT_LINE_TIMEOUT = 30.0
"""How long a self-launching worker may take to print ``{"port": N}`` (protocol.md §8)."""
CALLBACK_POST_TIMEOUT = 30.0
"""Bound on delivering one callback answer; the server acknowledges with 202 at once."""


def make_client() -> httpx2.AsyncClient:
    """An httpx2 client for one plugin: no overall timeout (calls are bounded by ``fail_after``)."""
    import socket

    import httpx2

    # TCP_NODELAY: h11 writes headers and body separately, and Nagle + delayed ACK would add ~40 ms
    # to every sequential call.
    transport = httpx2.AsyncHTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    return httpx2.AsyncClient(
        transport=transport,
        timeout=httpx2.Timeout(None, connect=10.0),
        limits=httpx2.Limits(max_connections=256, max_keepalive_connections=64),
        trust_env=False,
    )


class HttpChannel:
    """JSON-RPC over HTTP POSTs to one URL."""

    def __init__(
        self,
        client: httpx2.AsyncClient,
        url: str,
        *,
        plugin: str,
        callbacks: CallbackHandler,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.client = client
        self.url = url
        self.plugin = plugin
        self.callbacks = callbacks
        self.headers = {**_HEADERS, **(headers or {})}
        self._prefix = uuid.uuid4().hex[:12] + "-"
        self._ids = itertools.count(1)
        self._pool: Http11Pool | None = None
        self._head = b""
        fast = _fast_target(url, self.headers)
        if fast is not None:
            host, port, self._head = fast
            self._pool = Http11Pool(host, port)

    def close(self) -> None:
        """Close the kept-alive connections of the fast path (the httpx2 client is the plugin's)."""
        if self._pool is not None:
            self._pool.close()

    async def request(
        self,
        method: str,
        params: Any,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        ctx: ExecutionContext | None = None,  # noqa: ASYNC109
    ) -> Any:
        """POST a request and return its result.

        Raises:
            RpcError: the server answered with a JSON-RPC error.
            ConnectError: the request could not be delivered.
            TransportClosed: the exchange broke after delivery.
            CallTimeout: no final answer within ``timeout`` seconds.
        """
        request_id = self._prefix + str(next(self._ids))
        body = dumps(request_message(request_id, method, params))
        if self._pool is not None:
            return await self._request_fast(method, body, request_id, timeout, ctx)
        import httpx2

        try:
            with anyio.fail_after(timeout):
                async with self.client.stream("POST", self.url, content=body, headers=self.headers) as resp:
                    ctype = resp.headers.get("content-type", "")
                    if resp.status_code < 300 and ctype.startswith("text/event-stream"):
                        instance = resp.headers.get(INSTANCE_HEADER)
                        return await self._read_sse(resp.aiter_bytes(), request_id, instance, ctx)
                    data = await resp.aread()
                    return self._read_plain(resp.status_code, data, request_id)
        except TimeoutError:
            raise CallTimeout(f"no response to {method} within {timeout:g} s", plugin=self.plugin) from None
        except httpx2.ConnectError as exc:
            raise ConnectError(f"cannot connect to {self.url}: {exc}", plugin=self.plugin) from exc
        except httpx2.TransportError as exc:
            raise TransportClosed(
                f"HTTP exchange with {self.url} failed: {exc!r}", plugin=self.plugin
            ) from exc

    async def _request_fast(
        self,
        method: str,
        body: bytes,
        request_id: str,
        timeout: float | None,  # noqa: ASYNC109
        ctx: ExecutionContext | None,
    ) -> Any:
        """``request`` on the lean HTTP/1.1 client (``http11.py``): one write, parsed in the protocol."""
        assert self._pool is not None
        pool = self._pool
        request = self._head + str(len(body)).encode() + b"\r\n\r\n" + body
        try:
            # the pool is asyncio's (as is this path): its own timeout is a third of anyio's cost
            async with asyncio.timeout(timeout):
                conn = await pool.send(request)
                complete = False
                try:
                    headers = conn.headers
                    if conn.status < 300 and headers.get("content-type", "").startswith("text/event-stream"):
                        instance = headers.get(INSTANCE_HEADER.lower())
                        result = await self._read_sse(_conn_bytes(conn), request_id, instance, ctx)
                        complete = conn.complete
                        return result
                    data = await conn.read_all()
                    complete = True
                    return self._read_plain(conn.status, data, request_id)
                finally:
                    pool.release(conn, complete)
        except TimeoutError:
            raise CallTimeout(f"no response to {method} within {timeout:g} s", plugin=self.plugin) from None
        except HttpConnectError as exc:
            raise ConnectError(f"cannot connect to {self.url}: {exc}", plugin=self.plugin) from exc
        except HttpBroken as exc:
            raise TransportClosed(f"HTTP exchange with {self.url} failed: {exc}", plugin=self.plugin) from exc

    def _read_plain(self, status: int, data: bytes, request_id: str) -> Any:
        try:
            payload = loads(data) if data else None
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            if payload.get("id") == request_id:
                if payload.get("error") is not None:
                    raise RpcError.from_json(payload["error"])
                if "result" in payload:
                    return payload["result"]
            elif "id" not in payload and isinstance(payload.get("error"), dict) and status == 400:
                # stepflow-py's decode failure carries no id (protocol.md §7.1): it is this request's.
                raise RpcError.from_json(payload["error"])
        text = data[:300].decode("utf-8", "replace")
        raise TransportError(f"unexpected HTTP {status} response from {self.url}: {text}", plugin=self.plugin)

    async def _read_sse(
        self,
        chunks: AsyncIterator[bytes],
        request_id: str,
        instance: str | None,
        ctx: ExecutionContext | None,
    ) -> Any:
        headers = dict(self.headers)
        if instance:
            headers[INSTANCE_HEADER] = instance
        final: dict[str, Any] | None = None
        failure: BaseException | None = None
        async with anyio.create_task_group() as tg:
            try:
                async for data in _sse_data(chunks):
                    try:
                        msg = loads(data)
                    except ValueError:
                        log.warning("ignoring non-JSON SSE event", plugin=self.plugin, data=data[:200])
                        continue
                    if not isinstance(msg, dict):
                        continue
                    if msg.get("method") is not None:
                        if msg.get("id") is not None:
                            tg.start_soon(self._answer_callback, msg, headers, ctx)
                        continue
                    if msg.get("id") == request_id:
                        final = msg
                        break
            except Exception as exc:  # re-raised below, outside the task group (no exception group)
                failure = exc
                tg.cancel_scope.cancel()
            # Leaving the block waits for callback answers still being delivered.
        if failure is not None:
            raise failure
        if final is None:
            raise TransportClosed(f"SSE stream from {self.url} ended before the response", plugin=self.plugin)
        if final.get("error") is not None:
            raise RpcError.from_json(final["error"])
        return final.get("result")

    async def _answer_callback(
        self, msg: dict[str, Any], headers: dict[str, str], ctx: ExecutionContext | None
    ) -> None:
        async def serve(method: str, params: Any) -> Any:
            return await self.callbacks.handle(method, params, ctx)

        # the one error boundary of incoming requests (protocol/jsonrpc.py), as over stdio
        params = msg.get("params") or {}
        reply = await handle_request(serve, msg["id"], msg["method"], params, peer=self.plugin)
        await self._post_quietly(reply, headers)

    async def _post_quietly(self, message: dict[str, Any], headers: dict[str, str]) -> None:
        import httpx2

        try:
            with anyio.fail_after(CALLBACK_POST_TIMEOUT):
                resp = await self.client.post(self.url, content=dumps(message), headers=headers)
            if not 200 <= resp.status_code < 300:
                log.warning("callback answer not accepted", plugin=self.plugin, status=resp.status_code)
        except (httpx2.HTTPError, TimeoutError) as exc:
            log.warning("could not deliver callback answer", plugin=self.plugin, error=repr(exc))

    async def notify(self, method: str, params: Any = None) -> None:
        """POST a notification; any 2xx is fine (stepflow-py answers 202), anything else is logged."""
        import httpx2

        message = notification_message(method, params)
        try:
            with anyio.fail_after(CALLBACK_POST_TIMEOUT):
                resp = await self.client.post(self.url, content=dumps(message), headers=self.headers)
        except httpx2.ConnectError as exc:
            raise ConnectError(f"cannot connect to {self.url}: {exc}", plugin=self.plugin) from exc
        except (httpx2.HTTPError, TimeoutError) as exc:
            raise TransportClosed(f"could not send {method}: {exc!r}", plugin=self.plugin) from exc
        if not 200 <= resp.status_code < 300:
            log.warning(
                "notification not accepted", plugin=self.plugin, method=method, status=resp.status_code
            )


async def _conn_bytes(conn: Http11Conn) -> AsyncIterator[bytes]:
    while (piece := await conn.read_some()) is not None:
        yield piece


async def _sse_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """Lines of a byte stream (``\\r\\n``, ``\\n`` or ``\\r``), without their ends."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    pending = ""
    async for chunk in chunks:
        pending += decoder.decode(chunk)
        if not pending:
            continue
        lines = pending.splitlines(keepends=True)
        last = lines[-1]
        # A last line without its end (or ending in a lone \r that a \n may follow) waits for more.
        if last.endswith("\n"):
            pending = ""
        else:
            pending = lines.pop()
        for line in lines:
            yield line.rstrip("\r\n")
    pending += decoder.decode(b"", final=True)
    for line in pending.splitlines():
        yield line


async def _sse_data(chunks: AsyncIterator[bytes]) -> AsyncIterator[str]:
    """The ``data`` of each SSE event (multi-line data joined with ``\\n``; other fields ignored)."""
    data: list[str] = []
    async for line in _sse_lines(chunks):
        if line == "":
            if data:
                yield "\n".join(data)
                data = []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            data.append(value)
    if data:
        yield "\n".join(data)


def _fast_target(url: str, headers: dict[str, str]) -> tuple[str, int, bytes] | None:
    """``(host, port, request head up to "Content-Length: ")`` for a plain ``http://`` URL whose
    headers are single-line ASCII; ``None`` means: use httpx2."""
    try:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or parts.username or parts.password:
            return None
        port = parts.port or 80
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"POST {target} HTTP/1.1", f"Host: {parts.netloc}"]
        for name, value in headers.items():
            if name.lower() in ("host", "content-length", "transfer-encoding", "connection"):
                return None
            if any(c in name + value for c in "\r\n\0"):
                return None
            lines.append(f"{name}: {value}")
        head = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("ascii")
    except (ValueError, UnicodeEncodeError):
        return None
    host = parts.hostname
    return host, port, head


async def read_port(child: Child, plugin: str, timeout: float = PORT_LINE_TIMEOUT) -> int:  # noqa: ASYNC109
    """Read the worker's stdout until a line ``{"port": N}``; other lines are logged.

    Raises:
        PluginStartError: the worker exited or stayed silent for ``timeout`` seconds.
    """
    try:
        with anyio.fail_after(timeout):
            while True:
                raw = await child.stdout.receive_line()
                try:
                    value = loads(raw)
                except ValueError:
                    value = None
                if (
                    isinstance(value, dict)
                    and isinstance(value.get("port"), int)
                    and not isinstance(value["port"], bool)
                ):
                    return int(value["port"])
                if raw.strip():
                    log.info("worker stdout", plugin=plugin, line=raw.decode("utf-8", "replace")[:300])
    except TimeoutError:
        raise PluginStartError(
            f'worker did not print {{"port": N}} within {timeout:g} s', plugin=plugin
        ) from None
    except anyio.EndOfStream:
        with anyio.move_on_after(2):
            await child.exited.wait()
        raise PluginStartError(
            f"worker {child.describe_exit()} before printing its port", plugin=plugin
        ) from None


async def drain_stdout(child: Child, plugin: str) -> None:
    """Keep reading the worker's stdout so it never blocks on a full pipe."""
    try:
        while True:
            raw = await child.stdout.receive_line()
            if raw.strip():
                log.debug("worker stdout", plugin=plugin, line=raw.decode("utf-8", "replace")[:300])
    except (anyio.EndOfStream, OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass


async def wait_healthy(
    client: httpx2.AsyncClient, base_url: str, check: HealthCheckConfig, child: Child, plugin: str
) -> None:
    """Poll ``GET <base><path>`` until 200.

    Raises:
        PluginStartError: the worker exited, or was not healthy within ``timeoutMs``.
    """
    import httpx2

    url = base_url.rstrip("/") + (check.path if check.path.startswith("/") else "/" + check.path)
    last = "no answer"
    with anyio.move_on_after(check.timeout_ms / 1000):
        while True:
            if child.exited.is_set():
                raise PluginStartError(
                    f"worker {child.describe_exit()} during the health check", plugin=plugin
                )
            try:
                with anyio.fail_after(max(check.retry_delay_ms / 1000, 1.0)):
                    resp = await client.get(url)
                if resp.status_code == 200:
                    return
                last = f"HTTP {resp.status_code}"
            except (httpx2.HTTPError, TimeoutError) as exc:
                last = repr(exc)
            await anyio.sleep(check.retry_delay_ms / 1000)
    raise PluginStartError(
        f"worker not healthy at {url} within {check.timeout_ms} ms ({last})", plugin=plugin
    )
