"""FramePeer over a real socketpair: correlation, split frames, errors, timeouts, closing, flow control."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import anyio
import pytest

from stepflow_gateway.errors import CallTimeout, TransportClosed
from stepflow_gateway.protocol.framepeer import FramePeer
from stepflow_gateway.protocol.jsonrpc import RpcError

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def handler(method: str, params: Any) -> Any:
    if method == "echo":
        return params
    if method == "sleep":
        await anyio.sleep(params["s"])
        return "slept"
    if method == "fail":
        raise RpcError(-32003, "nope", {"x": 1})
    if method == "boom":
        raise ValueError("kaboom")
    if method == "unserialisable":
        return {"x": object()}
    raise RpcError(-32601, "no such method")


async def pair(codec: str = "orjson") -> tuple[FramePeer, FramePeer]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.setblocking(False)
    b.setblocking(False)
    client = FramePeer(None, codec=codec, name="client")
    server = FramePeer(handler, codec=codec, name="server")
    await client.accept_socket(a)
    await server.accept_socket(b)
    return client, server


@pytest.mark.parametrize("codec", ["orjson", "json", "json-stdlib"])
async def test_requests_errors_and_concurrency(codec: str) -> None:
    with anyio.fail_after(10):
        client, server = await pair(codec)
        async with anyio.create_task_group() as tg:
            await tg.start(client.run)
            await tg.start(server.run)
            assert await client.request("echo", {"a": [1, "é"]}) == {"a": [1, "é"]}
            with pytest.raises(RpcError) as err:
                await client.request("fail")
            assert (err.value.code, err.value.message, err.value.data) == (-32003, "nope", {"x": 1})
            with pytest.raises(RpcError) as err:
                await client.request("boom")
            assert err.value.code == -32603 and "kaboom" in err.value.message
            with pytest.raises(RpcError) as err:
                await client.request("unserialisable")
            assert err.value.code == -32603
            results: dict[int, Any] = {}

            async def one(i: int) -> None:
                results[i] = await client.request("echo", {"i": i})

            async with anyio.create_task_group() as inner:
                for i in range(200):
                    inner.start_soon(one, i)
            assert results == {i: {"i": i} for i in range(200)}
            big = {"blob": "x" * (8 * 1024 * 1024)}  # far above the transport's write buffer limits
            assert await client.request("echo", big) == big
            client.close("done")
            tg.cancel_scope.cancel()


async def test_frames_split_byte_by_byte_and_joined() -> None:
    with anyio.fail_after(10):
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        b.setblocking(False)
        server = FramePeer(handler, codec="json-stdlib", name="server")
        await server.accept_socket(b)
        frames = b""
        for i in range(3):
            payload = f'{{"jsonrpc":"2.0","id":{i},"method":"echo","params":{{"n":{i}}}}}'.encode()
            frames += len(payload).to_bytes(4, "big") + payload
        for byte in frames[:-10]:
            a.send(bytes([byte]))
            await asyncio.sleep(0)
        a.send(frames[-10:])
        a.setblocking(False)
        loop = asyncio.get_running_loop()
        got = b""
        while got.count(b'"result"') < 3:
            got += await loop.sock_recv(a, 65536)
        for i in range(3):
            assert f'"id":{i},"result":{{"n":{i}}}'.encode() in got
        server.close()
        a.close()


async def test_timeout_and_close_fail_in_flight_requests() -> None:
    with anyio.fail_after(10):
        client, server = await pair()
        async with anyio.create_task_group() as tg:
            await tg.start(client.run)
            await tg.start(server.run)
            with pytest.raises(CallTimeout):
                await client.request("sleep", {"s": 5}, timeout=0.05)
            caught: list[BaseException] = []

            async def waiting() -> None:
                try:
                    await client.request("sleep", {"s": 5})
                except TransportClosed as exc:
                    caught.append(exc)

            tg.start_soon(waiting)
            await anyio.sleep(0.05)
            server.close("server gone")
            await client.closed_event.wait()
            await anyio.sleep(0.01)
            assert caught and "Process crashed during request execution" in str(caught[0])
            assert client.closed
            with pytest.raises(TransportClosed):
                await client.request("echo", {})


async def test_oversized_frame_header_closes_the_connection() -> None:
    with anyio.fail_after(10):
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        b.setblocking(False)
        server = FramePeer(handler, name="server")
        await server.accept_socket(b)
        a.send((2**31).to_bytes(4, "big") + b"xx")
        await server.closed_event.wait()
        assert server.closed
        a.close()


async def test_cancelled_request_leaves_no_pending_entry() -> None:
    with anyio.fail_after(10):
        client, server = await pair()
        with anyio.move_on_after(0.05):
            await client.request("sleep", {"s": 5})
        assert client._pending == {}
        assert await client.request("echo", 1) == 1
        client.close()
        server.close()
