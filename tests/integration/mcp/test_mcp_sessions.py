"""One shared MCP session: concurrency, timeouts, cancellation, reconnects, refresh, paging, start."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

import anyio
import pytest
import structlog
from mcp_support import (
    assert_long_calls_overlap,
    everything_stdio_config,
    exec_ctx,
    fixture_config,
    running_plugin,
    time_config,
    wait_until,
)
from structlog.testing import capture_logs

from stepflow_gateway.core.result import FlowResult
from stepflow_gateway.errors import ComponentError, PluginStartError
from stepflow_gateway.plugins.base import PluginContext
from stepflow_gateway.plugins.mcp import McpPlugin, McpPluginConfig

pytestmark = pytest.mark.anyio

MODES = pytest.mark.parametrize("mode", ["auto", "legacy"])
"""The Python fixture speaks 2026-07-28 in ``auto`` (SDK call path) and 2025-11-25 in ``legacy``
(the plugin's direct stdio call path): behaviour must not depend on which."""


async def _pid(plugin: McpPlugin) -> int:
    result = await plugin.execute("/pid", {}, exec_ctx())
    return int(result.result["result"])


@MODES
async def test_parallel_calls_overlap_on_one_session(tmp_path: Path, mode: str) -> None:
    async with running_plugin(fixture_config(mode=mode), tmp_path) as plugin:
        server_pid = await _pid(plugin)
        results: list[FlowResult] = []

        async def call(i: int) -> None:
            results.append(await plugin.execute("/sleep", {"seconds": 0.6}, exec_ctx(f"s{i}")))

        started = time.perf_counter()
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for i in range(4):
                    tg.start_soon(call, i)
        elapsed = time.perf_counter() - started
        assert [r.result for r in results] == [{"result": "slept 0.6"}] * 4
        assert elapsed < 1.8, f"4 x 0.6 s calls took {elapsed:.2f} s: they did not overlap"
        assert await _pid(plugin) == server_pid  # one server, one session


@MODES
async def test_max_concurrency_serialises(tmp_path: Path, mode: str) -> None:
    async with running_plugin(fixture_config(maxConcurrency=1, mode=mode), tmp_path) as plugin:
        started = time.perf_counter()
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(plugin.execute, "/sleep", {"seconds": 0.3}, exec_ctx())
        assert time.perf_counter() - started >= 0.85


async def test_everything_long_running_calls_overlap(tmp_path: Path) -> None:
    async with running_plugin(everything_stdio_config(), tmp_path, name="everything") as plugin:
        await assert_long_calls_overlap(plugin)


async def test_timeout_then_same_session_works(tmp_path: Path) -> None:
    # peers.md §5.4: a 0.5 s call timeout on a 5 s operation, then `echo` on the same session
    async with running_plugin(everything_stdio_config(timeoutMs=500), tmp_path, name="everything") as plugin:
        started = time.perf_counter()
        with pytest.raises(ComponentError) as info:
            with anyio.fail_after(10):
                await plugin.execute(
                    "/trigger-long-running-operation", {"duration": 5, "steps": 5}, exec_ctx()
                )
        assert time.perf_counter() - started < 3
        assert info.value.stack == [
            {"error": "MCP request 'tools/call' (trigger-long-running-operation) timed out after 500 ms"}
        ]
        assert plugin.connected
        echoed = await plugin.execute("/echo", {"message": "next"}, exec_ctx())
        assert echoed.result == [{"type": "text", "text": "Echo: next"}]


@MODES
async def test_cancelled_step_cancels_the_request(tmp_path: Path, mode: str) -> None:
    marker = tmp_path / "started"
    async with running_plugin(fixture_config(mode=mode), tmp_path) as plugin:
        server_pid = await _pid(plugin)
        started = time.perf_counter()
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(plugin.execute, "/sleep", {"seconds": 30, "marker": str(marker)}, exec_ctx())
                await wait_until(marker.exists)
                tg.cancel_scope.cancel()  # what the engine does when a run is cancelled
        assert time.perf_counter() - started < 5
        # notifications/cancelled reached the server: its handler was interrupted
        await wait_until(lambda: marker.read_text() == "cancelled")
        # the session stays usable and the server was not restarted
        assert plugin.connected
        assert await _pid(plugin) == server_pid
        added = await plugin.execute("/add", {"a": 40, "b": 2}, exec_ctx())
        assert added.result == {"result": 42}


@MODES
async def test_progress_is_logged_with_plugin_and_component(tmp_path: Path, mode: str) -> None:
    saved = structlog.get_config()
    # Progress is a debug line; whatever logging config an earlier test installed, let it through.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with capture_logs() as logs:
            async with running_plugin(fixture_config(mode=mode), tmp_path, name="fx") as plugin:
                done = await plugin.execute("/sleep", {"seconds": 0}, exec_ctx("step-7"))
                assert done.result == {"result": "slept 0.0"}
                # progress callbacks run as separate tasks and may land just after the result
                await wait_until(lambda: any(e["event"] == "mcp progress" for e in logs))
    finally:
        structlog.configure(**saved)
    progress = next(e for e in logs if e["event"] == "mcp progress")
    assert progress["plugin"] == "fx" and progress["component"] == "/sleep"
    assert progress["step_id"] == "step-7"
    assert (progress["progress"], progress["total"], progress["message"]) == (1, 2, "half")


@MODES
async def test_killed_server_reconnects_on_next_call(tmp_path: Path, mode: str) -> None:
    async with running_plugin(fixture_config(mode=mode), tmp_path) as plugin:
        first_pid = await _pid(plugin)
        os.kill(first_pid, signal.SIGKILL)
        await wait_until(lambda: not plugin.connected)
        second_pid = await _pid(plugin)
        assert second_pid != first_pid
        assert plugin.connected


async def test_real_time_server_killed_between_calls(tmp_path: Path) -> None:
    from mcp_support import child_pids

    before = child_pids()
    async with running_plugin(time_config(), tmp_path, name="time") as plugin:
        (server_pid,) = child_pids() - before
        os.kill(server_pid, signal.SIGKILL)
        await wait_until(lambda: not plugin.connected)
        result = await plugin.execute("/get_current_time", {"timezone": "UTC"}, exec_ctx())
        assert result.outcome == "success" and result.result["timezone"] == "UTC"
    # no orphans: the respawned server is gone after close
    assert not (child_pids() - before)


@MODES
async def test_in_flight_call_fails_clearly_when_server_dies(tmp_path: Path, mode: str) -> None:
    async with running_plugin(fixture_config(mode=mode), tmp_path) as plugin:
        server_pid = await _pid(plugin)
        outcome: list[BaseException] = []

        async def long_call() -> None:
            try:
                await plugin.execute("/sleep", {"seconds": 30, "marker": str(marker)}, exec_ctx())
            except ComponentError as exc:
                outcome.append(exc)

        marker = tmp_path / "started"
        with anyio.fail_after(15):
            async with anyio.create_task_group() as tg:
                tg.start_soon(long_call)
                await wait_until(marker.exists)  # the request has reached the server
                os.kill(server_pid, signal.SIGKILL)
        (error,) = outcome
        assert isinstance(error, ComponentError)
        assert error.stack[0]["error"] == "MCP connection lost: Connection closed"
        # not retried; the next call gets a fresh server
        assert await _pid(plugin) != server_pid


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_list_changed_refreshes_catalogue(tmp_path: Path, mode: str) -> None:
    changed = anyio.Event()
    config = fixture_config(mode=mode)
    async with running_plugin(config, tmp_path, on_components_changed=changed.set) as plugin:
        assert "/shout" not in [c.name for c in await plugin.list_components()]
        added = await plugin.execute("/add_tool", {"name": "shout"}, exec_ctx())
        assert added.outcome == "success"
        with anyio.fail_after(10):
            await changed.wait()
        assert "/shout" in [c.name for c in await plugin.list_components()]
        shouted = await plugin.execute("/shout", {"x": "hey"}, exec_ctx())
        assert shouted.result == {"result": "shout:hey"}


async def test_unknown_tool_triggers_one_refresh(tmp_path: Path) -> None:
    # With no list_changed at all, a name the catalogue lacks is looked up again once.
    async with running_plugin(fixture_config(), tmp_path) as plugin:
        await plugin.execute("/add_tool", {"name": "later"}, exec_ctx())
        result = await plugin.execute("/later", {"x": "1"}, exec_ctx())
        assert result.result == {"result": "later:1"}


@MODES
async def test_pagination_and_json_rpc_errors(tmp_path: Path, mode: str) -> None:
    async with running_plugin(fixture_config("paged", mode=mode), tmp_path) as plugin:
        assert [c.name for c in await plugin.list_components()] == ["/t0", "/t1", "/t2", "/t3", "/t4"]
        ok = await plugin.execute("/t3", None, exec_ctx())
        assert ok.result == [{"type": "text", "text": "called t3"}]
        failed = await plugin.execute("/t4", {}, exec_ctx())
        # The Python SDK server words a handler's exception per protocol era.
        if mode == "auto":
            mcp_error = {"code": -32603, "message": "Internal server error"}
        else:
            mcp_error = {"code": 0, "message": "t4 is broken"}
        assert failed.to_json() == {
            "outcome": "failed",
            "error": {
                "code": 500,
                "message": "Tool 't4' execution failed",
                "data": {"tool": "t4", "mcpError": mcp_error},
            },
        }


@MODES
async def test_structured_and_error_results_from_python_server(tmp_path: Path, mode: str) -> None:
    async with running_plugin(fixture_config(mode=mode), tmp_path) as plugin:
        components = {c.name: c for c in await plugin.list_components()}
        assert components["/add"].output_schema["properties"]["result"]["type"] == "integer"
        added = await plugin.execute("/add", {"a": 2, "b": 3}, exec_ctx())  # checked against it
        assert added.result == {"result": 5}
        failed = await plugin.execute("/fail", {"message": "bad input"}, exec_ctx())
        assert failed.outcome == "failed" and failed.error is not None
        assert failed.error.message == "Tool 'fail' returned an error: Error executing tool fail: bad input"


async def test_start_failures_are_clear(tmp_path: Path) -> None:
    ctx = PluginContext("broken", tmp_path, None, dict(os.environ))  # type: ignore[arg-type]
    missing = McpPlugin("broken", McpPluginConfig.model_validate({"command": "no-such-mcp-server-binary"}))
    with pytest.raises(PluginStartError, match="MCP server failed to start: .*no-such-mcp-server-binary"):
        with anyio.fail_after(20):
            await missing.start(ctx)
    await missing.close()

    crashing = McpPlugin(
        "broken", McpPluginConfig.model_validate(fixture_config("no-such-fixture-kind-but-python-runs"))
    )
    crashing.config.args[0] = str(tmp_path / "absent.py")
    with pytest.raises(PluginStartError, match=r"server stderr: .*absent\.py"):
        with anyio.fail_after(20):
            await crashing.start(ctx)
    await crashing.close()


async def test_start_timeout_on_a_silent_server(tmp_path: Path) -> None:
    ctx = PluginContext("silent", tmp_path, None, dict(os.environ))  # type: ignore[arg-type]
    # `sleep` reads nothing and answers nothing: the handshake never completes.
    silent = McpPlugin(
        "silent", McpPluginConfig.model_validate({"command": "sleep", "args": ["60"], "startTimeoutMs": 400})
    )
    started = time.perf_counter()
    with pytest.raises(PluginStartError, match=r"within 400 ms \(startTimeoutMs\)"):
        with anyio.fail_after(20):
            await silent.start(ctx)
    await silent.close()
    # 0.4 s + the SDK's bounded stdio shutdown (2 s grace, then SIGTERM)
    assert time.perf_counter() - started < 8


async def test_start_inside_a_callers_timeout_scope_and_close_from_another_task(tmp_path: Path) -> None:
    plugin = McpPlugin("fx", McpPluginConfig.model_validate(fixture_config()))
    ctx = PluginContext("fx", tmp_path, None, dict(os.environ))  # type: ignore[arg-type]
    with anyio.fail_after(30):
        await plugin.start(ctx)
    assert (await plugin.execute("/add", {"a": 1, "b": 1}, exec_ctx())).result == {"result": 2}
    with anyio.fail_after(15):
        async with anyio.create_task_group() as tg:
            tg.start_soon(plugin.close)
    with pytest.raises(ComponentError, match="closed"):
        await plugin.execute("/add", {"a": 1, "b": 1}, exec_ctx())


async def test_serve_under_a_host_task_group(tmp_path: Path) -> None:
    # The structured alternative to start(): the host owns the task.
    plugin = McpPlugin("fx", McpPluginConfig.model_validate(fixture_config()))
    ctx = PluginContext("fx", tmp_path, None, dict(os.environ))  # type: ignore[arg-type]
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            await tg.start(plugin.serve, ctx)
            assert (await plugin.execute("/add", {"a": 2, "b": 3}, exec_ctx())).result == {"result": 5}
            await plugin.close()
