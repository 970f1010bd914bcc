"""Upstream HEAD additions through a real server on 127.0.0.1: ``timeoutSecs`` on ``POST /runs`` and
``GET /runs/{id}?wait=true``, the ``/builtin/sleep`` and ``/builtin/noop`` components, string error
codes (``COMPONENT_FAILED``) in REST answers and the SQLite store, and ``onError: retry``.

The slow step is ``/builtin/sleep``. Every bound on time is generous: an expired ``timeoutSecs`` is
recognised by the run's status (``running``, no result), never by a stopwatch.
"""

from __future__ import annotations

from typing import Any

import httpx2

from .conftest import BUILTIN_CONFIG, ServerProcess
from .test_cold_start import pydantic_mapped

SLEEP_FLOW = {
    "name": "nap",
    "steps": [
        {
            "id": "nap",
            "component": "/builtin/sleep",
            "input": {"duration_ms": {"$input": "ms"}, "passthrough": {"$input": "tag"}},
        },
        {"id": "echo", "component": "/builtin/noop", "input": {"$step": "nap"}},
    ],
    "output": {"$step": "echo"},
}

MOCK_CONFIG = """\
plugins:
  builtin:
    type: builtin
  mock:
    type: mock
    components:
      /error:
        behaviors:
          { mode: "error" }:
            outcome: failed
            error: {code: COMPONENT_FAILED, message: "error"}
          { mode: "old" }:
            outcome: failed
            error: {code: 500, message: "numeric"}
          { mode: "succeed" }:
            outcome: success
            result: {output: "succeeded"}
routes:
  "/mock":
    - plugin: mock
  "/builtin":
    - plugin: builtin
"""

ERROR_FLOW = {
    "name": "error_retry",
    "steps": [
        {
            "id": "retry_step",
            "component": "/mock/error",
            "onError": {"action": "retry", "maxRetries": 2, "backoff": {"type": "constant", "delayMs": 1}},
            "input": {"mode": {"$input": "mode"}},
        }
    ],
    "output": {"result": {"$step": "retry_step"}},
}


def _store(c: httpx2.Client, flow: dict[str, Any]) -> str:
    r = c.post("/flows", json={"flow": flow})
    assert r.status_code == 200, r.text
    return str(r.json()["flowId"])


def _item(c: httpx2.Client, run_id: str) -> dict[str, Any]:
    r = c.get(f"/runs/{run_id}/items")
    assert r.status_code == 200, r.text
    return dict(r.json()["items"][0])


def test_timeout_secs_answers_running_and_the_run_keeps_going(start_server) -> None:
    server: ServerProcess = start_server(BUILTIN_CONFIG)
    with httpx2.Client(base_url=server.api, timeout=60.0) as c:
        fid = _store(c, SLEEP_FLOW)

        # finishes inside the bound: the usual synchronous answer
        done = c.post("/runs", json={"flowId": fid, "input": [{"ms": 1, "tag": "quick"}], "timeoutSecs": 60})
        assert done.status_code == 200, done.text
        assert done.json()["status"] == "completed"
        assert done.json()["result"] == {
            "outcome": "success",
            "result": {"duration_ms": 1, "passthrough": "quick"},
        }

        # expires (integer form): 200, still running, no result
        slow = c.post("/runs", json={"flowId": fid, "input": [{"ms": 1500, "tag": "a"}], "timeoutSecs": 1})
        assert slow.status_code == 200, slow.text
        body = slow.json()
        assert body["status"] == "running" and body["itemCount"] == 1 and "result" not in body, body
        run_id = body["runId"]

        # upstream's protobuf form of a uint64 is a string; "0" answers at once
        now = c.post("/runs", json={"flowId": fid, "input": [{"ms": 1500, "tag": "b"}], "timeoutSecs": "0"})
        assert now.status_code == 200 and now.json()["status"] == "running", now.text
        second = now.json()["runId"]
        assert not pydantic_mapped(server)  # plain bodies with timeoutSecs stayed on the fast path

        # GET ?wait=true bounded by timeoutSecs=0 answers as the run stands
        peek = c.get(f"/runs/{second}", params={"wait": "true", "timeoutSecs": "0"})
        assert peek.status_code == 200 and peek.json()["status"] == "running", peek.text
        assert _item(c, second)["status"] == "running"

        # neither run was cancelled: both finish, with their results
        for rid, tag in ((run_id, "a"), (second, "b")):
            waited = c.get(f"/runs/{rid}", params={"wait": "true", "timeoutSecs": 60})
            assert waited.status_code == 200, waited.text
            assert waited.json()["status"] == "completed", waited.json()
            assert waited.json()["items"]["completed"] == 1
            item = _item(c, rid)
            assert item["result"] == {
                "outcome": "success",
                "result": {"duration_ms": 1500, "passthrough": tag},
            }

        # GET ?wait=true on a finished run, and without a timeout (default 300 s), answers at once
        assert c.get(f"/runs/{run_id}", params={"wait": "true"}).json()["status"] == "completed"
        # without wait, timeoutSecs changes nothing
        assert c.get(f"/runs/{run_id}", params={"timeoutSecs": "5"}).json()["status"] == "completed"


def test_timeout_secs_on_the_full_handler_and_its_errors(start_server) -> None:
    server: ServerProcess = start_server(BUILTIN_CONFIG)
    with httpx2.Client(base_url=server.api, timeout=60.0) as c:
        fid = _store(c, SLEEP_FLOW)
        # an unusual shape goes through the pydantic tier, with the same semantics
        body = {"flow_id": fid, "input": [{"ms": 1500, "tag": 1}], "wait": "true", "timeoutSecs": "0"}
        odd = c.post("/runs", json=body)
        assert odd.status_code == 200, odd.text
        assert odd.json()["status"] == "running" and "result" not in odd.json()
        assert pydantic_mapped(server)
        # an explicit cancel still cancels such a run
        cancelled = c.post(f"/runs/{odd.json()['runId']}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert c.get(f"/runs/{odd.json()['runId']}").json()["status"] == "cancelled"
        # wait: false ignores timeoutSecs
        body = {"flowId": fid, "input": [{"ms": 1, "tag": 2}], "wait": False, "timeoutSecs": 60}
        nowait = c.post("/runs", json=body)
        assert nowait.status_code == 200 and nowait.json()["status"] == "running"

        for bad in (-1, 1.5, "soon", "-1", [1]):
            r = c.post("/runs", json={"flowId": fid, "input": [{"ms": 1, "tag": 3}], "timeoutSecs": bad})
            assert r.status_code == 422, (bad, r.text)
            assert "timeoutSecs" in r.json()["message"]
        r = c.get(f"/runs/{nowait.json()['runId']}", params={"wait": "true", "timeoutSecs": "soon"})
        assert r.status_code == 400 and "timeoutSecs" in r.json()["message"], r.text

        doc = c.get("/openapi.json").json()
        assert "timeoutSecs" in doc["components"]["schemas"]["CreateRunRequest"]["properties"]
        params = {p["name"] for p in doc["paths"]["/runs/{runId}"]["get"]["parameters"]}
        assert {"wait", "timeoutSecs"} <= params


def test_sleep_and_noop_are_listed_with_schemas(start_server) -> None:
    server: ServerProcess = start_server(BUILTIN_CONFIG)
    with httpx2.Client(base_url=server.api, timeout=60.0) as c:
        comps = {e["component"]: e for e in c.get("/components").json()["components"]}
    sleep, noop = comps["/builtin/sleep"], comps["/builtin/noop"]
    assert sleep["input_schema"]["required"] == ["duration_ms"]
    assert "passthrough" in sleep["output_schema"]["properties"]
    assert noop["description"] and "input_schema" in noop


def test_string_error_codes_and_retry_through_rest_and_sqlite(start_server) -> None:
    server: ServerProcess = start_server(MOCK_CONFIG)
    with httpx2.Client(base_url=server.api, timeout=60.0) as c:
        fid = _store(c, ERROR_FLOW)
        failed = c.post("/runs", json={"flowId": fid, "input": [{"mode": "error"}]}).json()
        assert failed["status"] == "failed"
        assert failed["result"] == {
            "outcome": "failed",
            "error": {"code": "COMPONENT_FAILED", "message": "error"},
        }
        # the same from the store (SQLite is serve's default), for the item and for the step
        assert _item(c, failed["runId"])["result"]["error"]["code"] == "COMPONENT_FAILED"
        steps = c.get(f"/runs/{failed['runId']}/steps").json()["steps"]
        assert steps["retry_step"]["result"]["error"]["code"] == "COMPONENT_FAILED"

        # 0.9.0-era numeric codes stay integers, on the full handler too
        old = c.post("/runs", json={"flow_id": fid, "input": [{"mode": "old"}]}).json()
        assert old["result"]["error"] == {"code": 500, "message": "numeric"}
        assert type(_item(c, old["runId"])["result"]["error"]["code"]) is int

        ok = c.post("/runs", json={"flowId": fid, "input": [{"mode": "succeed"}]}).json()
        assert ok["result"] == {"outcome": "success", "result": {"result": {"output": "succeeded"}}}

    log = server.log()
    # maxRetries: 2 → two "retrying step" lines for the failing run, none for the others
    assert log.count("retrying step") == 2 + 2, log  # the numeric failure is retried as well
