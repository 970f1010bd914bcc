"""Long runs against a real server: cancel, server-sent events, restart from SQLite, graceful shutdown.

The slow step is the StepFlow echo worker's ``/sleep`` (stepflow-py 0.9.2, an HTTP worker the
gateway launches as a ``type: stepflow`` plugin with ``command``). The worker script is copied into
the test directory so the test can prove, by its path, that no child process outlives the server.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import threading
import time
from pathlib import Path

import anyio
import httpx2
import peers
import pytest

from .conftest import ServerProcess

pytestmark = [pytest.mark.anyio, pytest.mark.peers]

ECHO_SERVER = Path("/work/shared/bench/echo_server.py")

SLEEP_FLOW = {
    "name": "sleepy",
    "steps": [
        {
            "id": "nap",
            "component": "/python/sleep",
            "input": {"duration_ms": {"$input": "ms"}, "passthrough": {"$input": "tag"}},
        }
    ],
    "output": {"$step": "nap"},
}


def worker_config(workdir: Path) -> str:
    peers.require(peers.sf092_python(), ECHO_SERVER, why="stepflow-py 0.9.2 echo worker")
    workdir.mkdir(parents=True, exist_ok=True)
    script = workdir / "echo_worker.py"
    shutil.copy(ECHO_SERVER, script)
    return f"""\
plugins:
  builtin:
    type: builtin
  python:
    type: stepflow
    command: "{peers.sf092_python()}"
    args: ["{script}"]
    env:
      STEPFLOW_LOG_LEVEL: WARNING
routes:
  "/python/{{component}}":
    - plugin: python
  "/builtin/{{*component}}":
    - plugin: builtin
"""


def processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(proc.name))
    return found


def sse_events(text: str) -> list[tuple[str, dict]]:
    out = []
    for block in text.split("\n\n"):
        lines = block.splitlines()
        name = next((ln[7:] for ln in lines if ln.startswith("event: ")), None)
        data = next((ln[6:] for ln in lines if ln.startswith("data: ")), None)
        if name and data:
            out.append((name, json.loads(data)))
    return out


async def read_events_until(chunks, buffer: list[str], predicate) -> list[tuple[str, dict]]:
    async for chunk in chunks:
        buffer.append(chunk)
        events = sse_events("".join(buffer))
        if predicate(events):
            return events
    return sse_events("".join(buffer))


def wait_steps_running(server: ServerProcess, run_id: str, items: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        states = [
            httpx2.get(f"{server.api}/runs/{run_id}/steps", params={"item": i}, timeout=10).json()["steps"][
                "nap"
            ]["status"]
            for i in range(items)
        ]
        if all(s == "running" for s in states):
            return
        time.sleep(0.05)
    raise AssertionError(f"steps of {run_id} never all running:\n{server.log()}")


async def test_cancel_events_and_restart(start_server, tmp_path: Path) -> None:
    server = start_server(worker_config(tmp_path))
    async with httpx2.AsyncClient(base_url=server.api, timeout=30) as c:
        fid = (await c.post("/flows", json={"flow": SLEEP_FLOW})).json()["flowId"]
        quick = (await c.post("/runs", json={"flowId": fid, "input": [{"ms": 5, "tag": "q"}]})).json()
        assert quick["result"] == {"outcome": "success", "result": {"slept_ms": 5, "passthrough": "q"}}

        started = (
            await c.post(
                "/runs",
                json={
                    "flowId": fid,
                    "wait": False,
                    "input": [{"ms": 60000, "tag": 1}, {"ms": 60000, "tag": 2}],
                },
            )
        ).json()
        rid = started["runId"]
        assert started["status"] == "running"
        running = (await c.get(f"/runs/{rid}")).json()
        assert running["status"] == "running" and running["items"]["running"] == 2
        assert any(
            r["runId"] == rid and r["status"] == "running"
            for r in (await c.get("/runs", params={"status": "running"})).json()["runs"]
        )
        assert (await c.delete(f"/runs/{rid}")).status_code == 409

        buffer: list[str] = []
        with anyio.fail_after(30):
            async with c.stream("GET", f"/runs/{rid}/events") as stream:
                chunks = stream.aiter_text()
                events = await read_events_until(
                    chunks, buffer, lambda ev: sum(1 for n, _ in ev if n == "step_started") >= 2
                )
                assert {d["itemIndex"] for n, d in events if n == "step_started"} == {0, 1}

                cancelled = await c.post(f"/runs/{rid}/cancel")
                assert cancelled.status_code == 200, cancelled.text
                summary = cancelled.json()
                assert summary["status"] == "cancelled"
                assert summary["items"] == {
                    "total": 2,
                    "completed": 0,
                    "running": 0,
                    "failed": 0,
                    "cancelled": 2,
                }

                events = await read_events_until(
                    chunks, buffer, lambda ev: ev and ev[-1][0] == "run_completed"
                )
        assert events[-1][0] == "run_completed" and events[-1][1]["status"] == "cancelled"

        items = (await c.get(f"/runs/{rid}/items")).json()["items"]
        assert [i["status"] for i in items] == ["cancelled", "cancelled"]
        assert (await c.post(f"/runs/{rid}/cancel")).status_code == 409

    assert server.stop() == 0
    assert processes_mentioning(str(tmp_path / "echo_worker.py")) == []

    # a new process on the same state directory reads the same runs back from SQLite
    again = start_server(worker_config(tmp_path))
    assert (tmp_path / ".stepflow-gateway" / "state.db").is_file()
    async with httpx2.AsyncClient(base_url=again.api, timeout=30) as c:
        details = (await c.get(f"/runs/{rid}")).json()
        assert details["status"] == "cancelled" and details["inputs"][1] == {"ms": 60000, "tag": 2}
        assert (await c.get(f"/runs/{quick['runId']}/items")).json()["items"][0]["result"]["result"][
            "passthrough"
        ] == "q"
        assert (await c.get(f"/flows/{fid}")).json()["flowId"] == fid
        with anyio.fail_after(10):
            replay = sse_events((await c.get(f"/runs/{quick['runId']}/events")).text)
        # replayed from the journal: the worker step's start is there too
        assert [n for n, _ in replay] == ["step_started", "step_completed", "item_completed", "run_completed"]
        assert replay[-1][1]["status"] == "completed"
        assert (await c.delete(f"/runs/{rid}")).status_code == 200


async def test_graceful_shutdown_finishes_or_leaves_runs_to_resume(start_server, tmp_path: Path) -> None:
    server = start_server(worker_config(tmp_path), env={"STEPFLOW_GATEWAY_SHUTDOWN_GRACE": "3"})
    c = httpx2.Client(base_url=server.api, timeout=30)
    fid = c.post("/flows", json={"flow": SLEEP_FLOW}).json()["flowId"]
    short = c.post("/runs", json={"flowId": fid, "wait": False, "input": [{"ms": 800, "tag": "s"}]}).json()[
        "runId"
    ]
    long = c.post("/runs", json={"flowId": fid, "wait": False, "input": [{"ms": 120000, "tag": "l"}]}).json()[
        "runId"
    ]
    wait_steps_running(server, long, 1)

    # A run whose request waits for it runs in that request's task: at the end of the grace period
    # the task is cancelled; the run is not cancelled but left in the journal, like the others.
    def post_and_wait() -> None:
        with contextlib.suppress(httpx2.HTTPError):  # the server goes away while the request waits
            c.post("/runs", json={"flowId": fid, "input": [{"ms": 120000, "tag": "w"}]})

    waiting = threading.Thread(target=post_and_wait, daemon=True)
    waiting.start()
    deadline = time.monotonic() + 30
    others: list[str] = []
    while not others and time.monotonic() < deadline:
        runs = httpx2.get(f"{server.api}/runs", timeout=10).json()["runs"]
        others = [r["runId"] for r in runs if r["runId"] not in (short, long)]
        await anyio.sleep(0.05)
    assert len(others) == 1, runs
    waited = others[0]
    wait_steps_running(server, waited, 1)

    t0 = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - t0 < 20, "shutdown must be bounded by the grace period"
    assert processes_mentioning(str(tmp_path / "echo_worker.py")) == []
    waiting.join(timeout=10)
    c.close()
    # read the SQLite file the stopped server left: the short run finished in the grace period;
    # the two still in flight are neither cancelled nor lost: "running", to resume at the next start
    with sqlite3.connect(tmp_path / ".stepflow-gateway" / "state.db") as db:
        status = dict(db.execute("SELECT run_id, status FROM runs").fetchall())
    assert status == {short: "completed", long: "running", waited: "running"}, status

    again = start_server(worker_config(tmp_path))
    with httpx2.Client(base_url=again.api, timeout=30) as c:
        s = c.get(f"/runs/{short}").json()
        assert s["status"] == "completed", s
        assert c.get(f"/runs/{short}/items").json()["items"][0]["result"]["result"]["passthrough"] == "s"
        for rid in (long, waited):  # resumed: the same run, running again; a cancel ends it now
            assert c.get(f"/runs/{rid}").json()["status"] == "running"
            wait_steps_running(again, rid, 1)
            assert c.post(f"/runs/{rid}/cancel").status_code == 200
        l_ = c.get(f"/runs/{long}?wait=true").json()
        assert l_["status"] == "cancelled" and l_["items"]["cancelled"] == 1
