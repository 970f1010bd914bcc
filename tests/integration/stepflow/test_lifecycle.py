"""Start failures, timeouts, message limits, lazy start, remote HTTP, and both callback generations."""

from __future__ import annotations

import subprocess
import sys

import anyio
import pytest
from servers import SDK_SERVER, sf07_stdio
from stepflow_support import HERE, DictRuntime, exec_ctx, started_plugin

from stepflow_gateway.errors import ComponentError, PluginStartError

pytestmark = pytest.mark.anyio


async def test_missing_command_fails_start_clearly() -> None:
    with pytest.raises(PluginStartError, match="command 'no-such-server-xyz' not found on PATH"):
        async with started_plugin({"transport": "stdio", "command": "no-such-server-xyz"}):
            pass


async def test_server_exiting_at_start_reports_status_and_stderr() -> None:
    options = {
        "transport": "stdio",
        "command": sys.executable,
        "args": ["-c", "import sys; print('bad config', file=sys.stderr); sys.exit(2)"],
    }
    with pytest.raises(PluginStartError) as info:
        async with started_plugin(options):
            pass
    assert "exited with status 2" in str(info.value) and "bad config" in str(info.value)


async def test_worker_that_never_prints_a_port_fails_start() -> None:
    options = {"command": sys.executable, "args": ["-c", "import sys; print('hello'); sys.exit(0)"]}
    with pytest.raises(PluginStartError, match="before printing its port"):
        async with started_plugin(options):
            pass


async def test_request_timeout_fails_the_call_without_restart(runtime: DictRuntime) -> None:
    async with started_plugin({**sf07_stdio(), "timeoutMs": 300}, runtime) as plugin:
        with anyio.fail_after(10), pytest.raises(ComponentError, match="within 0.3 s"):
            await plugin.execute("/sleepy", {"ms": 3000}, exec_ctx(runtime))
        assert plugin._conn.generation == 1


async def test_message_over_limit_is_a_clear_error_not_a_crash_loop(runtime: DictRuntime) -> None:
    async with started_plugin(sf07_stdio(), runtime) as plugin:
        with anyio.fail_after(10):
            pid = (await plugin.execute("/slow_pid", {"ms": 0}, exec_ctx(runtime))).result["pid"]
        with pytest.raises(ComponentError, match=r"exceeds maxMessageBytes \(524288\)"):
            await plugin.execute("/size", {"text": "x" * (600 * 1024)}, exec_ctx(runtime))
        with anyio.fail_after(10):
            assert (await plugin.execute("/slow_pid", {"ms": 0}, exec_ctx(runtime))).result["pid"] == pid
            ok = await plugin.execute("/size", {"text": "x" * (400 * 1024)}, exec_ctx(runtime))
        assert ok.result == {"length": 400 * 1024}


async def test_fast_transport_has_no_line_limit(runtime: DictRuntime) -> None:
    options = {"transport": "stdio", "command": sys.executable, "args": [SDK_SERVER]}
    async with started_plugin(options, runtime) as plugin:
        assert plugin._conn.fast
        with anyio.fail_after(20):
            result = await plugin.execute("/echo", {"text": "y" * (3 * 1024 * 1024)}, exec_ctx(runtime))
        assert len(result.result["text"]) == 3 * 1024 * 1024


async def test_lazy_start_spawns_on_first_use(runtime: DictRuntime) -> None:
    async with started_plugin({**sf07_stdio(), "lazyStart": True}, runtime) as plugin:
        assert plugin._conn is None
        with anyio.fail_after(20):
            assert (await plugin.execute("/add", {"a": 1, "b": 2}, exec_ctx(runtime))).result == {"sum": 3}
        assert plugin._conn is not None


async def test_g0_flows_evaluate_callback(runtime: DictRuntime) -> None:
    runtime.blobs["f" * 64] = ({"op": "double"}, "flow")
    async with started_plugin(sf07_stdio(), runtime) as plugin:
        ctx = exec_ctx(runtime)
        with anyio.fail_after(10):
            result = await plugin.execute("/evaluate", {"flow_id": "f" * 64, "input": {"n": 21}}, ctx)
        assert result.result == {"result": {"doubled": 42}}
        # The nested run's parent is the calling step (found from the callback's observability).
        (parent,) = runtime.parents.values()
        assert parent is ctx
        with anyio.fail_after(10), pytest.raises(ComponentError, match="-32011.*Not found: flow with ID"):
            await plugin.execute("/evaluate", {"flow_id": "0" * 64, "input": {}}, exec_ctx(runtime))


async def test_g1_runs_submit_callback(runtime: DictRuntime) -> None:
    runtime.blobs["f" * 64] = ({"op": "double"}, "flow")
    options = {"transport": "stdio", "command": sys.executable, "args": [SDK_SERVER]}
    async with started_plugin(options, runtime) as plugin:
        ctx = exec_ctx(runtime)
        with anyio.fail_after(10):
            result = await plugin.execute("/evaluate", {"flow_id": "f" * 64, "input": {"n": 5}}, ctx)
        assert result.result == {"result": {"doubled": 10}, "run_id": ctx.run_id}
        assert list(runtime.parents.values()) == [ctx]


async def test_remote_http_server(free_port, runtime: DictRuntime) -> None:
    port = free_port()
    proc = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, SDK_SERVER, "--http", "--port", str(port)], stdout=subprocess.PIPE, cwd=HERE
    )
    try:
        assert proc.stdout is not None
        with anyio.fail_after(20):
            line = await anyio.to_thread.run_sync(proc.stdout.readline)
        assert line.strip() == f'{{"port": {port}}}'.encode()
        async with started_plugin(
            {"transport": "http", "url": f"http://127.0.0.1:{port}"}, runtime
        ) as plugin:
            with anyio.fail_after(10):
                assert (await plugin.execute("/add", {"a": 4, "b": 4}, exec_ctx(runtime))).result == {
                    "sum": 8
                }
                blob = await plugin.execute("/blob_roundtrip", {"y": 2}, exec_ctx(runtime))
            assert blob.result["data"] == {"y": 2}
            proc.terminate()
            proc.wait(10)
            # Remote mode never restarts anything: connect failures are retried, then reported.
            with anyio.fail_after(20), pytest.raises(ComponentError, match="cannot connect"):
                await plugin.execute("/add", {"a": 1, "b": 1}, exec_ctx(runtime))
    finally:
        proc.kill()
        proc.wait(10)


async def test_remote_start_fails_when_nothing_listens(free_port) -> None:
    with pytest.raises(PluginStartError, match="cannot connect"):
        async with started_plugin({"url": f"http://127.0.0.1:{free_port()}"}):
            pass
