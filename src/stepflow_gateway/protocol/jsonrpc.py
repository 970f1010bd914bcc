"""Owns JSON-RPC 2.0 envelopes and the :class:`Peer`: request-id correlation in both directions, the
receive loop, per-request timeouts, and the one place where handler exceptions become wire errors.

A Peer knows no StepFlow method. Below it is a *channel*: anything with ``async send(message)`` and
``async receive() -> message`` (raising ``anyio.EndOfStream`` at the end), such as
:class:`~stepflow_gateway.protocol.framing.LineChannel`. Above it, requests from the other side are
dispatched to one ``handler(method, params) -> result`` coroutine, each in its own task.

Classification of an incoming object follows protocol.md §2: ``id`` + ``method`` is a request,
``method`` alone a notification, ``id`` alone a response; anything else is logged and dropped.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio
import structlog
from anyio.abc import TaskStatus
from pydantic import ValidationError

from ..errors import CallTimeout, GatewayError, TransportClosed

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "Channel",
    "Handler",
    "Peer",
    "RpcError",
    "error_message",
    "request_message",
    "response_message",
]

log = structlog.get_logger(__name__)

INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

CRASH_MESSAGE = "Process crashed during request execution"
"""The synthetic -32603 message every in-flight request of a crashed stdio child gets (protocol.md §5)."""


class RpcError(Exception):
    """A JSON-RPC error object: raised by handlers, and by :meth:`Peer.request` for error replies."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            out["data"] = self.data
        return out

    @classmethod
    def from_json(cls, value: Any) -> RpcError:
        if not isinstance(value, dict):
            return cls(INTERNAL_ERROR, f"malformed error object: {value!r}")
        code = value.get("code")
        return cls(
            int(code) if isinstance(code, (int, float)) and not isinstance(code, bool) else INTERNAL_ERROR,
            str(value.get("message", "")),
            value.get("data"),
        )

    def __str__(self) -> str:
        return f"({self.code}) {self.message}"


class Channel(Protocol):
    """What a Peer reads from and writes to."""

    async def send(self, message: Any) -> None: ...

    async def receive(self) -> Any: ...


Handler = Callable[[str, Any], Awaitable[Any]]
"""Serves one incoming request: ``(method, params) -> result``; raise :class:`RpcError` to fail it."""


def request_message(request_id: str | int, method: str, params: Any) -> dict[str, Any]:
    # Key order as the gateway emits it (protocol.md §2). ``params`` is never omitted: stepflow-py
    # drops requests without it.
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": {} if params is None else params}


def notification_message(method: str, params: Any) -> dict[str, Any]:
    # ``params`` is never omitted here either (stepflow-py drops notifications without it).
    return {"jsonrpc": "2.0", "method": method, "params": {} if params is None else params}


def response_message(request_id: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def error_message(request_id: Any, error: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": error.to_json()}


class _Pending:
    __slots__ = ("event", "result", "error")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.result: Any = None
        self.error: BaseException | None = None


async def handle_request(
    handler: Any, request_id: Any, method: str, params: Any, *, peer: str
) -> dict[str, Any]:
    """Run ``handler`` for one incoming request and build the reply: the one place where handler
    exceptions become JSON-RPC errors (shared by ``Peer`` and ``FramePeer``)."""
    try:
        if handler is None:
            raise RpcError(METHOD_NOT_FOUND, f"Method not found: '{method}'")
        result = await handler(method, params if params is not None else {})
        return response_message(request_id, result)
    except RpcError as exc:
        return error_message(request_id, exc)
    except ValidationError:
        return error_message(
            request_id, RpcError(INVALID_PARAMS, f"Invalid parameters for request {request_id}")
        )
    except Exception as exc:  # the error boundary: never let a handler kill the connection
        log.exception("request handler failed", peer=peer, method=method)
        return error_message(request_id, RpcError(INTERNAL_ERROR, f"Internal error: {exc}"))


class Peer:
    """One JSON-RPC connection, usable in both directions.

    ``await tg.start(peer.run)`` starts the receive loop; it returns when the channel ends, after
    failing every in-flight request with ``TransportClosed``. :meth:`request` may be called from any
    number of tasks at once; responses are matched by id in any order.
    """

    def __init__(
        self,
        channel: Channel,
        handler: Handler | None = None,
        *,
        name: str = "",
        on_notification: Callable[[str, Any], None] | None = None,
    ) -> None:
        self.channel = channel
        self.name = name
        self._handler = handler
        self._on_notification = on_notification
        self._pending: dict[Any, _Pending] = {}
        self._prefix = uuid.uuid4().hex[:12] + "-"
        self._ids = itertools.count(1)
        self._closed = False
        self._close_reason: str = "connection closed"
        self.closed_event = anyio.Event()

    @property
    def closed(self) -> bool:
        return self._closed

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Receive until the channel ends; serve incoming requests concurrently."""
        async with anyio.create_task_group() as tg:
            task_status.started()
            try:
                await self._receive_loop(tg)
            finally:
                self._fail_all(self._close_reason)
                # Handlers still running have nobody to answer to.
                tg.cancel_scope.cancel()

    async def _receive_loop(self, tg: anyio.abc.TaskGroup) -> None:
        receive = self.channel.receive
        pending = self._pending
        while True:
            try:
                msg = await receive()
            except anyio.EndOfStream:
                self._close_reason = "connection closed"
                return
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                self._close_reason = f"connection lost: {exc}"
                return
            except GatewayError as exc:  # framing violation: the stream is unusable from here on
                log.warning("closing connection after protocol violation", peer=self.name, error=str(exc))
                self._close_reason = str(exc)
                return
            if type(msg) is not dict:
                log.warning("ignoring non-object JSON-RPC message", peer=self.name, message=repr(msg)[:200])
                continue
            method = msg.get("method")
            if method is None:
                if "id" in msg:  # response: the hot path
                    waiter = pending.pop(msg["id"], None)
                    if waiter is None:
                        log.debug("response with unknown id ignored", peer=self.name, id=msg.get("id"))
                        continue
                    if "error" in msg and msg["error"] is not None:
                        waiter.error = RpcError.from_json(msg["error"])
                    else:
                        waiter.result = msg.get("result")
                    waiter.event.set()
                else:
                    log.warning("ignoring invalid JSON-RPC message", peer=self.name, message=repr(msg)[:200])
                continue
            if "id" in msg and msg["id"] is not None:
                tg.start_soon(self._serve, msg["id"], method, msg.get("params"))
            else:
                if self._on_notification is not None:
                    try:
                        self._on_notification(method, msg.get("params"))
                    except Exception:  # a notification never breaks the connection
                        log.exception("notification handler failed", peer=self.name, method=method)
                else:
                    log.debug("notification ignored", peer=self.name, method=method)

    async def _serve(self, request_id: Any, method: str, params: Any) -> None:
        reply = await handle_request(self._handler, request_id, method, params, peer=self.name)
        try:
            await self.channel.send(reply)
        except GatewayError as exc:  # e.g. the reply is larger than the peer accepts
            log.warning("could not send reply", peer=self.name, method=method, error=str(exc))
            await self._send_quietly(error_message(request_id, RpcError(INTERNAL_ERROR, str(exc))))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            log.debug("reply dropped: connection gone", peer=self.name, method=method)

    async def _send_quietly(self, message: Any) -> None:
        try:
            await self.channel.send(message)
        except Exception:
            log.debug("send failed", peer=self.name)

    def _fail_all(self, reason: str) -> None:
        self._closed = True
        pending, self._pending = self._pending, {}
        for waiter in pending.values():
            waiter.error = TransportClosed(
                f"{CRASH_MESSAGE} ({reason})", plugin=self.name or None, code=INTERNAL_ERROR
            )
            waiter.event.set()
        self.closed_event.set()

    def close(self, reason: str = "connection closed") -> None:
        """Fail every in-flight request now (the owner then tears the channel down)."""
        self._close_reason = reason
        self._fail_all(reason)

    async def request(self, method: str, params: Any = None, *, timeout: float | None = None) -> Any:  # noqa: ASYNC109
        """Send a request and wait for its result.

        Raises:
            RpcError: the peer answered with an error.
            TransportClosed: the connection ended before the answer.
            CallTimeout: no answer within ``timeout`` seconds.
        """
        if self._closed:
            raise TransportClosed(f"{CRASH_MESSAGE} ({self._close_reason})", plugin=self.name or None)
        request_id = self._prefix + str(next(self._ids))
        waiter = _Pending()
        self._pending[request_id] = waiter
        try:
            with anyio.fail_after(timeout):
                await self.channel.send(request_message(request_id, method, params))
                await waiter.event.wait()
        except TimeoutError:
            raise CallTimeout(
                f"no response to {method} within {timeout:g} s", plugin=self.name or None
            ) from None
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise TransportClosed(f"could not send {method}: {exc}", plugin=self.name or None) from exc
        finally:
            self._pending.pop(request_id, None)
        if waiter.error is not None:
            raise waiter.error
        return waiter.result

    async def notify(self, method: str, params: Any = None) -> None:
        """Send a notification (``params`` defaults to ``{}``: stepflow-py drops it otherwise)."""
        try:
            await self.channel.send(notification_message(method, params))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise TransportClosed(f"could not send {method}: {exc}", plugin=self.name or None) from exc
