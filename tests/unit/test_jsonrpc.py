"""The JSON-RPC Peer over in-memory channels and over real byte framing (no subprocess)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from stepflow_gateway.errors import CallTimeout, ProtocolError, TransportClosed
from stepflow_gateway.protocol.framing import FrameChannel, LineChannel
from stepflow_gateway.protocol.jsonrpc import Peer, RpcError
from stepflow_gateway.protocol.memory import memory_channel_pair

pytestmark = pytest.mark.anyio


async def _echo_handler(method: str, params: Any) -> Any:
    if method == "echo":
        return params
    if method == "slow":
        await anyio.sleep(params["s"])
        return params["tag"]
    if method == "fail":
        raise RpcError(-32003, "Component execution failed: kaboom", {})
    if method == "crash":
        raise ValueError("bug")
    raise RpcError(-32601, f"Method not found: '{method}'")


async def test_requests_both_directions_and_out_of_order_responses() -> None:
    a, b = memory_channel_pair()
    client = Peer(a, _echo_handler, name="client")
    server = Peer(b, _echo_handler, name="server")
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(client.run)
            await tg.start(server.run)
            order: list[str] = []

            async def call(tag: str, delay: float) -> None:
                assert await client.request("slow", {"s": delay, "tag": tag}) == tag
                order.append(tag)

            async with anyio.create_task_group() as calls:
                calls.start_soon(call, "late", 0.3)
                calls.start_soon(call, "early", 0.05)
            assert order == ["early", "late"]
            assert await server.request("echo", {"x": [1, 2.0]}) == {"x": [1, 2.0]}
            await a.aclose()
    assert client.closed and server.closed


async def test_error_replies_and_handler_bugs_become_rpc_errors() -> None:
    a, b = memory_channel_pair()
    client, server = Peer(a, name="c"), Peer(b, _echo_handler, name="s")
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(client.run)
            await tg.start(server.run)
            with pytest.raises(RpcError) as info:
                await client.request("fail", {})
            assert (info.value.code, info.value.message, info.value.data) == (
                -32003,
                "Component execution failed: kaboom",
                {},
            )
            with pytest.raises(RpcError, match="Internal error: bug"):
                await client.request("crash", {})
            with pytest.raises(RpcError) as info:
                await client.request("nope", {})
            assert info.value.code == -32601
            # A peer without a handler refuses every request.
            with pytest.raises(RpcError, match="Method not found: 'echo'"):
                await server.request("echo", {})
            tg.cancel_scope.cancel()


async def test_params_always_sent_and_notifications_delivered() -> None:
    a, b = memory_channel_pair()
    seen: list[Any] = []
    client = Peer(a, name="c")
    server = Peer(b, _echo_handler, name="s", on_notification=lambda m, p: seen.append((m, p)))
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(server.run)
            await tg.start(client.run)
            await client.notify("initialized")
            assert await client.request("echo") == {}
            assert seen == [("initialized", {})]
            tg.cancel_scope.cancel()


async def test_timeout_and_close_fail_pending_requests() -> None:
    a, b = memory_channel_pair()
    client = Peer(a, name="c")
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            await tg.start(client.run)
            with pytest.raises(CallTimeout, match="no response to silent within 0.1 s"):
                await client.request("silent", {}, timeout=0.1)

            async def closer() -> None:
                await anyio.sleep(0.1)
                await b.aclose()  # the other side goes away

            tg.start_soon(closer)
            with pytest.raises(TransportClosed, match="Process crashed during request execution"):
                await client.request("never", {})
            with pytest.raises(TransportClosed):
                await client.request("after", {})


async def _byte_pipe() -> tuple[Any, Any]:
    send, receive = anyio.create_memory_object_stream[bytes](100)

    class Rx:
        async def receive(self, n: int = 65536) -> bytes:
            try:
                return await receive.receive()
            except anyio.EndOfStream:
                raise

    class Tx:
        async def send(self, data: bytes) -> None:
            # Split writes to exercise reassembly across chunks.
            for i in range(0, len(data), 7):
                await send.send(data[i : i + 7])

        async def aclose(self) -> None:
            await send.aclose()

    return Rx(), Tx()


async def test_line_channel_reassembles_and_skips_noise() -> None:
    rx, tx = await _byte_pipe()
    reader, writer = LineChannel(rx, None), LineChannel(None, tx)
    with anyio.fail_after(5):
        await writer.send({"jsonrpc": "2.0", "id": 1, "result": "é" * 50})
        await tx.send(b"not json at all\n\n")
        await writer.send({"jsonrpc": "2.0", "id": 2, "result": 15.0})
        await tx.aclose()
        assert (await reader.receive())["result"] == "é" * 50
        second = await reader.receive()
        assert second["result"] == 15.0 and isinstance(second["result"], float)
        with pytest.raises(anyio.EndOfStream):
            await reader.receive()


async def test_line_channel_refuses_messages_over_the_limit() -> None:
    _, tx = await _byte_pipe()
    writer = LineChannel(None, tx, max_line=100, name="py")
    with pytest.raises(ProtocolError, match=r"exceeds maxMessageBytes \(100\)"):
        await writer.send({"data": "x" * 200})


@pytest.mark.parametrize("codec", ["json", "json-stdlib"])
async def test_frame_channel_roundtrip(codec: str) -> None:
    rx, tx = await _byte_pipe()

    class Duplex:
        receive = rx.receive
        send = tx.send

        async def aclose(self) -> None:
            await tx.aclose()

    channel = FrameChannel(Duplex(), codec=codec)
    big = {"items": list(range(5000)), "s": "z" * 70000}
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:

            async def produce() -> None:
                await channel.send(big)
                await channel.send({"n": 1})

            tg.start_soon(produce)
            assert await channel.receive() == big
            assert await channel.receive() == {"n": 1}
