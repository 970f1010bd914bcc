"""``/openai`` against a real loopback OpenAI-compatible server (``http.server`` in a thread).

The fake records every request (path, headers, JSON body) and answers with whatever the test queued,
so the tests assert the exact request the builtin sent and the exact error stacks it produces.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest

from stepflow_gateway.core.result import FlowResult
from stepflow_gateway.errors import ComponentError
from stepflow_gateway.plugins.base import ExecutionContext, PluginContext
from stepflow_gateway.plugins.builtin import BuiltinPlugin

pytestmark = pytest.mark.anyio

UDF = {"error": "error executing user-defined function"}
GENERATING = {"error": "openai error: generating completion"}


class FakeOpenAI:
    """A ``POST /v1/chat/completions`` endpoint on 127.0.0.1 that replays queued responses."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.responses: list[tuple[int, bytes]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                fake.requests.append(
                    {"path": self.path, "headers": dict(self.headers.items()), "body": json.loads(body)}
                )
                status, payload = fake.responses.pop(0) if fake.responses else (200, _completion("ok"))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    def reply(self, status: int, payload: Any) -> None:
        self.responses.append(
            (status, payload if isinstance(payload, bytes) else json.dumps(payload).encode())
        )


def _completion(content: Any) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": "gpt-3.5-turbo",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
            ],
        }
    ).encode()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    server.thread.start()
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
        server.thread.join(timeout=10)


class NoRuntime:
    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"/openai used runtime.{name}")


CTX = ExecutionContext(runtime=NoRuntime(), run_id="r", flow_id="f", step_id="ask")  # type: ignore[arg-type]
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]


@pytest.fixture
async def plugin() -> Any:
    p = BuiltinPlugin("builtin")
    await p.start(PluginContext("builtin", Path("."), NoRuntime(), dict(os.environ)))  # type: ignore[arg-type]
    try:
        yield p
    finally:
        with anyio.fail_after(10):
            await p.close()


async def call(plugin: BuiltinPlugin, input: Any) -> FlowResult:
    with anyio.fail_after(20):
        return await plugin.execute("/openai", input, CTX)


async def fails(plugin: BuiltinPlugin, input: Any) -> ComponentError:
    with pytest.raises(ComponentError) as info:
        await call(plugin, input)
    return info.value


async def test_minimal_request_uses_env_key_and_default_model(
    fake: FakeOpenAI, plugin: BuiltinPlugin
) -> None:
    fake.reply(200, _completion("Hello!"))
    assert await call(plugin, {"messages": MESSAGES, "extra": "ignored"}) == FlowResult.success(
        {"response": "Hello!"}
    )
    [req] = fake.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == "Bearer sk-from-env"
    assert req["headers"]["Content-Type"] == "application/json"
    assert req["body"] == {"model": "gpt-3.5-turbo", "messages": MESSAGES}


async def test_optional_fields_are_sent(
    fake: FakeOpenAI, plugin: BuiltinPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url + "/")  # a trailing slash is tolerated
    messages = [{"role": "user", "content": "a", "name": "dropped"}, {"role": "assistant", "content": "b"}]
    out = await call(
        plugin,
        {
            "messages": messages,
            "max_tokens": 16,
            "temperature": 0.2,
            "api_key": "sk-input",
            "model": "local-llm",
        },
    )
    assert out == FlowResult.success({"response": "ok"})
    [req] = fake.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["headers"]["Authorization"] == "Bearer sk-input"  # the input key wins over the env
    assert list(req["body"]) == ["model", "messages", "max_tokens", "temperature"]
    assert req["body"] == {
        "model": "local-llm",
        "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
        "max_tokens": 16,
        "temperature": 0.2,
    }


async def test_null_content_is_empty_string(fake: FakeOpenAI, plugin: BuiltinPlugin) -> None:
    fake.reply(200, _completion(None))
    assert await call(plugin, {"messages": MESSAGES}) == FlowResult.success({"response": ""})


async def test_no_choices_is_missing_completion(fake: FakeOpenAI, plugin: BuiltinPlugin) -> None:
    fake.reply(200, {"choices": []})
    err = await fails(plugin, {"messages": MESSAGES})
    assert err.stack == [UDF, {"error": "openai error: missing completion"}]


async def test_http_error_and_non_json(fake: FakeOpenAI, plugin: BuiltinPlugin) -> None:
    fake.reply(401, {"error": {"message": "Incorrect API key provided"}})
    err = await fails(plugin, {"messages": MESSAGES})
    assert err.stack[:2] == [UDF, GENERATING]
    assert err.stack[2]["error"].startswith(f"HTTP 401 from {fake.base_url}/chat/completions: ")
    assert "Incorrect API key" in err.stack[2]["error"]
    fake.reply(200, b"<html>not json</html>")
    err = await fails(plugin, {"messages": MESSAGES})
    assert err.stack[:2] == [UDF, GENERATING]
    assert "not JSON" in err.stack[2]["error"]
    assert len(fake.requests) == 2


async def test_network_error(plugin: BuiltinPlugin, monkeypatch: pytest.MonkeyPatch, free_port: Any) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")  # nothing listens there
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    err = await fails(plugin, {"messages": MESSAGES})
    assert err.stack[:2] == [UDF, GENERATING]
    assert "failed" in err.stack[2]["error"]


async def test_env_is_read_at_call_time(
    fake: FakeOpenAI, plugin: BuiltinPlugin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    err = await fails(plugin, {"messages": MESSAGES})
    assert err.stack == [
        UDF,
        {"error": 'missing value ("api_key") or environment variable ("OPENAI_API_KEY")'},
    ]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-later")
    assert (await call(plugin, {"messages": MESSAGES})).is_success
    assert fake.requests[-1]["headers"]["Authorization"] == "Bearer sk-later"
