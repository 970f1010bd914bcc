"""REST /api/v1 against a real ``stepflow-gateway serve`` subprocess (rest-api.md §1–3)."""

from __future__ import annotations

import json
import uuid

import httpx2

from .conftest import ServerProcess

BLOB_DEMO = {
    "name": "blob-demo",
    "steps": [
        {
            "id": "put",
            "component": "/builtin/put_blob",
            "input": {"data": {"$input": "payload"}, "blob_type": "data"},
        },
        {
            "id": "get",
            "component": "/builtin/get_blob",
            "input": {"blob_id": {"$step": "put", "path": "blob_id"}},
        },
    ],
    "output": {"blob_id": {"$step": "put", "path": "blob_id"}, "roundtrip": {"$step": "get", "path": "data"}},
}
BLOB_DEMO_ID = "7a7da94768824f9031d957ac163245c882b9929b24e4f59767d193c030353d34"

MESSAGES = {
    "name": "msgs",
    "description": "one message",
    "schemas": {
        "type": "object",
        "properties": {
            "input": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
            "variables": {"type": "object", "properties": {"tone": {"type": "string", "default": "calm"}}},
        },
    },
    "steps": [
        {
            "id": "m",
            "component": "/builtin/create_messages",
            "input": {"user_prompt": {"$input": "q"}, "system_instructions": {"$variable": "tone"}},
        }
    ],
    "output": {"$step": "m", "path": "messages"},
    "test": {"cases": [{"name": "hello", "input": {"q": "hi"}}]},
}


def client(server: ServerProcess) -> httpx2.Client:
    return httpx2.Client(base_url=server.api, timeout=30.0)


def assert_error(r: httpx2.Response, status: int, needle: str) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["code"] == status
    assert needle in body["message"], body
    assert body["stack"] and "error" in body["stack"][0]
    return body


def test_health_components_and_docs(start_server) -> None:
    server = start_server()
    with client(server) as c:
        h = c.get("/health", headers={"origin": "http://example.test"})
        assert h.status_code == 200 and h.json()["status"] == "healthy"
        assert h.headers["access-control-allow-origin"] == "*"
        assert h.json()["timestamp"].endswith("Z")
        assert_error(c.get("/health", params={"error": "bad_request"}), 400, "bad_request")
        assert_error(c.get("/health", params={"error": "not_found"}), 404, "not_found")
        assert_error(c.get("/health", params={"error": "internal"}), 500, "internal")

        comps = c.get("/components").json()["components"]
        names = [x["component"] for x in comps]
        assert "/builtin/create_messages" in names and names == sorted(names)
        cm = next(x for x in comps if x["component"] == "/builtin/create_messages")
        assert (
            cm["plugin"] == "builtin" and cm["localComponent"] == "/create_messages" and "input_schema" in cm
        )
        lean = c.get("/components", params={"includeSchemas": "false"}).json()["components"]
        assert all("input_schema" not in x for x in lean)

        doc = c.get("/openapi.json").json()
        assert doc["openapi"].startswith("3.") and "/runs/{runId}/events" in doc["paths"]
        assert "CreateRunRequest" in doc["components"]["schemas"]
        page = c.get("/docs")
        assert page.status_code == 200 and "/api/v1/runs" in page.text
        assert_error(c.get("/nope"), 404, "No route")


def test_store_get_delete_flow(start_server) -> None:
    server = start_server()
    with client(server) as c:
        dry = c.post("/flows", json={"flow": BLOB_DEMO, "dryRun": True}).json()
        assert dry == {**dry, "flowId": BLOB_DEMO_ID, "stored": False}
        assert_error(c.get(f"/flows/{BLOB_DEMO_ID}"), 404, f"Workflow '{BLOB_DEMO_ID}' not found")

        stored = c.post(
            "/flows", json={"flow": {"schema": "https://stepflow.org/schemas/v1/flow.json", **BLOB_DEMO}}
        )
        body = stored.json()
        assert body["flowId"] == BLOB_DEMO_ID and body["stored"] is True
        kinds = [d["kind"] for d in body["diagnostics"]["diagnostics"]]
        assert "missingFlowDescription" in kinds and body["diagnostics"]["numFatal"] == 0

        got = c.get(f"/flows/{BLOB_DEMO_ID}").json()
        assert got["flowId"] == BLOB_DEMO_ID and "schema" not in got["flow"]
        assert got["flow"]["steps"][0]["input"]["data"] == {"$input": "$.payload"}  # normalised
        assert "allExamples" not in got

        fid = c.post("/flows", json={"flow": MESSAGES}).json()["flowId"]
        assert c.get(f"/flows/{fid}").json()["allExamples"] == [{"name": "hello", "input": {"q": "hi"}}]

        fatal = c.post(
            "/flows",
            json={"flow": {"steps": [{"id": "a", "component": "/builtin/eval", "input": {"$step": "zzz"}}]}},
        ).json()
        assert fatal["stored"] is False and fatal["diagnostics"]["numFatal"] >= 1

        r = c.delete(f"/flows/{fid}")
        assert r.status_code == 200 and r.content == b""
        assert_error(c.delete(f"/flows/{fid}"), 404, "not found")


def test_body_errors(start_server) -> None:
    server = start_server(env={"STEPFLOW_GATEWAY_MAX_BODY_BYTES": "2048"})
    with client(server) as c:
        assert_error(
            c.post("/flows", content=b"{not json", headers={"content-type": "application/json"}), 400, "JSON"
        )
        assert_error(c.post("/flows", json={"nope": 1}), 422, "flow")
        assert_error(
            c.post(
                "/flows",
                json={"flow": {"steps": [{"id": "a", "component": "/x", "onError": {"action": "explode"}}]}},
            ),
            422,
            "onError",
        )
        fid = c.post("/flows", json={"flow": BLOB_DEMO}).json()["flowId"]
        assert_error(c.post("/runs", json={"flowId": fid, "input": {"payload": 1}}), 422, "input")
        assert_error(
            c.post("/runs", json={"flowId": "1" * 64, "input": [{}]}), 404, f"Workflow '{'1' * 64}' not found"
        )
        big = json.dumps({"flow": BLOB_DEMO, "pad": "x" * 4096})
        assert_error(
            c.post("/flows", content=big, headers={"content-type": "application/json"}), 413, "too large"
        )
        assert_error(c.get("/runs/not-a-uuid"), 400, "UUID")
        missing = str(uuid.uuid4())
        assert_error(c.get(f"/runs/{missing}"), 404, f"Execution '{missing}' not found")
        assert_error(c.get("/runs", params={"status": "weird"}), 400, "status")
        assert_error(c.get("/runs", params={"limit": "-1"}), 400, "limit")


def test_runs_lifecycle(start_server) -> None:
    server = start_server()
    with client(server) as c:
        fid = c.post("/flows", json={"flow": BLOB_DEMO}).json()["flowId"]
        one = c.post("/runs", json={"flowId": fid, "input": [{"payload": {"hello": "world"}}]}).json()
        assert one["status"] == "completed" and one["itemCount"] == 1
        assert one["result"] == {
            "outcome": "success",
            "result": {
                "blob_id": "93a23971a914e5eacbf0a8d25154cda309c3c1c72fbb9914d47c60f3cb681588",
                "roundtrip": {"hello": "world"},
            },
        }

        batch = c.post(
            "/runs",
            json={
                "flowId": fid,
                "input": [{"payload": {"n": 1}}, {"payload": {"n": 2}}],
                "maxConcurrency": 2,
            },
        ).json()
        assert batch["itemCount"] == 2 and "result" not in batch and batch["status"] == "completed"
        rid = batch["runId"]

        details = c.get(f"/runs/{rid}").json()
        assert details["inputs"] == [{"payload": {"n": 1}}, {"payload": {"n": 2}}]
        assert details["items"] == {"total": 2, "completed": 2, "running": 0, "failed": 0, "cancelled": 0}
        assert details["rootRunId"] == rid and details["flowName"] == "blob-demo"

        items = c.get(f"/runs/{rid}/items").json()
        assert items["itemCount"] == 2
        assert [i["itemIndex"] for i in items["items"]] == [0, 1]
        assert items["items"][1]["result"]["result"]["roundtrip"] == {"n": 2}
        assert all(i["completedAt"].endswith("Z") for i in items["items"])

        steps = c.get(f"/runs/{rid}/steps", params={"item": 1}).json()["steps"]
        assert set(steps) == {"put", "get"}
        assert steps["get"]["status"] == "completed" and steps["get"]["result"]["result"]["data"] == {"n": 2}
        assert steps["put"]["component"] == "/builtin/put_blob" and steps["put"]["stepIndex"] == 0
        assert_error(c.get(f"/runs/{rid}/steps", params={"item": 5}), 400, "item 5")

        flow = c.get(f"/runs/{rid}/flow").json()
        assert flow["flowId"] == fid and flow["flow"]["name"] == "blob-demo"

        listed = c.get("/runs").json()["runs"]
        assert [r["runId"] for r in listed] == [rid, one["runId"]]  # newest first
        assert [r["runId"] for r in c.get("/runs", params={"limit": 1, "offset": 1}).json()["runs"]] == [
            one["runId"]
        ]
        assert c.get("/runs", params={"status": "failed"}).json()["runs"] == []
        assert len(c.get("/runs", params={"flowName": "blob-demo", "maxDepth": 0}).json()["runs"]) == 2

        assert_error(c.post(f"/runs/{rid}/cancel"), 409, "cannot be cancelled (status: completed)")
        r = c.delete(f"/runs/{rid}")
        assert r.status_code == 200 and r.content == b""
        assert_error(c.get(f"/runs/{rid}"), 404, "not found")


def test_failed_flow_variables_and_overrides(start_server) -> None:
    server = start_server()
    with client(server) as c:
        failing = {
            "name": "bad",
            "steps": [{"id": "get", "component": "/builtin/get_blob", "input": {"blob_id": "0" * 64}}],
            "output": {"$step": "get"},
        }
        fid = c.post("/flows", json={"flow": failing}).json()["flowId"]
        r = c.post("/runs", json={"flowId": fid, "input": [{}]})
        assert r.status_code == 200
        body = r.json()
        assert body["status"] == "failed" and body["result"]["outcome"] == "failed"
        assert body["result"]["error"]["message"] == 'step "get" failed'

        ok = c.post(
            "/runs",
            json={
                "flowId": fid,
                "input": [{}],
                "overrides": {
                    "steps": {
                        "get": {"value": {"onError": {"action": "useDefault", "defaultValue": {"d": 1}}}}
                    }
                },
            },
        ).json()
        assert ok["status"] == "completed" and ok["result"]["result"] == {"d": 1}
        assert_error(
            c.post(
                "/runs",
                json={
                    "flowId": fid,
                    "input": [{}],
                    "overrides": {"steps": {"nope": {"value": {"onError": {}}}}},
                },
            ),
            400,
            "nope",
        )

        mid = c.post("/flows", json={"flow": MESSAGES}).json()["flowId"]
        good = c.post(
            "/runs", json={"flowId": mid, "input": [{"q": "hi"}], "variables": {"tone": "brisk"}}
        ).json()
        assert good["result"]["result"][0] == {"role": "system", "content": "brisk"}
        bad_var = c.post(
            "/runs", json={"flowId": mid, "input": [{"q": "hi"}, {"q": "ho"}], "variables": {"tone": 5}}
        ).json()
        assert bad_var["status"] == "failed"
        items = c.get(f"/runs/{bad_var['runId']}/items").json()["items"]
        assert [i["result"]["error"]["code"] for i in items] == [400, 400]
        assert "tone" in items[0]["result"]["error"]["message"]
        bad_input = c.post("/runs", json={"flowId": mid, "input": [{"q": 3}]}).json()
        assert bad_input["result"]["error"]["code"] == 400
        assert bad_input["result"]["error"]["message"].startswith("Input validation failed at $.q")


def test_no_wait_run_and_events_of_finished_run(start_server) -> None:
    server = start_server()
    with client(server) as c:
        fid = c.post("/flows", json={"flow": BLOB_DEMO}).json()["flowId"]
        started = c.post("/runs", json={"flowId": fid, "input": [{"payload": 1}], "wait": False}).json()
        rid = started["runId"]
        assert started["status"] in ("running", "completed")
        with c.stream("GET", f"/runs/{rid}/events") as s:
            assert s.headers["content-type"].startswith("text/event-stream")
            text = "".join(s.iter_text())
        events = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("event: ")]
        assert events[-1] == "run_completed"
        assert "item_completed" in events and "step_completed" in events
        last = json.loads([line for line in text.splitlines() if line.startswith("data: ")][-1][6:])
        assert last["status"] == "completed" and last["items"]["completed"] == 1
        assert c.get(f"/runs/{rid}").json()["status"] == "completed"


def test_serve_startup_failure_is_one_clear_line(tmp_path) -> None:
    import subprocess

    from .conftest import GATEWAY

    cfg = tmp_path / "bad.yml"
    cfg.write_text(
        'plugins:\n  py:\n    type: stepflow\n    command: /nonexistent/python\n    args: ["x.py"]\n'
        'routes:\n  "/py/{component}":\n    - plugin: py\n'
    )
    proc = subprocess.run(
        [str(GATEWAY), "serve", "--config", str(cfg), "--port", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "error: plugin 'py': command '/nonexistent/python' not found" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
