"""Helpers for the stepflow plugin tests: a small dict-backed RuntimeAPI and a plugin starter.

A module of its own (not conftest.py) so that test modules import it by a unique name: two
directories' ``conftest`` modules would otherwise shadow each other in one pytest run.

Everything here is real: plugins spawn real servers (stepflow-py peers or our SDK) over real pipes,
sockets and HTTP on 127.0.0.1. Only the runtime side of callbacks is a small in-test implementation.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio

from stepflow_gateway.core.result import FlowResult
from stepflow_gateway.errors import GatewayError, RunNotFound
from stepflow_gateway.plugins.base import ExecutionContext, PluginContext, RunInfo
from stepflow_gateway.plugins.stepflow import StepflowPlugin

HERE = Path(__file__).resolve().parent
SERVERS = HERE / "servers"
REPO = HERE.parents[2]
PYTHON = sys.executable


class DictRuntime:
    """RuntimeAPI over a dict of blobs. A "flow" blob ``{"op": "double"|"fail"}`` runs in Python."""

    def __init__(self) -> None:
        self.blobs: dict[str, tuple[Any, str]] = {}
        self.runs: dict[str, RunInfo] = {}
        self.parents: dict[str, ExecutionContext | None] = {}
        self.calls: list[str] = []

    async def put_blob(self, data: Any, blob_type: str = "data") -> str:
        self.calls.append("put_blob")
        blob_id = hashlib.sha256(
            json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        ).hexdigest()
        self.blobs[blob_id] = (data, blob_type)
        return blob_id

    async def get_blob(self, blob_id: str) -> tuple[Any, str]:
        self.calls.append("get_blob")
        if blob_id not in self.blobs:
            raise GatewayError(f"blob {blob_id} not found", code=404)
        return self.blobs[blob_id]

    def _run_flow(self, flow: Any, value: Any) -> FlowResult:
        if flow.get("op") == "double":
            return FlowResult.success({"doubled": value["n"] * 2})
        return FlowResult.failed(7, "flow failed on purpose")

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
        self.calls.append("submit_run")
        blob = self.blobs.get(flow_id)
        if blob is None:
            raise GatewayError(f"flow {flow_id} not found", code=404)
        run_id = str(uuid.uuid4())
        info = RunInfo(
            run_id,
            flow_id,
            "completed",
            [self._run_flow(blob[0], v) for v in inputs],
            created_at="2026-01-10T12:00:00.000000Z",
            completed_at="2026-01-10T12:00:00.010000Z",
        )
        self.runs[run_id] = info
        self.parents[run_id] = parent
        return info

    async def get_run(self, run_id: str, *, wait: bool = False, timeout: float | None = None) -> RunInfo:  # noqa: ASYNC109
        self.calls.append("get_run")
        if run_id not in self.runs:
            raise RunNotFound(f"Not found: run with ID '{run_id}'")
        return self.runs[run_id]

    async def flow_metadata(self, flow_id: str, step_id: str | None = None) -> dict[str, Any]:
        return {"flow_metadata": {"flow": flow_id}, "step_metadata": {"step": step_id} if step_id else None}


FAST_RETRY = SimpleNamespace(transport_max_retries=2, backoff=SimpleNamespace(delay_ms=lambda n: 20))


def exec_ctx(runtime: DictRuntime, step_id: str = "s1", attempt: int = 1) -> ExecutionContext:
    return ExecutionContext(
        runtime=runtime, run_id=str(uuid.uuid4()), flow_id="ab" * 32, step_id=step_id, attempt=attempt
    )


@asynccontextmanager
async def started_plugin(
    options: dict[str, Any],
    runtime: DictRuntime | None = None,
    *,
    name: str = "py",
    retry: Any = FAST_RETRY,
    timeout: float = 60,  # noqa: ASYNC109
) -> AsyncIterator[StepflowPlugin]:
    """Validate ``options`` (the config mapping minus ``type``), start the plugin, close it after."""
    config = StepflowPlugin.config_model.model_validate(options)
    plugin = StepflowPlugin(name, config)
    ctx = PluginContext(
        plugin_name=name,
        working_directory=HERE,
        runtime=runtime or DictRuntime(),
        environ=dict(os.environ),
        retry=retry,
    )
    try:
        with anyio.fail_after(timeout):
            await plugin.start(ctx)
        yield plugin
    finally:
        with anyio.fail_after(30):
            await plugin.close()
