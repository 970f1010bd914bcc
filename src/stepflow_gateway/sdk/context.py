"""Owns :class:`Context`: what a component can ask of the runtime while it executes (blobs, nested
runs), sent as G1 callbacks (``blobs/*``, ``runs/*``) over the connection the execute came on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["Context", "ContextError", "FlowFailed"]

SendRequest = Callable[[str, Any], Awaitable[Any]]


class ContextError(RuntimeError):
    """The runtime answered a callback with an error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"runtime error {code}: {message}")
        self.code = code
        self.message = message
        self.data = data


class FlowFailed(Exception):
    """A nested flow run by :meth:`Context.evaluate_flow` ended ``failed`` (or ``skipped``).

    ``code`` is the flow error's code: an integer, or a string such as ``COMPONENT_FAILED``."""

    def __init__(self, code: int | str, message: str, data: Any = None) -> None:
        super().__init__(f"flow failed ({code}): {message}")
        self.code = code
        self.message = message
        self.data = data


class Context:
    """Runtime access for one component execution. Declare a parameter typed ``Context`` to get it."""

    __slots__ = ("_send", "step_id", "run_id", "flow_id", "attempt", "_obs")

    def __init__(
        self, send: SendRequest, *, attempt: int = 1, observability: dict[str, Any] | None = None
    ) -> None:
        self._send = send
        obs = observability or {}
        self._obs = {k: v for k, v in obs.items() if isinstance(v, str)}
        self.step_id: str | None = obs.get("step_id")
        self.run_id: str | None = obs.get("run_id")
        self.flow_id: str | None = obs.get("flow_id")
        self.attempt = attempt

    async def _call(self, method: str, params: dict[str, Any]) -> Any:
        params["observability"] = self._obs
        return await self._send(method, params)

    async def put_blob(self, data: Any, blob_type: str = "data") -> str:
        """Store JSON ``data``; return its content-addressed id."""
        result = await self._call("blobs/put", {"data": data, "blob_type": blob_type})
        return str(result["blob_id"])

    async def get_blob(self, blob_id: str) -> Any:
        """The data stored under ``blob_id``."""
        result = await self._call("blobs/get", {"blob_id": blob_id})
        return result["data"]

    async def submit_run(
        self,
        flow_id: str,
        inputs: list[Any],
        *,
        wait: bool = True,
        max_concurrency: int | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Start a nested run of a stored flow (``runs/submit``); returns ``RunStatusProtocol``."""
        params: dict[str, Any] = {"flowId": flow_id, "inputs": inputs, "wait": wait}
        if max_concurrency is not None:
            params["maxConcurrency"] = max_concurrency
        if overrides is not None:
            params["overrides"] = overrides
        return dict(await self._call("runs/submit", params))

    async def get_run(
        self, run_id: str, *, wait: bool = False, include_results: bool = True
    ) -> dict[str, Any]:
        """Status (and results) of a run (``runs/get``)."""
        return dict(
            await self._call("runs/get", {"runId": run_id, "wait": wait, "includeResults": include_results})
        )

    async def evaluate_flow(self, flow: dict[str, Any] | str, input: Any) -> Any:
        """Run ``flow`` (a flow object, or the blob id of a stored one) on one input; return its result.

        Raises:
            FlowFailed: the nested run did not succeed.
        """
        flow_id = flow if isinstance(flow, str) else await self.put_blob(flow, "flow")
        status = await self.submit_run(flow_id, [input], wait=True)
        results = status.get("results") or []
        result = results[0].get("result") if results else None
        if not isinstance(result, dict):
            raise FlowFailed(500, f"nested run {status.get('runId')} returned no result")
        if result.get("outcome") == "success":
            return result.get("result")
        if result.get("outcome") == "skipped":
            raise FlowFailed(0, f"flow skipped: {result.get('reason')}")
        error = result.get("error") or {}
        code = error.get("code", 500)
        if code.__class__ is not str:  # upstream HEAD's string codes are kept; numbers become ints
            code = int(code) if isinstance(code, (int, float)) else 500
        raise FlowFailed(code, str(error.get("message", "")), error.get("data"))
