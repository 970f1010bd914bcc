"""The builtin plugin: each of the builtins, its input checks and its exact error stacks.

Nested runs (eval/map/iterate) use an in-test ``RuntimeAPI``: blobs in a dict, and ``submit_run``
answering with canned results per flow (keyed by the flow's ``name``) while recording what was
submitted. The conformance suite runs the same builtins end to end through the real engine.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import pytest

from stepflow_gateway.core.result import FlowResult
from stepflow_gateway.errors import ComponentError, GatewayError, UnknownComponentError
from stepflow_gateway.jsonutil import dumps_compact
from stepflow_gateway.plugins.base import ExecutionContext, PluginContext, RunInfo
from stepflow_gateway.plugins.builtin import BuiltinPlugin, BuiltinPluginConfig
from stepflow_gateway.plugins.builtin.load_file import detect_format

pytestmark = pytest.mark.anyio

UDF = {"error": "error executing user-defined function"}
INVALID = {"error": "invalid input"}
UPSTREAM = Path("/work/shared/conformance/upstream")


# -- a small RuntimeAPI ------------------------------------------------------------------------------


class FakeRuntime:
    """Blobs in a dict; nested runs answered by ``handlers[flow name](input) -> FlowResult``."""

    def __init__(self, handlers: Mapping[str, Callable[[Any], FlowResult]] | None = None) -> None:
        self.blobs: dict[str, tuple[Any, str]] = {}
        self.handlers = dict(handlers or {})
        self.submitted: list[dict[str, Any]] = []
        self.puts: list[tuple[Any, str]] = []

    async def put_blob(self, data: Any, blob_type: str = "data") -> str:
        self.puts.append((data, blob_type))
        if blob_type == "flow" and not (isinstance(data, dict) and isinstance(data.get("steps", []), list)):
            raise GatewayError("flow: 'steps' must be a list", code=400)
        blob_id = hashlib.sha256(dumps_compact(data).encode()).hexdigest()
        self.blobs[blob_id] = (data, blob_type)
        return blob_id

    async def get_blob(self, blob_id: str) -> tuple[Any, str]:
        try:
            return self.blobs[blob_id]
        except KeyError:
            raise GatewayError(f"blob {blob_id} not found", code=404) from None

    async def submit_run(
        self,
        flow_id: str,
        inputs: list[Any],
        *,
        wait: bool = True,
        max_concurrency: int | None = None,
        overrides: Mapping[str, Any] | None = None,
        parent: ExecutionContext | None = None,
    ) -> RunInfo:
        self.submitted.append(
            {
                "flow_id": flow_id,
                "inputs": list(inputs),
                "wait": wait,
                "max_concurrency": max_concurrency,
                "overrides": overrides,
                "parent": parent,
            }
        )
        flow, blob_type = self.blobs[flow_id]
        assert blob_type == "flow"
        handler = self.handlers[flow["name"]]
        results: list[FlowResult | None] = [handler(i) for i in inputs]
        return RunInfo(
            run_id=f"nested-{len(self.submitted)}", flow_id=flow_id, status="completed", results=results
        )

    async def get_run(self, run_id: str, *, wait: bool = False, timeout: float | None = None) -> RunInfo:  # noqa: ASYNC109 - the RuntimeAPI signature
        raise NotImplementedError

    async def flow_metadata(self, flow_id: str, step_id: str | None = None) -> dict[str, Any]:
        raise NotImplementedError


def make_ctx(runtime: FakeRuntime) -> ExecutionContext:
    return ExecutionContext(runtime=runtime, run_id="run-parent", flow_id="f" * 64, step_id="s1")


async def started(runtime: FakeRuntime, working_directory: Path = Path(".")) -> BuiltinPlugin:
    plugin = BuiltinPlugin("builtin", BuiltinPluginConfig())
    await plugin.start(PluginContext("builtin", working_directory, runtime, dict(os.environ)))
    return plugin


async def component_error(
    plugin: BuiltinPlugin, component: str, input: Any, ctx: ExecutionContext
) -> ComponentError:
    with anyio.fail_after(10):
        with pytest.raises(ComponentError) as info:
            await plugin.execute(component, input, ctx)
    return info.value


def flow(name: str) -> dict[str, Any]:
    return {
        "schema": "https://stepflow.org/schemas/v1/flow.json",
        "name": name,
        "steps": [],
        "output": {"$input": "$"},
    }


# -- component info ----------------------------------------------------------------------------------


async def test_list_components_has_ten_with_valid_2020_12_schemas() -> None:
    plugin = await started(FakeRuntime())
    infos = await plugin.list_components()
    assert [i.name for i in infos] == [
        "/put_blob",
        "/get_blob",
        "/eval",
        "/map",
        "/iterate",
        "/load_file",
        "/create_messages",
        "/openai",
        "/noop",
        "/sleep",
    ]
    for info in infos:
        assert info.description
        for schema in (info.input_schema, info.output_schema):
            assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
            jsonschema.Draft202012Validator.check_schema(schema)
    by_name = {i.name: i for i in infos}
    # The schemas accept the documented example shapes.
    jsonschema.validate(
        {"user_prompt": "Hi", "system_instructions": None}, by_name["/create_messages"].input_schema
    )
    jsonschema.validate(
        {"messages": [{"role": "user", "content": "Hi"}]}, by_name["/create_messages"].output_schema
    )
    jsonschema.validate(
        {"results": [{"outcome": "success", "result": 1}], "successful": 1, "failed": 0},
        by_name["/map"].output_schema,
    )
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"blob_id": "XYZ"}, by_name["/get_blob"].input_schema)
    # Each listing is fresh: mutating one does not leak into the next.
    infos[0].input_schema["properties"].clear()
    assert (await plugin.list_components())[0].input_schema["properties"]


# -- create_messages ---------------------------------------------------------------------------------


async def test_create_messages_inline_fast_path() -> None:
    plugin = await started(FakeRuntime())
    ctx = make_ctx(FakeRuntime())
    result = plugin.execute_inline(
        "/create_messages", {"user_prompt": "Hi", "system_instructions": "Be brief."}, ctx
    )
    assert result == FlowResult.success(
        {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}
    )
    assert dumps_compact(result.result) == (
        '{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Hi"}]}'
    )
    only_user = plugin.execute_inline(
        "/create_messages", {"user_prompt": "Hi", "system_instructions": None, "x": 1}, ctx
    )
    assert only_user == FlowResult.success({"messages": [{"role": "user", "content": "Hi"}]})
    # The async path gives the same answer; other components fall back to execute.
    assert await plugin.execute("/create_messages", {"user_prompt": "Hi"}, ctx) == only_user
    others = ("/put_blob", "/eval", "/map", "/iterate", "/get_blob", "/load_file", "/openai", "/sleep", "/x")
    for other in others:
        assert plugin.execute_inline(other, {}, ctx) is None


@pytest.mark.parametrize(
    ("input", "detail"),
    [
        ({}, "missing field `user_prompt`"),
        ({"user_prompt": 5}, "invalid type: integer `5`, expected a string"),
        ({"user_prompt": None}, "invalid type: null, expected a string"),
        (
            {"user_prompt": "x", "system_instructions": True},
            "invalid type: boolean `true`, expected a string",
        ),
        (
            {"user_prompt": "x", "system_instructions": 1.5},
            "invalid type: floating point `1.5`, expected a string",
        ),
        ("hello", 'invalid type: string "hello", expected an object'),
        ([1], "invalid type: sequence, expected an object"),
    ],
)
async def test_create_messages_invalid_input_stack(input: Any, detail: str) -> None:
    plugin = await started(FakeRuntime())
    with pytest.raises(ComponentError) as info:
        plugin.execute_inline("/create_messages", input, make_ctx(FakeRuntime()))
    assert info.value.stack == [UDF, INVALID, {"error": detail}]
    assert info.value.attachments == []


# -- put_blob / get_blob -----------------------------------------------------------------------------


async def test_put_and_get_blob_roundtrip() -> None:
    runtime = FakeRuntime()
    plugin = await started(runtime)
    ctx = make_ctx(runtime)
    data = {"message": "Hello, blobs!", "number": 42, "nested": {"array": [1, 2, 3], "boolean": True}}
    with anyio.fail_after(10):
        put = await plugin.execute("/put_blob", {"data": data, "blob_type": "data"}, ctx)
        # builtins.md §2 test vector (the runtime hashes; the builtin passes the data as given).
        assert put == FlowResult.success(
            {"blob_id": "868591347a854ba1d0f4875b2dd44e1e8335052af03725a9819f89e0142318b0"}
        )
        assert runtime.puts == [(data, "data")]
        got = await plugin.execute("/get_blob", {"blob_id": put.result["blob_id"]}, ctx)
    assert got == FlowResult.success({"data": data})


async def test_put_blob_input_errors() -> None:
    runtime = FakeRuntime()
    plugin = await started(runtime)
    ctx = make_ctx(runtime)
    err = await component_error(plugin, "/put_blob", {"blob_type": "data"}, ctx)
    assert err.stack == [UDF, INVALID, {"error": "missing field `data`"}]
    err = await component_error(plugin, "/put_blob", {"data": 1}, ctx)
    assert err.stack == [UDF, INVALID, {"error": "missing field `blob_type`"}]
    err = await component_error(plugin, "/put_blob", {"data": 1, "blob_type": "text"}, ctx)
    assert err.stack == [UDF, INVALID, {"error": "unknown variant `text`, expected `data` or `flow`"}]
    # A flow blob that the runtime rejects as a flow is a component error.
    err = await component_error(plugin, "/put_blob", {"data": {"steps": 3}, "blob_type": "flow"}, ctx)
    assert err.stack[:2] == [UDF, INVALID]
    assert "steps" in err.stack[2]["error"]
    assert runtime.blobs == {}


async def test_put_blob_null_data_is_stored() -> None:
    runtime = FakeRuntime()
    plugin = await started(runtime)
    with anyio.fail_after(10):
        put = await plugin.execute("/put_blob", {"data": None, "blob_type": "data"}, make_ctx(runtime))
    assert put.result["blob_id"] == hashlib.sha256(b"null").hexdigest()


async def test_get_blob_invalid_or_unknown_id() -> None:
    runtime = FakeRuntime()
    plugin = await started(runtime)
    ctx = make_ctx(runtime)
    for bad in ("invalid_blob_id", "A" * 64, "sha256:" + "a" * 64, "a" * 63):
        err = await component_error(plugin, "/get_blob", {"blob_id": bad}, ctx)
        assert err.stack[:2] == [UDF, INVALID]
        assert "64 lowercase hex" in err.stack[2]["error"]
    err = await component_error(plugin, "/get_blob", {"blob_id": 7}, ctx)
    assert err.stack == [UDF, INVALID, {"error": "invalid type: integer `7`, expected a string"}]
    err = await component_error(plugin, "/get_blob", {"blob_id": "0" * 64}, ctx)
    assert err.stack[:2] == [UDF, {"error": "internal error"}]
    assert "not found" in err.stack[2]["error"]


# -- eval --------------------------------------------------------------------------------------------


async def test_eval_runs_stored_flow_and_reports_calling_run_id() -> None:
    runtime = FakeRuntime({"double": lambda i: FlowResult.success({"doubled": i["x"] * 2})})
    plugin = await started(runtime)
    ctx = make_ctx(runtime)
    with anyio.fail_after(10):
        stored = await plugin.execute("/put_blob", {"data": flow("double"), "blob_type": "flow"}, ctx)
        flow_id = stored.result["blob_id"]
        out = await plugin.execute("/eval", {"flow_id": flow_id, "input": {"x": 2}}, ctx)
    assert out == FlowResult.success(
        {"result": {"outcome": "success", "result": {"doubled": 4}}, "run_id": "run-parent"}
    )
    [sub] = runtime.submitted
    assert sub["flow_id"] == flow_id
    assert sub["inputs"] == [{"x": 2}]
    assert sub["wait"] is True
    assert sub["parent"] is ctx
    assert sub["max_concurrency"] is None
    assert sub["overrides"] is None


async def test_eval_nested_failure_is_inside_result() -> None:
    failure = FlowResult.failed(500, 'step "inner" failed', {"stack": [{"error": "x"}]})
    runtime = FakeRuntime({"boom": lambda i: failure})
    plugin = await started(runtime)
    ctx = make_ctx(runtime)
    with anyio.fail_after(10):
        flow_id = (
            await plugin.execute("/put_blob", {"data": flow("boom"), "blob_type": "flow"}, ctx)
        ).result["blob_id"]
        out = await plugin.execute("/eval", {"flow_id": flow_id, "input": None}, ctx)
    assert out.is_success
    assert out.result["result"] == failure.to_json()


async def test_eval_rejects_unknown_and_data_blobs() -> None:
    runtime = FakeRuntime()
    plugin = await started(runtime)
    ctx = make_ctx(runtime)
    err = await component_error(plugin, "/eval", {"flow_id": "1" * 64, "input": {}}, ctx)
    assert err.stack[:2] == [UDF, {"error": "internal error"}]
    with anyio.fail_after(10):
        data_id = (await plugin.execute("/put_blob", {"data": {"a": 1}, "blob_type": "data"}, ctx)).result[
            "blob_id"
        ]
    err = await component_error(plugin, "/eval", {"flow_id": data_id, "input": {}}, ctx)
    assert err.stack[:2] == [UDF, INVALID]
    assert "not a flow" in err.stack[2]["error"]
    # Only flow_id is accepted (docs mentioning an inline ``workflow`` are wrong).
    err = await component_error(plugin, "/eval", {"workflow": flow("x"), "input": {}}, ctx)
    assert err.stack == [UDF, INVALID, {"error": "missing field `flow_id`"}]
    err = await component_error(plugin, "/eval", {"flow_id": data_id}, ctx)
    assert err.stack == [UDF, INVALID, {"error": "missing field `input`"}]
    assert runtime.submitted == []


# -- map ---------------------------------------------------------------------------------------------


def _messages_handler(i: Any) -> FlowResult:
    return FlowResult.success({"messages": [{"role": "user", "content": i}]})


async def test_map_one_batch_run_results_in_order() -> None:
    runtime = FakeRuntime({"create-message": _messages_handler})
    plugin = await started(runtime)
    ctx = make_ctx(runtime)
    workflow = flow("create-message")
    with anyio.fail_after(10):
        out = await plugin.execute(
            "/map", {"workflow": workflow, "items": ["Hello", "World", "Test"], "max_concurrency": 2}, ctx
        )
    assert out == FlowResult.success(
        {
            "results": [
                {"outcome": "success", "result": {"messages": [{"role": "user", "content": w}]}}
                for w in ("Hello", "World", "Test")
            ],
            "successful": 3,
            "failed": 0,
        }
    )
    assert runtime.puts == [(workflow, "flow")]
    [sub] = runtime.submitted
    assert sub["inputs"] == ["Hello", "World", "Test"]
    assert sub["max_concurrency"] == 2
    assert sub["parent"] is ctx
    assert sub["flow_id"] in runtime.blobs


async def test_map_counts_failures_and_skips_default_concurrency() -> None:
    def handler(i: Any) -> FlowResult:
        if i == "bad":
            return FlowResult.failed(8, "error")
        if i == "skip":
            return FlowResult.skipped("nothing to do")
        return FlowResult.success(i)

    runtime = FakeRuntime({"mixed": handler})
    plugin = await started(runtime)
    ctx = make_ctx(runtime)
    with anyio.fail_after(10):
        out = await plugin.execute(
            "/map", {"workflow": flow("mixed"), "items": ["a", "bad", "skip", "b"]}, ctx
        )
        no_skip = await plugin.execute("/map", {"workflow": flow("mixed"), "items": ["bad", "a"]}, ctx)
    assert out.result["successful"] == 2
    assert out.result["failed"] == 1
    assert out.result["skipped"] == 1
    assert out.result["results"][1] == {"outcome": "failed", "error": {"code": 8, "message": "error"}}
    assert out.result["results"][2] == {"outcome": "skipped", "reason": "nothing to do"}
    assert list(no_skip.result) == ["results", "successful", "failed"]  # no ``skipped`` key
    assert runtime.submitted[0]["max_concurrency"] == 4  # defaults to the number of items
    assert runtime.submitted[1]["max_concurrency"] == 2


async def test_map_empty_items_starts_no_run() -> None:
    runtime = FakeRuntime()
    plugin = await started(runtime)
    with anyio.fail_after(10):
        out = await plugin.execute("/map", {"workflow": flow("unused"), "items": []}, make_ctx(runtime))
    assert out == FlowResult.success({"results": [], "successful": 0, "failed": 0})
    assert runtime.submitted == []


async def test_map_input_errors() -> None:
    runtime = FakeRuntime()
    plugin = await started(runtime)
    ctx = make_ctx(runtime)
    err = await component_error(plugin, "/map", {"workflow": {"steps": "nope"}, "items": [1]}, ctx)
    assert err.stack[:2] == [UDF, INVALID]
    assert err.stack[2]["error"].startswith("invalid flow: ")
    err = await component_error(plugin, "/map", {"workflow": flow("x"), "items": {"a": 1}}, ctx)
    assert err.stack == [UDF, INVALID, {"error": "invalid type: map, expected a sequence"}]
    err = await component_error(plugin, "/map", {"workflow": "x", "items": []}, ctx)
    assert err.stack == [UDF, INVALID, {"error": 'invalid type: string "x", expected a flow object'}]
    err = await component_error(
        plugin, "/map", {"workflow": flow("x"), "items": [], "max_concurrency": 1.5}, ctx
    )
    assert err.stack == [UDF, INVALID, {"error": "invalid type: floating point `1.5`, expected an integer"}]
    assert runtime.submitted == []


# -- iterate -----------------------------------------------------------------------------------------


def _counter(i: Any) -> FlowResult:
    if i["current"] >= i["target"]:
        return FlowResult.success({"result": f"Reached target {i['target']}"})
    return FlowResult.success({"next": {"current": i["current"] + 1, "target": i["target"]}})


async def test_iterate_loops_until_result() -> None:
    runtime = FakeRuntime({"counter": _counter})
    plugin = await started(runtime)
    ctx = make_ctx(runtime)
    with anyio.fail_after(10):
        out = await plugin.execute(
            "/iterate", {"flow": flow("counter"), "initial_input": {"current": 0, "target": 5}}, ctx
        )
    assert out == FlowResult.success({"result": "Reached target 5", "iterations": 6, "terminated": False})
    assert [s["inputs"] for s in runtime.submitted] == [[{"current": n, "target": 5}] for n in range(6)]
    assert all(s["parent"] is ctx and s["max_concurrency"] is None for s in runtime.submitted)
    assert len(runtime.puts) == 1  # the flow is stored once, not per iteration


async def test_iterate_max_iterations_terminates_with_current_input() -> None:
    runtime = FakeRuntime({"forever": lambda i: FlowResult.success({"next": i + 1})})
    plugin = await started(runtime)
    ctx = make_ctx(runtime)
    with anyio.fail_after(10):
        out = await plugin.execute(
            "/iterate", {"flow": flow("forever"), "initial_input": 0, "max_iterations": 3}, ctx
        )
        zero = await plugin.execute(
            "/iterate", {"flow": flow("forever"), "initial_input": 9, "max_iterations": 0}, ctx
        )
    assert out == FlowResult.success({"result": 3, "iterations": 3, "terminated": True})
    assert zero == FlowResult.success({"result": 9, "iterations": 0, "terminated": True})
    assert len(runtime.submitted) == 3


async def test_iterate_result_wins_over_next_and_failures_propagate() -> None:
    failure = FlowResult.failed(8, "inner failure")
    runtime = FakeRuntime(
        {
            "both": lambda i: FlowResult.success({"next": 1, "result": "done"}),
            "fails": lambda i: failure,
            "neither": lambda i: FlowResult.success({"other": 1}),
            "scalar": lambda i: FlowResult.success(5),
            "skips": lambda i: FlowResult.skipped(),
        }
    )
    plugin = await started(runtime)
    ctx = make_ctx(runtime)

    async def run(name: str) -> FlowResult:
        with anyio.fail_after(10):
            return await plugin.execute("/iterate", {"flow": flow(name), "initial_input": {}}, ctx)

    assert await run("both") == FlowResult.success({"result": "done", "iterations": 1, "terminated": False})
    assert await run("fails") == failure
    bad = FlowResult.failed(400, "Workflow result must contain either 'result' or 'next' field")
    assert await run("neither") == bad
    assert await run("scalar") == bad
    assert await run("skips") == FlowResult.failed(400, "Workflow cannot be skipped during iteration")


async def test_iterate_input_errors() -> None:
    runtime = FakeRuntime()
    plugin = await started(runtime)
    ctx = make_ctx(runtime)
    err = await component_error(plugin, "/iterate", {"flow": flow("x")}, ctx)
    assert err.stack == [UDF, INVALID, {"error": "missing field `initial_input`"}]
    err = await component_error(plugin, "/iterate", {"flow_id": "a" * 64, "initial_input": 1}, ctx)
    assert err.stack == [UDF, INVALID, {"error": "missing field `flow`"}]
    err = await component_error(
        plugin, "/iterate", {"flow": flow("x"), "initial_input": 1, "max_iterations": -1}, ctx
    )
    assert err.stack == [UDF, INVALID, {"error": "invalid value: integer `-1`, expected an integer >= 0"}]


# -- load_file ---------------------------------------------------------------------------------------


async def test_load_file_upstream_json_relative_to_working_directory() -> None:
    workdir = UPSTREAM / "examples" / "file-loading"
    plugin = await started(FakeRuntime(), workdir)
    with anyio.fail_after(10):
        out = await plugin.execute("/load_file", {"path": "test-data.json"}, make_ctx(FakeRuntime()))
    assert out == FlowResult.success(
        {
            "data": {"test": "data", "value": 42},
            "metadata": {"resolved_path": f"{workdir}/test-data.json", "size_bytes": 29, "format": "json"},
        }
    )


async def test_load_file_formats(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("a: yes\nb: 1.0\nc: 2024-01-01\nd: [1, 2]\n", encoding="utf-8")
    (tmp_path / "b.yml").write_text("- x\n", encoding="utf-8")
    (tmp_path / "c.txt").write_text("héllo\n", encoding="utf-8")
    (tmp_path / "d.JSON").write_text('{"x": 1}', encoding="utf-8")
    (tmp_path / "e.data").write_text('{"x": 1.0}', encoding="utf-8")
    sub = tmp_path / "sub"
    sub.mkdir()
    plugin = await started(FakeRuntime(), sub)
    ctx = make_ctx(FakeRuntime())

    async def load(input: Any) -> Any:
        with anyio.fail_after(10):
            result = await plugin.execute("/load_file", input, ctx)
        assert result.is_success
        return result.result

    a = await load({"path": "../a.yaml"})
    # YAML follows the gateway's serde rules: ``yes`` and dates stay strings, ``1.0`` stays a float.
    assert dumps_compact(a["data"]) == '{"a":"yes","b":1.0,"c":"2024-01-01","d":[1,2]}'
    assert a["metadata"] == {"resolved_path": f"{sub}/../a.yaml", "size_bytes": 38, "format": "yaml"}
    assert (await load({"path": "../b.yml"}))["data"] == ["x"]
    c = await load({"path": str(tmp_path / "c.txt")})  # absolute paths are used as they are
    assert c["data"] == "héllo\n"
    assert c["metadata"] == {"resolved_path": str(tmp_path / "c.txt"), "size_bytes": 7, "format": "text"}
    assert (await load({"path": "../d.JSON"}))["data"] == '{"x": 1}'  # extensions are case-sensitive
    e = await load({"path": "../e.data", "format": "json"})
    assert e["metadata"]["format"] == "json"
    assert dumps_compact(e["data"]) == '{"x":1.0}'
    assert (await load({"path": "../e.data", "format": None}))["metadata"]["format"] == "text"


def test_detect_format() -> None:
    assert detect_format("x/y.json") == "json"
    assert detect_format("y.yml") == "yaml"
    assert detect_format("y.yaml") == "yaml"
    assert detect_format("y.YAML") == "text"
    assert detect_format(".json") == "text"
    assert detect_format("noext") == "text"


async def test_load_file_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "nan.json").write_text("[NaN]", encoding="utf-8")
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n", encoding="utf-8")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00")
    plugin = await started(FakeRuntime(), tmp_path)
    ctx = make_ctx(FakeRuntime())

    async def detail(input: Any) -> str:
        err = await component_error(plugin, "/load_file", input, ctx)
        assert err.stack[:2] == [UDF, INVALID]
        assert len(err.stack) == 3
        return err.stack[2]["error"]

    assert await detail({"path": "missing.json"}) == f"file not found: {tmp_path}/missing.json"
    assert (await detail({"path": "bad.json"})).startswith(f"cannot parse {tmp_path}/bad.json as json: ")
    assert "NaN" in await detail({"path": "nan.json"})
    assert "line" in await detail({"path": "bad.yaml"})
    assert "UTF-8" in await detail({"path": "bin.txt"})
    assert "cannot read" in await detail({"path": "."})
    assert (
        await detail({"path": "x", "format": "csv"})
        == "unknown variant `csv`, expected one of `json`, `yaml`, `text`"
    )
    assert await detail({}) == "missing field `path`"


# -- noop / sleep ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [{"key": "value", "num": 42}, None, [1, 2.0, "x"], 15.0, True, "s"])
async def test_noop_returns_its_input_inline_and_async(value: Any) -> None:
    plugin = await started(FakeRuntime())
    ctx = make_ctx(FakeRuntime())
    inline = plugin.execute_inline("/noop", value, ctx)
    assert inline == FlowResult.success(value)
    assert dumps_compact(inline.result) == dumps_compact(value)  # number kinds kept
    with anyio.fail_after(10):
        assert await plugin.execute("/noop", value, ctx) == inline


async def test_sleep_returns_duration_and_passthrough() -> None:
    plugin = await started(FakeRuntime())
    ctx = make_ctx(FakeRuntime())
    assert plugin.execute_inline("/sleep", {"duration_ms": 1}, ctx) is None  # never inline: it waits
    with anyio.fail_after(10):
        got = await plugin.execute("/sleep", {"duration_ms": 10, "passthrough": {"data": "hello"}}, ctx)
        assert got == FlowResult.success({"duration_ms": 10, "passthrough": {"data": "hello"}})
        # no passthrough, a null one, and extra keys: only duration_ms comes back
        plain = ({"duration_ms": 0}, {"duration_ms": 0, "passthrough": None}, {"duration_ms": 0, "x": 1})
        for input in plain:
            assert await plugin.execute("/sleep", input, ctx) == FlowResult.success({"duration_ms": 0})
        # falsy passthrough values other than null are passed through
        for value in (0, False, "", [], {}):
            got = await plugin.execute("/sleep", {"duration_ms": 0, "passthrough": value}, ctx)
            assert got.result == {"duration_ms": 0, "passthrough": value}
    info = {i.name: i for i in await plugin.list_components()}["/sleep"]
    jsonschema.validate({"duration_ms": 10, "passthrough": [1]}, info.input_schema)
    jsonschema.validate(got.result, info.output_schema)
    for bad in ({}, {"duration_ms": -1}, {"duration_ms": 1.5}, {"duration_ms": "10"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, info.input_schema)


async def test_sleep_waits_about_its_duration() -> None:
    plugin = await started(FakeRuntime())
    with anyio.fail_after(10):
        start = anyio.current_time()
        await plugin.execute("/sleep", {"duration_ms": 50}, make_ctx(FakeRuntime()))
        assert anyio.current_time() - start >= 0.045


async def test_sleep_is_cancellable() -> None:
    plugin = await started(FakeRuntime())
    finished: list[FlowResult] = []

    async def nap() -> None:
        finished.append(await plugin.execute("/sleep", {"duration_ms": 600_000}, make_ctx(FakeRuntime())))

    with anyio.fail_after(10):  # ten minutes of sleep, cancelled long before the bound
        async with anyio.create_task_group() as tg:
            tg.start_soon(nap)
            await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
    assert finished == []


@pytest.mark.parametrize(
    ("input", "detail"),
    [
        ({}, "missing field `duration_ms`"),
        ({"passthrough": 1}, "missing field `duration_ms`"),
        ({"duration_ms": None}, "invalid type: null, expected u64"),
        ({"duration_ms": 10.0}, "invalid type: floating point `10.0`, expected u64"),
        ({"duration_ms": "10"}, 'invalid type: string "10", expected u64'),
        ({"duration_ms": True}, "invalid type: boolean `true`, expected u64"),
        ({"duration_ms": -1}, "invalid value: integer `-1`, expected u64"),
        ({"duration_ms": 2**64}, f"invalid value: integer `{2**64}`, expected u64"),
        (10, "invalid type: integer `10`, expected an object"),
        (None, "invalid type: null, expected an object"),
    ],
)
async def test_sleep_invalid_input_stack(input: Any, detail: str) -> None:
    plugin = await started(FakeRuntime())
    err = await component_error(plugin, "/sleep", input, make_ctx(FakeRuntime()))
    assert err.stack == [UDF, INVALID, {"error": detail}]


# -- plumbing ----------------------------------------------------------------------------------------


async def test_unknown_component_and_close() -> None:
    runtime = FakeRuntime()
    plugin = await started(runtime)
    with pytest.raises(UnknownComponentError) as info:
        with anyio.fail_after(10):
            await plugin.execute("/nope", {}, make_ctx(runtime))
    assert "/nope" in str(info.value)
    assert BuiltinPlugin.config_model is BuiltinPluginConfig
    await plugin.close()
    await plugin.close()  # idempotent


async def test_openai_missing_key_and_bad_roles(monkeypatch: pytest.MonkeyPatch) -> None:
    # No HTTP happens on these paths; tests/integration/test_openai_builtin.py covers the calls.
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9")  # would refuse, never reached
    plugin = await started(FakeRuntime())
    ctx = make_ctx(FakeRuntime())
    msgs = [{"role": "user", "content": "hi"}]
    err = await component_error(plugin, "/openai", {"messages": msgs}, ctx)
    assert err.stack == [
        UDF,
        {"error": 'missing value ("api_key") or environment variable ("OPENAI_API_KEY")'},
    ]
    err = await component_error(
        plugin, "/openai", {"messages": [{"role": "tool", "content": "x"}], "api_key": "k"}, ctx
    )
    assert err.stack == [
        UDF,
        INVALID,
        {"error": "unknown variant `tool`, expected one of `system`, `user`, `assistant`"},
    ]
    err = await component_error(plugin, "/openai", {"messages": [{"role": "user"}], "api_key": "k"}, ctx)
    assert err.stack == [UDF, INVALID, {"error": "missing field `content`"}]
    err = await component_error(
        plugin, "/openai", {"messages": msgs, "temperature": "hot", "api_key": "k"}, ctx
    )
    assert err.stack == [UDF, INVALID, {"error": 'invalid type: string "hot", expected a number'}]
    await plugin.close()
