"""``tools/call`` carries ``_meta["io.stepflow/idempotency-key"]`` = ``{runId}/{item}/{stepId}``.

The server is ``fixture_server.py`` (the SDK's ``MCPServer`` as a real stdio subprocess); its
``meta`` tool answers with the request's ``_meta`` as the server parsed it. Three call paths: the
SDK on a 2026-07-28 connection, and on a handshake-era connection both the direct path
(``_direct.py``) and the SDK path. The key must be there, be the same for every attempt of a step
execution, and leave the progress token in place.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp_support import HostRuntime, fixture_config, running_plugin

from stepflow_gateway.plugins.base import ExecutionContext
from stepflow_gateway.plugins.mcp import McpPlugin
from stepflow_gateway.plugins.mcp.plugin import IDEMPOTENCY_META_KEY

pytestmark = pytest.mark.anyio

PATHS = {
    # path name -> (connection mode, direct path expected)
    "modern-sdk": ("auto", False),
    "legacy-direct": ("legacy", True),
    "legacy-sdk": ("legacy", False),
}


def ctx(run_id: str, item: int, step: str, attempt: int = 1) -> ExecutionContext:
    return ExecutionContext(
        runtime=HostRuntime(), run_id=run_id, flow_id="f" * 64, step_id=step, item_index=item, attempt=attempt
    )


async def received_meta(plugin: McpPlugin, context: ExecutionContext) -> dict[str, Any]:
    with anyio.fail_after(20):
        result = await plugin.execute("/meta", {}, context)
    assert result.is_success, result.to_json()
    value = result.result
    if isinstance(value, list):  # one text block holding the JSON object
        value = json.loads(value[0]["text"])
    assert isinstance(value, dict)
    return value


@pytest.mark.parametrize("path", list(PATHS))
async def test_tools_call_carries_a_stable_idempotency_key(tmp_path: Path, path: str) -> None:
    mode, direct = PATHS[path]
    async with running_plugin(fixture_config(mode=mode), tmp_path) as plugin:
        conn = plugin._conn
        assert conn is not None
        assert (conn.direct is not None) == (mode == "legacy")  # direct calls: handshake era only
        if not direct:
            conn.direct = None  # the SDK's request machinery (same connection, same server)
        first = await received_meta(plugin, ctx("run-7", 2, "fetch"))
        retry = await received_meta(plugin, ctx("run-7", 2, "fetch", attempt=2))
        other_item = await received_meta(plugin, ctx("run-7", 3, "fetch"))
        other_step = await received_meta(plugin, ctx("run-7", 2, "store"))
    assert first[IDEMPOTENCY_META_KEY] == "run-7/2/fetch"
    assert retry[IDEMPOTENCY_META_KEY] == first[IDEMPOTENCY_META_KEY]  # a retry is the same call
    assert other_item[IDEMPOTENCY_META_KEY] == "run-7/3/fetch"
    assert other_step[IDEMPOTENCY_META_KEY] == "run-7/2/store"
    # The progress token is kept (the SDK's request id, or our own `sfg-<n>` on the direct path).
    for meta in (first, retry):
        token = meta.get("progress_token", meta.get("progressToken"))
        assert token is not None
        assert str(token).startswith("sfg-") == direct
