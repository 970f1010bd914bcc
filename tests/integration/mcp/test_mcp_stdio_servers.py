"""The MCP plugin against real stdio servers: time, everything, filesystem, memory (peers.md §5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp_support import (
    everything_stdio_config,
    exec_ctx,
    filesystem_config,
    memory_config,
    running_plugin,
    time_config,
)

from stepflow_gateway.errors import ComponentError

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_time_convert_time_is_deterministic(tmp_path: Path, mode: str) -> None:
    async with running_plugin(time_config(mode=mode), tmp_path, name="time") as plugin:
        names = [c.name for c in await plugin.list_components()]
        assert names[:2] == ["/get_current_time", "/convert_time"]
        for target, clock, diff in (
            ("Asia/Kathmandu", "17:45", "+5.75h"),
            ("Asia/Kolkata", "17:30", "+5.5h"),
        ):
            result = await plugin.execute(
                "/convert_time",
                {"source_timezone": "UTC", "time": "12:00", "target_timezone": target},
                exec_ctx(),
            )
            assert result.outcome == "success", result
            out = result.result
            assert out["time_difference"] == diff
            assert out["target"]["datetime"][11:16] == clock
            assert out["target"]["is_dst"] is False
            assert out["source"]["timezone"] == "UTC"


async def test_time_errors(tmp_path: Path) -> None:
    async with running_plugin(time_config(), tmp_path, name="time") as plugin:
        bad_zone = await plugin.execute("/get_current_time", {"timezone": "Mars/Olympus"}, exec_ctx())
        assert bad_zone.outcome == "failed"
        assert bad_zone.error is not None and bad_zone.error.code == 500
        assert bad_zone.error.message.startswith(
            "Tool 'get_current_time' returned an error: "
            "Error executing tool get_current_time: Invalid timezone:"
        )
        assert bad_zone.error.data["tool"] == "get_current_time"
        assert bad_zone.error.data["content"][0]["type"] == "text"

        # The time server answers unknown tools with JSON-RPC -32602; the catalogue check makes
        # that a component error before any call (mcp.md §7.2).
        with pytest.raises(ComponentError) as info:
            await plugin.execute("/no_such_tool", {}, exec_ctx())
        assert info.value.stack == [{"error": "unknown component: /no_such_tool"}]

        # upstream's lookup rule: the text after the last '/'
        via_tail = await plugin.execute("/tools/get_current_time", {"timezone": "UTC"}, exec_ctx())
        assert via_tail.outcome == "success" and via_tail.result["timezone"] == "UTC"

        with pytest.raises(ComponentError, match="needs an object as input, got an array"):
            await plugin.execute("/get_current_time", [1], exec_ctx())


async def test_everything_stdio_outputs(tmp_path: Path) -> None:
    async with running_plugin(everything_stdio_config(), tmp_path, name="everything") as plugin:
        components = {c.name: c for c in await plugin.list_components()}
        assert {"/echo", "/get-sum", "/get-structured-content", "/trigger-long-running-operation"} <= set(
            components
        )
        # no client capabilities are declared, so only the 13 base tools are offered (mcp.md §7.14)
        assert len([n for n in components if not n.startswith(("/resources/", "/prompts/"))]) == 13
        echo = components["/echo"]
        assert echo.output_schema == {"type": "array", "items": {"type": "object", "required": ["type"]}}
        assert echo.input_schema["required"] == ["message"]

        echoed = await plugin.execute("/echo", {"message": "hi"}, exec_ctx())
        assert echoed.to_json() == {"outcome": "success", "result": [{"type": "text", "text": "Echo: hi"}]}

        total = await plugin.execute("/get-sum", {"a": 2, "b": 40}, exec_ctx())
        assert total.result == [{"type": "text", "text": "The sum of 2 and 40 is 42."}]

        weather = await plugin.execute("/get-structured-content", {"location": "New York"}, exec_ctx())
        assert weather.result == {"temperature": 33, "conditions": "Cloudy", "humidity": 82}

        bad = await plugin.execute("/get-sum", {"a": "x", "b": 1}, exec_ctx())
        assert bad.outcome == "failed" and bad.error is not None
        assert bad.error.message.startswith(
            "Tool 'get-sum' returned an error: MCP error -32602: Input validation error:"
        )

        image = await plugin.execute("/get-tiny-image", None, exec_ctx())
        kinds = [block["type"] for block in image.result]
        assert "image" in kinds
        block = image.result[kinds.index("image")]
        assert set(block) == {"type", "data", "mimeType"} and block["mimeType"] == "image/png"

        # literal-input checks for `validate`, with JSON paths
        assert plugin.validate_input("/get-sum", {"a": 1, "b": 2}) == []
        assert plugin.validate_input("/get-sum", {"a": "x"}) == [
            "$: 'b' is a required property",
            "$.a: 'x' is not of type 'number'",
        ]
        assert plugin.validate_input("/nope", {}) == ["unknown component: /nope"]


async def test_everything_resources_and_prompts(tmp_path: Path) -> None:
    async with running_plugin(everything_stdio_config(), tmp_path, name="everything") as plugin:
        listed = await plugin.execute("/resources/list", {}, exec_ctx())
        uris = [r["uri"] for r in listed.result["resources"]]
        assert "demo://resource/static/document/architecture.md" in uris
        read = await plugin.execute(
            "/resources/read", {"uri": "demo://resource/static/document/architecture.md"}, exec_ctx()
        )
        assert read.outcome == "success"
        assert read.result["contents"][0]["uri"] == "demo://resource/static/document/architecture.md"
        assert read.result["contents"][0]["text"]

        prompts = await plugin.execute("/prompts/list", None, exec_ctx())
        assert "simple-prompt" in [p["name"] for p in prompts.result["prompts"]]
        prompt = await plugin.execute("/prompts/get", {"name": "simple-prompt"}, exec_ctx())
        assert prompt.result["messages"][0]["role"] == "user"

        missing = await plugin.execute("/resources/read", {"uri": "demo://nope"}, exec_ctx())
        assert missing.outcome == "failed" and missing.error is not None
        assert missing.error.message == "MCP request 'resources/read' failed"
        assert "mcpError" in missing.error.data


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (
            "content",
            [
                {
                    "type": "text",
                    "text": json.dumps({"temperature": 33, "conditions": "Cloudy", "humidity": 82}),
                }
            ],
        ),
        ("structured", {"temperature": 33, "conditions": "Cloudy", "humidity": 82}),
    ],
)
async def test_output_mode_setting(tmp_path: Path, output: str, expected: object) -> None:
    async with running_plugin(everything_stdio_config(output=output), tmp_path, name="everything") as plugin:
        weather = await plugin.execute("/get-structured-content", {"location": "New York"}, exec_ctx())
        if output == "content":
            # upstream's shape: the content array (its text is the server's own JSON rendering)
            assert weather.result[0]["type"] == "text"
            assert json.loads(weather.result[0]["text"]) == json.loads(expected[0]["text"])  # type: ignore[index]
        else:
            assert weather.result == expected
        if output == "structured":
            # a text-only tool: not JSON, so 'structured' cannot produce a value
            with pytest.raises(ComponentError, match="returned no structured content"):
                await plugin.execute("/echo", {"message": "hi"}, exec_ctx())


async def test_child_env_is_minimal_plus_configured(tmp_path: Path) -> None:
    environ = {
        "PATH": __import__("os").environ["PATH"],
        "HOME": "/nonexistent-home",
        "GATEWAY_SECRET": "s3cr3t",
    }
    config = everything_stdio_config(env={"FOO": "bar"})
    async with running_plugin(config, tmp_path, name="everything", environ=environ) as plugin:
        result = await plugin.execute("/get-env", {}, exec_ctx())
        env = json.loads(result.result[0]["text"])
        assert env["FOO"] == "bar"
        assert env["HOME"] == "/nonexistent-home"
        assert "GATEWAY_SECRET" not in env


async def test_filesystem_write_then_read(tmp_path: Path) -> None:
    root = (tmp_path / "sandbox").resolve()
    root.mkdir()
    async with running_plugin(filesystem_config(root), tmp_path, name="fs") as plugin:
        target = str(root / "greeting.txt")
        wrote = await plugin.execute("/write_file", {"path": target, "content": "hello, world"}, exec_ctx())
        assert wrote.result == {"content": f"Successfully wrote to {target}"}
        read = await plugin.execute("/read_text_file", {"path": target}, exec_ctx())
        assert read.result == {"content": "hello, world"}
        outside = await plugin.execute("/read_text_file", {"path": "/etc/hostname"}, exec_ctx())
        assert outside.outcome == "failed" and outside.error is not None
        assert "Access denied - path outside allowed directories" in outside.error.message


async def test_memory_graph_with_own_file(tmp_path: Path) -> None:
    memory_file = tmp_path / "memory.jsonl"
    async with running_plugin(memory_config(memory_file), tmp_path, name="memory") as plugin:
        created = await plugin.execute(
            "/create_entities",
            {
                "entities": [
                    {"name": "anvil", "entityType": "tool", "observations": ["heavy"]},
                    {"name": "hammer", "entityType": "tool", "observations": ["strikes the anvil"]},
                    {"name": "feather", "entityType": "thing", "observations": ["light"]},
                ]
            },
            exec_ctx(),
        )
        assert created.outcome == "success"
        related = await plugin.execute(
            "/create_relations",
            {"relations": [{"from": "hammer", "to": "anvil", "relationType": "hits"}]},
            exec_ctx(),
        )
        assert related.outcome == "success"
        found = await plugin.execute("/search_nodes", {"query": "anvil"}, exec_ctx())
        names = sorted(e["name"] for e in found.result["entities"])
        assert names == ["anvil", "hammer"]  # hammer mentions the anvil in an observation
        assert found.result["relations"] == [{"from": "hammer", "to": "anvil", "relationType": "hits"}]
    assert memory_file.exists() and "anvil" in memory_file.read_text()
