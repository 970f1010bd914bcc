"""A scripted MCP stdio server without the SDK: every ``tools/call`` answer is canned bytes.

Run as ``python raw_server.py LOG``. It speaks the handshake era (``initialize``), lists the tools
of ``RESULTS`` (plus ``slow``, which never answers, and ``progress``, which reports progress
twice before answering), and appends every notification it receives to ``LOG`` as a JSON line, so
tests can see the ``notifications/cancelled`` the client sent. Results include shapes the real
servers never send (malformed, extra keys, huge numbers) to compare the plugin's two call paths.
"""

from __future__ import annotations

import json
import sys
from typing import Any

OUTPUT_SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
TEXT = [{"type": "text", "text": "hi"}]

RESULTS: dict[str, dict[str, Any]] = {
    "plain": {"result": {"content": TEXT}},
    "plain_reordered": {"result": {"content": [{"text": "hi", "type": "text"}], "isError": False}},
    "empty": {"result": {"content": []}},
    "two_blocks": {"result": {"content": [*TEXT, {"type": "text", "text": "there"}]}},
    "json_text": {"result": {"content": [{"type": "text", "text": '{"a": 2}'}]}},
    "structured": {"result": {"content": TEXT, "structuredContent": {"a": 1, "b": [1, 2]}}},
    "structured_null": {"result": {"content": TEXT, "structuredContent": None}},
    "big_number": {"result": {"content": [], "structuredContent": {"n": 123456789012345678901234567890}}},
    "error_result": {"result": {"content": [{"type": "text", "text": "bad"}], "isError": True}},
    "annotated": {"result": {"content": [{"type": "text", "text": "x", "annotations": {"priority": 1}}]}},
    "image": {"result": {"content": [{"type": "image", "data": "aGk=", "mimeType": "image/png"}]}},
    "extra_keys": {"result": {"content": TEXT, "foo": 1, "_meta": {"k": 1}}},
    "later_revision": {"result": {"content": TEXT, "resultType": "complete", "ttlMs": -5}},
    "malformed_content": {"result": {"content": "nope"}},
    "no_content": {"result": {}},
    "is_error_string": {"result": {"content": [], "isError": "yes"}},
    "text_not_string": {"result": {"content": [{"type": "text", "text": 5}]}},
    "rpc_error": {"error": {"code": -32050, "message": "boom", "data": {"x": 1}}},
    "rpc_error_plain": {"error": {"code": -32602, "message": "Unknown tool"}},
    "schema_ok": {"result": {"content": [], "structuredContent": {"n": 1}}},
    "schema_bad": {"result": {"content": [], "structuredContent": {"n": "x"}}},
    "schema_missing": {"result": {"content": TEXT}},
    "schema_error_result": {"result": {"content": TEXT, "isError": True}},
}
WITH_SCHEMA = {"schema_ok", "schema_bad", "schema_missing", "schema_error_result"}


def tools() -> list[dict[str, Any]]:
    names = [*RESULTS, "slow", "progress"]
    out = []
    for name in names:
        tool: dict[str, Any] = {"name": name, "inputSchema": {"type": "object"}}
        if name in WITH_SCHEMA:
            tool["outputSchema"] = OUTPUT_SCHEMA
        out.append(tool)
    return out


def send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", **message}) + "\n")
    sys.stdout.flush()


def main(log_path: str) -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        msg = json.loads(line)
        method = msg.get("method")
        if "id" not in msg:
            with open(log_path, "a") as log:
                log.write(json.dumps(msg) + "\n")
            continue
        rid = msg["id"]
        if method == "initialize":
            send(
                {
                    "id": rid,
                    "result": {
                        "protocolVersion": "2025-11-25",
                        "capabilities": {"tools": {}},
                        "serverInfo": {"name": "raw", "version": "0"},
                    },
                }
            )
        elif method == "tools/list":
            send({"id": rid, "result": {"tools": tools()}})
        elif method == "tools/call":
            name = msg["params"]["name"]
            if name == "slow":
                continue  # never answered: the client times out or cancels
            if name == "progress":
                token = msg["params"].get("_meta", {}).get("progressToken")
                for step in (1, 2):
                    send(
                        {
                            "method": "notifications/progress",
                            "params": {"progressToken": token, "progress": step, "total": 2, "message": "m"},
                        }
                    )
                send({"id": rid, "result": {"content": TEXT}})
                continue
            send({"id": rid, **RESULTS.get(name, {"error": {"code": -32602, "message": f"no tool {name}"}})})
        elif method == "ping":
            send({"id": rid, "result": {}})
        else:
            send({"id": rid, "error": {"code": -32601, "message": f"Method not found: {method}"}})


if __name__ == "__main__":
    main(sys.argv[1])
