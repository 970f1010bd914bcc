"""The stepflow plugin against real component servers: stepflow-py 0.7.0 (stdio, G0), stepflow-py
0.9.2 (self-launching HTTP worker, G2) and our SDK over stdio, HTTP and the fast transport.

Each test runs against every kind of server: discovery, execution, concurrency on one connection,
blob callbacks, component errors, and crash → restart → retry with ``attempt`` 2.
"""

from __future__ import annotations

import os
import signal

import anyio
import pytest
from servers import KINDS
from stepflow_support import DictRuntime, exec_ctx, started_plugin

from stepflow_gateway.errors import ComponentError

pytestmark = pytest.mark.anyio


@pytest.fixture(params=list(KINDS))
def options(request: pytest.FixtureRequest) -> dict:
    return KINDS[request.param]()


def _is_fast(kind_options: dict) -> bool:
    return bool(kind_options.get("fastTransport")) and "sdk_server" in " ".join(kind_options.get("args", []))


async def test_discovery_lists_components_with_schemas(options: dict) -> None:
    async with started_plugin(options) as plugin:
        assert plugin._conn is not None and plugin._conn.fast == _is_fast(options)
        with anyio.fail_after(10):
            infos = {c.name: c for c in await plugin.list_components()}
        assert {"/add", "/sleepy", "/blob_roundtrip", "/boom", "/crash_first"} <= set(infos)
        add = infos["/add"]
        assert add.description == "Add two integers."
        schema = add.input_schema
        if "$ref" in schema:  # msgspec puts the object under $defs
            schema = schema["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
        assert schema["properties"]["a"]["type"] == "integer"
        assert sorted(schema["required"]) == ["a", "b"]


async def test_execute_returns_output(options: dict, runtime: DictRuntime) -> None:
    async with started_plugin(options, runtime) as plugin:
        with anyio.fail_after(10):
            result = await plugin.execute("/add", {"a": 2, "b": 3}, exec_ctx(runtime))
        assert result.is_success and result.result == {"sum": 5}


async def test_many_calls_in_flight_on_one_connection(options: dict, runtime: DictRuntime) -> None:
    async with started_plugin(options, runtime) as plugin:
        spans: dict[int, tuple[float, float]] = {}

        async def call(i: int) -> None:
            res = await plugin.execute("/sleepy", {"ms": 400, "tag": i}, exec_ctx(runtime, f"s{i}"))
            assert res.result["tag"] == i
            spans[i] = (res.result["start"], res.result["end"])

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for i in range(4):
                    tg.start_soon(call, i)
        assert len(spans) == 4
        # Every call started before any call ended: they ran at the same time.
        assert max(s for s, _ in spans.values()) < min(e for _, e in spans.values())


async def test_blob_callbacks_answered(options: dict, runtime: DictRuntime) -> None:
    async with started_plugin(options, runtime) as plugin:
        with anyio.fail_after(10):
            result = await plugin.execute("/blob_roundtrip", {"x": 1}, exec_ctx(runtime))
    blob_id = "5041bf1f713df204784353e82f6a4a535931cb64f1f4b4a5aeaffcb720918b22"
    assert result.result == {"blob_id": blob_id, "data": {"x": 1}}
    assert runtime.blobs[blob_id] == ({"x": 1}, "data")
    assert runtime.calls == ["put_blob", "get_blob"]


async def test_component_error_becomes_component_error_stack(options: dict, runtime: DictRuntime) -> None:
    async with started_plugin(options, runtime) as plugin:
        with anyio.fail_after(10), pytest.raises(ComponentError) as info:
            await plugin.execute("/boom", {}, exec_ctx(runtime))
        assert info.value.stack == [
            {"error": "error executing component"},
            {"error": "component server error(-32003): Component execution failed: kaboom"},
        ]
        # The server is still usable afterwards.
        with anyio.fail_after(10):
            assert (await plugin.execute("/add", {"a": 1, "b": 1}, exec_ctx(runtime))).result == {"sum": 2}


async def test_server_exiting_mid_call_is_restarted_and_call_retried(
    options: dict, runtime: DictRuntime
) -> None:
    async with started_plugin(options, runtime) as plugin:
        first = plugin._conn
        with anyio.fail_after(60):
            result = await plugin.execute("/crash_first", {}, exec_ctx(runtime))
        assert result.result["attempt"] == 2
        assert plugin._conn is not first and plugin._conn.generation == 2
        # Re-initialised: discovery and calls work on the new process.
        with anyio.fail_after(10):
            assert "/add" in {c.name for c in await plugin.list_components()}


async def test_server_killed_mid_call_is_restarted_and_call_retried(
    options: dict, runtime: DictRuntime
) -> None:
    async with started_plugin(options, runtime) as plugin:
        with anyio.fail_after(10):
            first_pid = (await plugin.execute("/slow_pid", {"ms": 0}, exec_ctx(runtime))).result["pid"]
        outcome = {}

        async def slow() -> None:
            outcome["r"] = await plugin.execute("/slow_pid", {"ms": 1500}, exec_ctx(runtime))

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(slow)
                await anyio.sleep(0.4)
                os.kill(first_pid, signal.SIGKILL)
        assert outcome["r"].result["attempt"] == 2
        assert outcome["r"].result["pid"] != first_pid


async def test_close_leaves_no_process_behind(options: dict, runtime: DictRuntime) -> None:
    async with started_plugin(options, runtime) as plugin:
        with anyio.fail_after(10):
            pid = (await plugin.execute("/slow_pid", {"ms": 0}, exec_ctx(runtime))).result["pid"]
        os.kill(pid, 0)  # alive while the plugin runs
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
