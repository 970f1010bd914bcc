"""Cold start of ``stepflow-gateway serve``: REST never loads pydantic or the mcp SDK; ``/mcp`` loads them
on first use.

The check is made on the real server process, from outside: ``/proc/<pid>/maps`` lists the shared
objects it has mapped, and pydantic cannot be imported without mapping
``pydantic_core/_pydantic_core….so``. The mcp SDK is pure Python but is built on pydantic, so "no
``_pydantic_core`` mapped" also means "no mcp SDK". The same check then sees the library arrive
when ``/mcp`` is first used (or a body of an unusual shape is validated), so it can tell both ways.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp.client.client import Client

from .conftest import GREET, ServerProcess

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/maps"),
]

READY_LINE = "MCP endpoint ready"
FAILED_LINE = "the /mcp endpoint could not start"


def pydantic_mapped(server: ServerProcess) -> bool:
    """Whether the server process has pydantic's compiled core mapped (read from ``/proc``)."""
    maps = Path(f"/proc/{server.proc.pid}/maps").read_text()
    assert "/python" in maps or ".so" in maps  # the file is the live process's, not empty
    return "/_pydantic_core." in maps


def exercise_rest(server: ServerProcess) -> str:
    """Store a flow and run it every plain way (fast path and full handler); the flow id."""
    with httpx2.Client(base_url=server.api, timeout=30.0) as c:
        assert c.get("/health").json()["status"] == "healthy"
        dry = c.post("/flows", json={"flow": GREET, "dryRun": True}).json()
        assert dry["stored"] is False
        stored = c.post("/flows", json={"flow": GREET}).json()
        assert stored["stored"] is True, stored
        fid = stored["flowId"]
        # the fast path (plain shape)
        fast = c.post("/runs", json={"flowId": fid, "input": [{"q": "a"}]}).json()
        assert fast["status"] == "completed"
        assert fast["result"]["result"]["messages"][-1] == {"role": "user", "content": "a"}
        # the full handler (variables and maxConcurrency are left to it), still the plain shape
        full = c.post(
            "/runs",
            json={
                "flowId": fid,
                "input": [{"q": "b"}, {"q": "c"}],
                "variables": {"tone": "brisk"},
                "maxConcurrency": 1,
            },
        ).json()
        assert full["status"] == "completed" and full["itemCount"] == 2
        run = c.get(f"/runs/{full['runId']}").json()
        assert run["variables"] == {"tone": "brisk"} and run["items"]["completed"] == 2
        items = c.get(f"/runs/{full['runId']}/items").json()["items"]
        assert [i["result"]["result"]["messages"][0]["content"] for i in items] == ["brisk", "brisk"]
        steps = c.get(f"/runs/{full['runId']}/steps").json()["steps"]
        assert steps["m"]["status"] == "completed"
        events = c.get(f"/runs/{full['runId']}/events").text
        assert "event: run_completed" in events
        # a 404 is worded by the full handler too
        missing = c.post("/runs", json={"flowId": "0" * 64, "input": [1]})
        assert missing.status_code == 404
    return fid


async def test_rest_loads_no_pydantic_and_mcp_starts_once_on_first_use(start_server) -> None:
    server = start_server()
    exercise_rest(server)
    assert not pydantic_mapped(server), "REST requests of the plain shape loaded pydantic"
    assert READY_LINE not in server.log(), "the MCP façade started without an /mcp request"

    # several first /mcp requests at once: one start, all of them served; the flow stored before
    # the façade existed is a tool
    names: list[list[str]] = []

    async def list_tools() -> None:
        async with Client(f"{server.url}/mcp") as mcp:
            names.append([t.name for t in (await mcp.list_tools()).tools])

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(list_tools)
        async with Client(f"{server.url}/mcp") as mcp:
            called = await mcp.call_tool("greet", {"q": "mcp"})
            assert called.structured_content == {
                "messages": [{"role": "system", "content": "calm"}, {"role": "user", "content": "mcp"}]
            }
    assert names == [["greet"]] * 4
    assert server.log().count(READY_LINE) == 1
    assert pydantic_mapped(server)  # the check sees the library once it is there
    assert server.stop() == 0
    assert FAILED_LINE not in server.log() and "Traceback" not in server.log()


def test_a_server_never_asked_for_mcp_stops_cleanly(start_server) -> None:
    server = start_server()
    with httpx2.Client(base_url=server.api, timeout=30.0) as c:
        assert c.get("/health").status_code == 200
    assert not pydantic_mapped(server)
    assert server.stop() == 0
    log = server.log()
    assert READY_LINE not in log and FAILED_LINE not in log and "Traceback" not in log


def test_a_facade_that_cannot_start_answers_503_and_retries_later(start_server, tmp_path: Path) -> None:
    """A broken mcp SDK (shadowed by a package that fails to import): /mcp → 503 naming the error,
    REST unaffected; requests within ``MCP_RETRY_AFTER_S`` do not retry, a later one does."""
    shadow = tmp_path / "shadow" / "mcp"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('mcp is broken for this test')\n")
    server = start_server(env={"PYTHONPATH": str(shadow.parent)}, workdir=tmp_path / "srv")
    expected = "MCP is not available: ImportError: mcp is broken for this test"
    ping = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    with httpx2.Client(timeout=30.0) as c:
        first = c.post(f"{server.url}/mcp", json=ping)
        assert (first.status_code, first.text) == (503, expected)
        second = c.post(f"{server.url}/mcp", json=ping)
        assert (second.status_code, second.text) == (503, expected)
        assert server.log().count(FAILED_LINE) == 1  # the second request did not retry

        exercise_rest(server)

        deadline = time.monotonic() + 30.0
        while server.log().count(FAILED_LINE) < 2:
            assert time.monotonic() < deadline, f"no retry within 30 s:\n{server.log()}"
            again = c.post(f"{server.url}/mcp", json=ping)
            assert (again.status_code, again.text) == (503, expected)
            time.sleep(0.5)
    assert server.stop() == 0
