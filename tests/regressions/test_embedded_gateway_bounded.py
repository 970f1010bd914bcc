"""A long-lived embedded gateway (run mode) keeps a bounded number of finished runs in memory."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from stepflow_gateway import gateway as gateway_module
from stepflow_gateway.config.load import default_config
from stepflow_gateway.gateway import Gateway

pytestmark = pytest.mark.anyio

FLOW = {
    "name": "n",
    "steps": [{"id": "m", "component": "/builtin/create_messages", "input": {"user_prompt": "x"}}],
    "output": {"$step": "m"},
}


async def test_finished_runs_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gateway_module, "_RECENT_RUNS", 50)
    with anyio.fail_after(60):
        async with Gateway(default_config(tmp_path)) as gw:
            first = await gw.submit(FLOW, [None])
            assert (await gw.get_run(first.run_id)).status == "completed"  # readable right after
            for _ in range(120):
                await gw.run(FLOW, None)
            assert gw.live == {}
            assert len(gw._recent) == 50
            last = await gw.submit(FLOW, [None])
            info = await gw.get_run(last.run_id)
            assert info.status == "completed" and info.results[0].outcome == "success"
