"""``server/_uvicorn_compat.py`` pinned against the installed uvicorn.

``send_answer`` writes a fast-path answer to uvicorn's request/response cycle directly, relying on
uvicorn internals (listed in the module). These tests run a real ``uvicorn.Server`` in process with
a small ASGI app and raw sockets, once with the direct write and once with it off (the ASGI
messages through uvicorn's own ``send``), and require the same bytes on the wire (the ``date``
value aside): keep-alive, pipelining mixed with answers the app sends itself, ``Connection:
close``, HTTP/1.0, chunked bodies, ``Expect: 100-continue``, the keep-alive timeout, a client gone
before the answer. A uvicorn release that changes what is relied on fails here, loudly: either
``DIRECT`` is off (the start-up check refused it) or the bytes differ.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import sys
import types
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from stepflow_gateway.server import _uvicorn_compat
from stepflow_gateway.server._uvicorn_compat import send_answer

pytestmark = pytest.mark.anyio

_DATE = re.compile(rb"\r\ndate: [^\r]*\r\n")


class App:
    """``/direct`` and ``/missing`` answer through ``send_answer``, ``/asgi`` with its own two
    messages, ``/listen`` through ``send_answer`` with a ``receive()`` pending, ``/wait`` through
    ``send_answer`` once the test releases it."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.waited: asyncio.Future[None] | None = None
        self.listened: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            more = message.get("more_body", False)
        path = scope["path"]
        payload = json.dumps({"path": path, "body": body.decode()}).encode()
        headers = [(b"content-length", str(len(payload)).encode()), (b"content-type", b"application/json")]
        if path == "/asgi":
            await send({"type": "http.response.start", "status": 201, "headers": headers})
            await send({"type": "http.response.body", "body": payload})
        elif path == "/listen":  # a receive() pending during the answer (as disconnect listeners do)
            listener = asyncio.create_task(receive())
            await asyncio.sleep(0.01)
            await send_answer(send, 200, headers, payload)
            try:
                got = await asyncio.wait_for(listener, 2)
            except TimeoutError:
                got = {"type": "still waiting"}
            self.listened.append(got["type"])
        elif path == "/wait":
            assert self.waited is not None
            await self.release.wait()
            try:
                await send_answer(send, 200, headers, payload)
            except BaseException as exc:
                self.waited.set_exception(exc)
                raise
            self.waited.set_result(None)
        else:
            await send_answer(
                send, 404 if path == "/missing" else 200, [*headers, (b"vary", b"Origin")], payload
            )


@asynccontextmanager
async def serving(app: Any, **config: Any) -> AsyncIterator[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    options: dict[str, Any] = {
        "lifespan": "off",
        "log_config": None,
        "access_log": False,
        "timeout_keep_alive": 30,
    }
    options.update(config)
    server = uvicorn.Server(uvicorn.Config(app, **options))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not task.done(), task
            await asyncio.sleep(0.01)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


def request(method: str, path: str, body: bytes = b"", *, version: str = "1.1", headers: str = "") -> bytes:
    head = f"{method} {path} HTTP/{version}\r\nhost: t\r\n{headers}"
    if body or method == "POST":
        head += f"content-length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


async def exchange(port: int, *writes: bytes, pause: float = 0.05) -> bytes:
    """Write ``writes`` (``pause`` apart) and read until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for data in writes:
            writer.write(data)
            await writer.drain()
            await asyncio.sleep(pause)
        return await asyncio.wait_for(reader.read(), 5)  # the server must close (keep-alive: 30 s)
    finally:
        writer.close()


@pytest.fixture
def cycle_sends(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every call of uvicorn's own ``RequestResponseCycle.send``, by message type."""
    calls: list[str] = []
    original = RequestResponseCycle.send

    async def counted(self: RequestResponseCycle, message: Any) -> None:
        calls.append(message["type"])
        await original(self, message)

    monkeypatch.setattr(RequestResponseCycle, "send", counted)
    return calls


async def both_ways(
    monkeypatch: pytest.MonkeyPatch,
    calls: list[str],
    run: Callable[[int], Any],
    *,
    asgi: int = 0,
    **config: Any,
) -> tuple[bytes, bytes]:
    """``run(port)``'s bytes with the direct write and without; with it, uvicorn's ``send`` must
    only have been called for the ``asgi`` answers the app sent itself."""
    assert _uvicorn_compat._CYCLE is RequestResponseCycle, "the start-up check refused the installed uvicorn"
    out = []
    for direct in (True, False):
        monkeypatch.setattr(_uvicorn_compat, "DIRECT", direct)
        calls.clear()
        app = App()
        async with serving(app, **config) as port:
            out.append(await run(port))
        assert all(t == "http.disconnect" for t in app.listened), app.listened
        if direct:
            assert calls == ["http.response.start", "http.response.body"] * asgi, calls
        else:
            assert len(calls) > 2 * asgi, calls
    return out[0], out[1]


def same(a: bytes, b: bytes) -> bytes:
    a_, b_ = _DATE.sub(b"\r\ndate: D\r\n", a), _DATE.sub(b"\r\ndate: D\r\n", b)
    assert a_ == b_
    assert a_.count(b"\r\ndate: D\r\n") == a_.count(b"HTTP/1.1 ") - a_.count(b"HTTP/1.1 100 ")
    return a_


def test_the_installed_uvicorn_is_the_one_relied_on() -> None:
    assert _uvicorn_compat.DIRECT and _uvicorn_compat._CYCLE is RequestResponseCycle
    config = uvicorn.Config(App(), log_config=None)
    config.load()
    assert config.http_protocol_class is HttpToolsProtocol  # what ``serve`` gets with http="auto"


async def test_pipelined_and_keep_alive(monkeypatch: pytest.MonkeyPatch, cycle_sends: list[str]) -> None:
    async def run(port: int) -> bytes:
        pipelined = (
            request("POST", "/direct", b"one")
            + request("POST", "/asgi", b"two")
            + request("GET", "/missing")
            + request("POST", "/listen", b"four")
        )
        return await exchange(
            port,
            pipelined,
            request("POST", "/direct", b"later"),
            request("GET", "/direct", headers="connection: close\r\n"),
        )

    direct, plain = await both_ways(monkeypatch, cycle_sends, run, asgi=1, server_header=True)
    text = same(direct, plain)
    statuses = re.findall(rb"HTTP/1.1 (\d+) ", text)
    assert statuses == [b"200", b"201", b"404", b"200", b"200", b"200"]
    bodies = [json.loads(x) for x in re.findall(rb"\{[^{}]*\}", text)]
    assert [b["path"] for b in bodies] == ["/direct", "/asgi", "/missing", "/listen", "/direct", "/direct"]
    assert bodies[0]["body"] == "one" and bodies[4]["body"] == "later"
    first = text.split(b"\r\n\r\n", 1)[0]
    assert first.split(b"\r\n")[1:] == [
        b"date: D",
        b"server: uvicorn",
        b"content-length: %d" % len(json.dumps(bodies[0])),
        b"content-type: application/json",
        b"vary: Origin",
    ]
    assert text.count(b"connection: close") == 1 and text.rstrip(b"}").endswith(b'"body": ""')


async def test_http_1_0_chunked_and_100_continue(
    monkeypatch: pytest.MonkeyPatch, cycle_sends: list[str]
) -> None:
    async def run_1_0(port: int) -> bytes:
        return await exchange(port, request("POST", "/direct", b"old", version="1.0"))

    direct, plain = await both_ways(monkeypatch, cycle_sends, run_1_0, server_header=False)
    text = same(direct, plain)
    assert text.startswith(b"HTTP/1.1 200 OK\r\ndate: D\r\ncontent-length:")
    assert b"\r\nconnection: close\r\n\r\n" in text and b"server:" not in text

    async def run_chunked(port: int) -> bytes:
        return await exchange(
            port,
            b"POST /direct HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\nexpect: 100-continue\r\n\r\n",
            b"3\r\nabc\r\n",
            b"2\r\nde\r\n0\r\n\r\n",
            request("GET", "/direct", headers="connection: close\r\n"),
        )

    direct, plain = await both_ways(monkeypatch, cycle_sends, run_chunked)
    text = same(direct, plain)
    assert text.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n")
    assert b'"body": "abcde"' in text


async def test_keep_alive_timeout_closes_after_a_direct_answer(
    monkeypatch: pytest.MonkeyPatch, cycle_sends: list[str]
) -> None:
    async def run(port: int) -> bytes:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        got = await exchange(port, request("POST", "/direct", b"x"))  # the server closes it
        assert loop.time() - t0 < 5
        return got

    direct, plain = await both_ways(monkeypatch, cycle_sends, run, timeout_keep_alive=1)
    assert b"connection: close" not in same(direct, plain)


@pytest.mark.parametrize("direct", [True, False])
async def test_client_gone_before_the_answer(monkeypatch: pytest.MonkeyPatch, direct: bool) -> None:
    monkeypatch.setattr(_uvicorn_compat, "DIRECT", direct)
    app = App()
    app.waited = asyncio.get_running_loop().create_future()
    async with serving(app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request("POST", "/wait", b"w"))
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.close()
        await asyncio.sleep(0.1)
        app.release.set()
        await asyncio.wait_for(app.waited, 5)  # answered into the void, without an error


async def test_access_log_uses_uvicorn_send(cycle_sends: list[str]) -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign, assignment]
    logger = logging.getLogger("uvicorn.access")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        async with serving(App(), access_log=True) as port:
            got = await exchange(port, request("POST", "/direct", b"x", headers="connection: close\r\n"))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert got.startswith(b"HTTP/1.1 200 OK\r\n")
    assert cycle_sends == ["http.response.start", "http.response.body"]
    assert len(records) == 1 and "POST /direct" in records[0].getMessage()


async def test_other_servers_get_the_two_messages() -> None:
    sent: list[Any] = []

    async def send(message: Any) -> None:
        sent.append(message)

    headers = [(b"content-length", b"2"), (b"content-type", b"application/json")]
    await send_answer(send, 200, headers, b"{}")
    assert sent == [
        {"type": "http.response.start", "status": 200, "headers": headers},
        {"type": "http.response.body", "body": b"{}"},
    ]


def test_start_up_check_refuses_another_cycle(monkeypatch: pytest.MonkeyPatch) -> None:
    class OtherCycle:
        def __init__(self, scope: Any, transport: Any, flow: Any) -> None: ...

        async def send(self, message: Any) -> None: ...

    fake = types.ModuleType("uvicorn.protocols.http.httptools_impl")
    fake.RequestResponseCycle = OtherCycle  # type: ignore[attr-defined]
    fake.STATUS_LINE = {200: b"HTTP/1.1 200 OK\r\n"}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "uvicorn.protocols.http.httptools_impl", fake)
    assert _uvicorn_compat._resolve() == (None, None)
    monkeypatch.setitem(sys.modules, "uvicorn.protocols.http.httptools_impl", None)  # no httptools
    assert _uvicorn_compat._resolve() == (None, None)


async def test_proxy_headers_still_apply_behind_the_fast_path() -> None:
    # ``serve`` runs uvicorn with proxy_headers=False and puts uvicorn's middleware behind the fast
    # path (``GatewayApp.put_behind_fast_path``): the Starlette stack sees the forwarded client.
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    from stepflow_gateway.server.fastpath import GatewayApp

    async def who(request: Any) -> PlainTextResponse:
        return PlainTextResponse(f"{request.client.host} {request.url.scheme}")

    app = GatewayApp(routes=[Route("/who", who)])
    app.put_behind_fast_path(lambda stack: ProxyHeadersMiddleware(stack, trusted_hosts="127.0.0.1"))
    async with serving(app, proxy_headers=False) as port:
        got = await exchange(
            port,
            request(
                "GET",
                "/who",
                headers="x-forwarded-for: 10.1.2.3\r\nx-forwarded-proto: https\r\nconnection: close\r\n",
            ),
        )
    assert got.startswith(b"HTTP/1.1 200 OK\r\n") and got.endswith(b"\r\n\r\n10.1.2.3 https"), got
