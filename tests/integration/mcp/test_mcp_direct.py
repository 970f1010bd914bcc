"""The direct stdio ``tools/call`` path (``_direct.py``): same outcomes as the SDK path, real servers.

Two servers: server-everything (Node, handshake era) for load and interleaving, and
``raw_server.py`` (scripted bytes, handshake era) for every result shape, JSON-RPC errors,
timeouts, cancellations and progress, seen on the server's side of the wire. "SDK path" below is
the same live plugin with its connection's direct path switched off, so both paths talk to the
same server process.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog
from mcp_support import everything_stdio_config, exec_ctx, running_plugin, wait_until
from raw_server import RESULTS
from structlog.testing import capture_logs

from stepflow_gateway.errors import ComponentError
from stepflow_gateway.plugins.mcp import McpPlugin, mapping
from stepflow_gateway.plugins.mcp._direct import DirectCalls

pytestmark = pytest.mark.anyio

RAW_SERVER = Path(__file__).with_name("raw_server.py")


def raw_config(log: Path, **extra: Any) -> dict[str, Any]:
    return {"command": sys.executable, "args": [str(RAW_SERVER), str(log)], **extra}


def direct_of(plugin: McpPlugin) -> DirectCalls:
    conn = plugin._conn
    assert conn is not None and conn.direct is not None, "the direct path is not in use"
    return conn.direct


@contextmanager
def sdk_path(plugin: McpPlugin) -> Iterator[None]:
    """Route this plugin's calls through the SDK for the block (same connection, same server)."""
    conn = plugin._conn
    assert conn is not None
    saved, conn.direct = conn.direct, None
    try:
        yield
    finally:
        conn.direct = saved


def sent_requests(direct: DirectCalls) -> int:
    return direct._next


async def outcome(plugin: McpPlugin, component: str, value: Any, step: str = "step1") -> dict[str, Any]:
    """A call's outcome as plain data: the FlowResult's JSON or the ComponentError's stack."""
    try:
        with anyio.fail_after(20):
            result = await plugin.execute(component, value, exec_ctx(step))
    except ComponentError as exc:
        return {"componentError": exc.stack}
    return result.to_json()


def notifications(log: Path, method: str) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return [m for m in lines if m.get("method") == method]


# -- equivalence ----------------------------------------------------------------------------------


@pytest.mark.parametrize("output", ["auto", "structured", "content"])
async def test_every_result_shape_maps_as_on_the_sdk_path(tmp_path: Path, output: str) -> None:
    async with running_plugin(raw_config(tmp_path / "log", output=output), tmp_path, name="raw") as plugin:
        direct = direct_of(plugin)
        before = sent_requests(direct)
        via_direct = {name: await outcome(plugin, f"/{name}", {}) for name in RESULTS}
        assert sent_requests(direct) - before == len(RESULTS)
        with sdk_path(plugin):
            via_sdk = {name: await outcome(plugin, f"/{name}", {}) for name in RESULTS}
        assert sent_requests(direct) - before == len(RESULTS)  # the SDK path sent the second round
    for name in RESULTS:
        assert via_direct[name] == via_sdk[name], name
    # spot checks that the comparison covers the interesting cases
    if output == "auto":
        assert via_direct["plain"]["result"] == [{"type": "text", "text": "hi"}]
        assert via_direct["big_number"]["result"] == {"n": 123456789012345678901234567890}
        assert via_direct["rpc_error"]["error"]["data"]["mcpError"] == {
            "code": -32050,
            "message": "boom",
            "data": {"x": 1},
        }
        assert via_direct["error_result"]["error"]["message"] == "Tool 'error_result' returned an error: bad"
    assert via_direct["malformed_content"]["componentError"][0]["error"].startswith(
        "MCP server returned an invalid result: "
    )
    assert via_direct["schema_bad"]["componentError"][0]["error"].startswith(
        "structured content does not match the tool's output schema: "
    )


async def test_plain_mapping_agrees_with_the_validated_model() -> None:
    # map_plain_call_result must give map_call_result's answer whenever it answers at all.
    from stepflow_gateway.plugins.mcp._sdk_compat import check_call_result

    for version in ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"):
        for name, canned in RESULTS.items():
            raw = canned.get("result")
            if raw is None:
                continue
            for mode in ("auto", "structured", "content"):
                try:
                    plain = mapping.map_plain_call_result(name, json.loads(json.dumps(raw)), mode)
                except ComponentError as exc:
                    plain = exc.stack  # type: ignore[assignment]
                if plain is None:
                    continue
                model = check_call_result(json.loads(json.dumps(raw)), version)
                try:
                    expected: Any = mapping.map_call_result(name, model, mode)
                except ComponentError as exc:
                    expected = exc.stack
                assert plain == expected, (version, name, mode)


# -- concurrency and interleaving with the SDK ------------------------------------------------------


async def test_64_overlapping_echo_calls_pair_correctly(tmp_path: Path) -> None:
    async with running_plugin(everything_stdio_config(), tmp_path, name="everything") as plugin:
        direct = direct_of(plugin)
        before = sent_requests(direct)
        results: dict[int, Any] = {}
        in_flight: list[int] = []

        async def call(i: int) -> None:
            result = await plugin.execute("/echo", {"message": f"m{i}-" + "x" * i}, exec_ctx(f"s{i}"))
            results[i] = result.result

        async def watch() -> None:
            # Runs once every call above has sent its request and waits for the answer.
            in_flight.append(direct.in_flight)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for i in range(64):
                    tg.start_soon(call, i)
                tg.start_soon(watch)
        assert results == {i: [{"type": "text", "text": f"Echo: m{i}-" + "x" * i}] for i in range(64)}
        assert sent_requests(direct) - before == 64
        assert in_flight[0] > 1, "the calls never overlapped"
        assert direct.in_flight == 0


async def test_sdk_requests_interleave_with_direct_calls(tmp_path: Path) -> None:
    async with running_plugin(everything_stdio_config(), tmp_path, name="everything") as plugin:
        conn = plugin._conn
        assert conn is not None
        direct = direct_of(plugin)
        echoes: list[Any] = []
        listings: list[int] = []
        resources: list[str] = []

        async def echo(i: int) -> None:
            echoes.append((i, (await plugin.execute("/echo", {"message": str(i)}, exec_ctx())).result))

        async def list_tools() -> None:
            listings.append(len((await conn.client.list_tools(cache_mode="bypass")).tools))

        async def read_resource() -> None:
            # an extra component: a resources/read request on the SDK path
            result = await plugin.execute(
                "/resources/read", {"uri": "demo://resource/static/document/architecture.md"}, exec_ctx()
            )
            resources.append(result.outcome)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for i in range(48):
                    tg.start_soon(echo, i)
                    if i % 8 == 0:
                        tg.start_soon(list_tools)
                        tg.start_soon(read_resource)
        assert sorted(echoes) == [(i, [{"type": "text", "text": f"Echo: {i}"}]) for i in range(48)]
        assert len(listings) == 6 and all(n == listings[0] and n > 5 for n in listings)
        assert resources == ["success"] * 6
        assert direct.in_flight == 0


async def test_unknown_tool_sent_to_the_server_maps_as_on_the_sdk_path(tmp_path: Path) -> None:
    # The catalogue never sends an unknown name, so put it on the wire below execute().
    async with running_plugin(everything_stdio_config(), tmp_path, name="everything") as plugin:
        conn = plugin._conn
        assert conn is not None
        direct = direct_of(plugin)
        via_direct = await plugin._call_direct(conn, direct, "/no-such-tool", "no-such-tool", {}, "s1")
        with anyio.fail_after(10):
            sdk_result = await conn.client.call_tool("no-such-tool", {}, 10.0)
        assert via_direct == mapping.map_call_result("no-such-tool", sdk_result)
        assert via_direct.outcome == "failed" and "no-such-tool" in via_direct.error.message  # type: ignore[union-attr]


async def test_arguments_orjson_cannot_encode_go_through_the_sdk(tmp_path: Path) -> None:
    async with running_plugin(raw_config(tmp_path / "log"), tmp_path, name="raw") as plugin:
        result = await plugin.execute("/plain", {"n": 2**70}, exec_ctx())
        assert result.result == [{"type": "text", "text": "hi"}]


# -- timeouts, cancellation, progress ---------------------------------------------------------------


async def test_timeout_cancels_on_the_wire_then_next_call_works(tmp_path: Path) -> None:
    log = tmp_path / "log"
    async with running_plugin(raw_config(log, timeoutMs=300), tmp_path, name="raw") as plugin:
        direct = direct_of(plugin)
        timed_out = await outcome(plugin, "/slow", {})
        message = "MCP request 'tools/call' (slow) timed out after 300 ms"
        assert timed_out == {"componentError": [{"error": message}]}
        await wait_until(lambda: len(notifications(log, "notifications/cancelled")) == 1)
        (cancel,) = notifications(log, "notifications/cancelled")
        rid = f"sfg-{sent_requests(direct)}"
        assert cancel["params"] == {"requestId": rid, "reason": "timed out after 0.3s"}
        assert plugin.connected and direct.in_flight == 0
        assert (await outcome(plugin, "/plain", {}))["result"] == [{"type": "text", "text": "hi"}]
        # the SDK path says and sends the same (with its own integer id)
        with sdk_path(plugin):
            assert await outcome(plugin, "/slow", {}) == timed_out
        await wait_until(lambda: len(notifications(log, "notifications/cancelled")) == 2)
        sdk_cancel = notifications(log, "notifications/cancelled")[1]
        assert sdk_cancel["params"]["reason"] == cancel["params"]["reason"]
        assert isinstance(sdk_cancel["params"]["requestId"], int)


async def test_cancelled_step_sends_cancelled_notification(tmp_path: Path) -> None:
    log = tmp_path / "log"
    async with running_plugin(raw_config(log), tmp_path, name="raw") as plugin:
        direct = direct_of(plugin)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(plugin.execute, "/slow", {}, exec_ctx())
                await wait_until(lambda: direct.in_flight == 1)
                tg.cancel_scope.cancel()  # what the engine does when a run is cancelled
        await wait_until(lambda: len(notifications(log, "notifications/cancelled")) == 1)
        (cancel,) = notifications(log, "notifications/cancelled")
        assert cancel["params"] == {"requestId": f"sfg-{sent_requests(direct)}", "reason": "caller cancelled"}
        assert direct.in_flight == 0 and plugin.connected
        assert (await outcome(plugin, "/plain", {}))["outcome"] == "success"


async def test_progress_of_direct_calls_is_logged(tmp_path: Path) -> None:
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with capture_logs() as logs:
            async with running_plugin(raw_config(tmp_path / "log"), tmp_path, name="raw") as plugin:
                direct_of(plugin)
                done = await outcome(plugin, "/progress", {}, step="step-9")
    finally:
        structlog.configure(**saved)
    assert done["outcome"] == "success"
    progress = [e for e in logs if e["event"] == "mcp progress"]
    assert [(e["progress"], e["total"], e["message"]) for e in progress] == [(1.0, 2.0, "m"), (2.0, 2.0, "m")]
    assert {(e["plugin"], e["component"], e["step_id"]) for e in progress} == {("raw", "/progress", "step-9")}


async def test_everything_long_running_operation_reports_progress_then_is_cancelled(tmp_path: Path) -> None:
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with capture_logs() as logs:
            async with running_plugin(everything_stdio_config(), tmp_path, name="everything") as plugin:
                direct = direct_of(plugin)
                with anyio.fail_after(10):
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(
                            plugin.execute,
                            "/trigger-long-running-operation",
                            {"duration": 20, "steps": 40},
                            exec_ctx("long"),
                        )
                        await wait_until(lambda: any(e["event"] == "mcp progress" for e in logs))
                        tg.cancel_scope.cancel()
                assert direct.in_flight == 0
                echoed = await plugin.execute("/echo", {"message": "after"}, exec_ctx())
                assert echoed.result == [{"type": "text", "text": "Echo: after"}]
    finally:
        structlog.configure(**saved)
    first = next(e for e in logs if e["event"] == "mcp progress")
    assert first["step_id"] == "long" and first["total"] == 40.0
