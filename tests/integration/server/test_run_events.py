"""``GET /runs/{id}/events`` fed from the run journal, against a real server (SQLite state).

Every event carries ``id: <journal seq>``; ``since`` and ``Last-Event-ID`` resume exactly; a finished
run replays with the same ids after a restart; ``includeSubRuns`` adds a map's child run. The slow
steps are ``/builtin/sleep`` (never inline, so each one journals ``step_started``).
"""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import httpx2

from .conftest import BUILTIN_CONFIG, GREET, ServerProcess

Event = tuple[int | None, str, dict[str, Any]]

SEQ_FLOW = {
    # sleep -> noop (inline) -> sleep, per item
    "name": "seq_sleep",
    "steps": [
        {
            "id": "a",
            "component": "/builtin/sleep",
            "input": {"duration_ms": {"$input": "ms"}, "passthrough": {"$input": "tag"}},
        },
        {"id": "b", "component": "/builtin/noop", "input": {"$step": "a"}},
        {
            "id": "c",
            "component": "/builtin/sleep",
            "input": {"duration_ms": {"$input": "ms"}, "passthrough": {"$step": "b", "path": "passthrough"}},
        },
    ],
    "output": {"$step": "c"},
}

MAP_FLOW = {
    "name": "map_sleep",
    "steps": [
        {
            "id": "fan",
            "component": "/builtin/map",
            "input": {
                "workflow": {
                    "$literal": {
                        "name": "one",
                        "steps": [
                            {
                                "id": "nap",
                                "component": "/builtin/sleep",
                                "input": {"duration_ms": {"$input": "ms"}, "passthrough": {"$input": "v"}},
                            }
                        ],
                        "output": {"$step": "nap", "path": "passthrough"},
                    }
                },
                "items": {"$input": "items"},
            },
        }
    ],
    "output": {"$step": "fan", "path": "results"},
}


def parse(text: str) -> list[Event]:
    """SSE blocks as ``(id, event, data)``; comments (keepalives) are skipped."""
    out: list[Event] = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":") or ": " not in line:
                continue
            key, value = line.split(": ", 1)
            fields[key] = value
        if "event" in fields:
            ev_id = int(fields["id"]) if "id" in fields else None
            out.append((ev_id, fields["event"], json.loads(fields["data"])))
    return out


def read_all(c: httpx2.Client, run_id: str, **kw: Any) -> list[Event]:
    with c.stream("GET", f"/runs/{run_id}/events", **kw) as s:
        assert s.status_code == 200, s.read()
        assert s.headers["content-type"].startswith("text/event-stream")
        return parse("".join(s.iter_text()))


def read_until(c: httpx2.Client, run_id: str, stop: Any, **kw: Any) -> list[Event]:
    """Read events until ``stop(events)``, then drop the connection (a client going away)."""
    buf = ""
    with c.stream("GET", f"/runs/{run_id}/events", **kw) as s:
        for chunk in s.iter_text():
            buf += chunk
            events = parse(buf[: buf.rfind("\n\n") + 2])
            if stop(events):
                return events
    raise AssertionError(f"stream ended before the condition held: {parse(buf)}")


def ids_increase(events: list[Event]) -> None:
    ids = [i for i, _, _ in events]
    assert all(isinstance(i, int) for i in ids), events
    assert ids == sorted(set(ids)), f"ids not strictly increasing: {ids}"  # type: ignore[type-var]
    for i, _name, data in events:
        assert data["seq"] == i


def client(server: ServerProcess) -> httpx2.Client:
    return httpx2.Client(base_url=server.api, timeout=30)


def store_flow(c: httpx2.Client, flow: dict[str, Any]) -> str:
    return str(c.post("/flows", json={"flow": flow}).json()["flowId"])


def submit(c: httpx2.Client, fid: str, inputs: list[Any]) -> str:
    r = c.post("/runs", json={"flowId": fid, "input": inputs, "wait": False})
    assert r.status_code == 200, r.text
    return str(r.json()["runId"])


def test_events_have_increasing_ids_and_resume_with_since_and_last_event_id(start_server) -> None:
    server = start_server(BUILTIN_CONFIG)
    with client(server) as c:
        fid = store_flow(c, SEQ_FLOW)
        rid = submit(c, fid, [{"ms": 150, "tag": "x"}, {"ms": 200, "tag": "y"}])
        full = read_all(c, rid)  # live from the start, then the run ends
        ids_increase(full)
        names = [n for _, n, _ in full]
        assert names[-1] == "run_completed" and names.count("run_completed") == 1
        last = full[-1][2]
        assert last["runId"] == rid and last["status"] == "completed"
        assert last["items"] == {"total": 2, "completed": 2, "running": 0, "failed": 0, "cancelled": 0}
        # the sleeps journal step_started (attempt 1); the inline noop only its end
        started = [(d["itemIndex"], d["stepId"], d["attempt"]) for _, n, d in full if n == "step_started"]
        assert sorted(started) == [(0, "a", 1), (0, "c", 1), (1, "a", 1), (1, "c", 1)]
        done = sorted((d["itemIndex"], d["stepId"]) for _, n, d in full if n == "step_completed")
        assert done == [(i, s) for i in (0, 1) for s in "abc"]
        items = {d["itemIndex"]: d for _, n, d in full if n == "item_completed"}
        assert items[1]["status"] == "completed"
        assert items[1]["result"] == {
            "outcome": "success",
            "result": {"duration_ms": 200, "passthrough": "y"},
        }
        assert all(d["runId"] == rid and d["at"].endswith("Z") for _, _, d in full)

        # the finished run replays the same events
        assert read_all(c, rid) == full
        # resume after any point: exactly the rest, by ?since= and by Last-Event-ID
        for cut in (1, len(full) // 2, len(full) - 1):
            after = full[cut - 1][0]
            assert read_all(c, rid, params={"since": after}) == full[cut:]
            assert read_all(c, rid, headers={"Last-Event-ID": str(after)}) == full[cut:]
        # the header wins (EventSource resends the original URL with it)
        mid = full[len(full) // 2][0]
        assert read_all(c, rid, params={"since": 0}, headers={"last-event-id": str(mid)}) == [
            e
            for e in full
            if e[0] > mid  # type: ignore[operator]
        ]
        assert read_all(c, rid, params={"since": full[-1][0]}) == []

        # filters: event types (ours or upstream's names), results left out
        only = read_all(c, rid, params={"eventTypes": "item_completed,STATUS_EVENT_TYPE_RUN_COMPLETED"})
        assert only == [e for e in full if e[1] in ("item_completed", "run_completed")]
        bare = read_all(c, rid, params={"includeResults": "false"})
        assert [e[0] for e in bare] == [e[0] for e in full]
        assert not any("result" in d for _, n, d in bare if n != "run_completed")

        assert c.get(f"/runs/{rid}/events", params={"eventTypes": "nope"}).status_code == 400
        assert c.get(f"/runs/{rid}/events", headers={"Last-Event-ID": "x"}).status_code == 400
        assert c.get(f"/runs/{rid}/events", params={"since": "-1"}).status_code == 400


def test_events_reconnect_mid_run_loses_nothing(start_server) -> None:
    server = start_server(BUILTIN_CONFIG)
    with client(server) as c:
        fid = store_flow(c, SEQ_FLOW)
        rid = submit(c, fid, [{"ms": 700, "tag": i} for i in range(3)])
        seen: list[Event] = []
        # three short connections while the run goes on, each resuming from the last id seen
        for want in ("step_started", "step_completed"):
            last = seen[-1][0] if seen else None
            headers = {"Last-Event-ID": str(last)} if last is not None else {}
            part = read_until(c, rid, lambda evs, w=want: any(n == w for _, n, _ in evs), headers=headers)
            seen += part
        assert c.get(f"/runs/{rid}").json()["status"] == "running", "the run ended before the reconnects"
        seen += read_all(c, rid, headers={"Last-Event-ID": str(seen[-1][0])})
        ids_increase(seen)
        assert seen == read_all(c, rid), "the pieces are not the whole stream"
        assert seen[-1][1] == "run_completed" and seen[-1][2]["status"] == "completed"


def test_events_of_a_finished_run_replay_with_the_same_ids_after_a_restart(start_server, tmp_path) -> None:
    server = start_server(BUILTIN_CONFIG)
    with client(server) as c:
        fid = store_flow(c, SEQ_FLOW)
        rid = submit(c, fid, [{"ms": 50, "tag": "r"}])
        live = read_all(c, rid)
        gid = store_flow(c, GREET)  # a run rejected up front (a bad variable) is journaled too
        rejected = c.post(
            "/runs", json={"flowId": gid, "input": [{"q": "a"}], "variables": {"tone": 5}}
        ).json()
        assert rejected["status"] == "failed"
    ids_increase(live)
    assert server.stop() == 0

    again = start_server(BUILTIN_CONFIG, workdir=tmp_path)
    with client(again) as c:
        assert read_all(c, rid) == live  # same ids, same data
        tail = read_all(c, rid, headers={"Last-Event-ID": str(live[1][0])})
        assert tail == live[2:]
        events = read_all(c, rejected["runId"])
        ids_increase(events)
        assert [n for _, n, _ in events] == ["item_completed", "run_completed"]
        assert events[0][2]["result"]["error"]["code"] == 400
        assert events[-1][2]["status"] == "failed" and events[-1][2]["items"]["failed"] == 1


def test_events_include_sub_runs_of_a_map(start_server) -> None:
    server = start_server(BUILTIN_CONFIG)
    with client(server) as c:
        fid = store_flow(c, MAP_FLOW)
        items = [{"ms": 100 + 50 * i, "v": i} for i in range(3)]
        rid = submit(c, fid, [{"items": items}])
        with_subs = read_all(c, rid, params={"includeSubRuns": "true"})
        own = read_all(c, rid)
    ids_increase(with_subs)
    ids_increase(own)
    assert {d["runId"] for _, _, d in own} == {rid}
    assert [n for _, n, _ in own] == ["step_started", "step_completed", "item_completed", "run_completed"]
    assert own[-1][2]["status"] == "completed"
    assert own == [e for e in with_subs if e[2]["runId"] == rid]

    created = [d for _, n, d in with_subs if n == "sub_run_created"]
    assert len(created) == 1 and created[0]["parentRunId"] == rid and created[0]["itemCount"] == 3
    child = created[0]["runId"]
    assert {d["runId"] for _, _, d in with_subs} == {rid, child}
    child_events = [(n, d) for _, n, d in with_subs if d["runId"] == child]
    assert sorted(d["itemIndex"] for n, d in child_events if n == "step_started") == [0, 1, 2]
    assert sorted(d["itemIndex"] for n, d in child_events if n == "item_completed") == [0, 1, 2]
    child_end = [d for n, d in child_events if n == "run_completed"]
    assert len(child_end) == 1 and child_end[0]["status"] == "completed"
    assert child_end[0]["parentRunId"] == rid and child_end[0]["items"]["completed"] == 3
    assert with_subs[-1][1] == "run_completed" and with_subs[-1][2]["runId"] == rid

    with client(server) as c:
        # a child run's own stream: its events (from the root's journal), ending with its end
        alone = read_all(c, child)
        assert alone == [e for e in with_subs if e[2]["runId"] == child and e[1] != "sub_run_created"]
        assert alone[-1][1] == "run_completed"
        assert read_all(c, child, params={"includeSubRuns": "true"}) == alone  # it has none
        assert read_all(c, child, params={"since": alone[0][0]}) == alone[1:]


def test_events_run_completed_carries_recovery_failed(start_server, tmp_path) -> None:
    server = start_server(BUILTIN_CONFIG, env={"STEPFLOW_GATEWAY_SHUTDOWN_GRACE": "0"})
    with client(server) as c:
        fid = store_flow(c, SEQ_FLOW)
        rid = submit(c, fid, [{"ms": 60000, "tag": "long"}])
        before = read_until(c, rid, lambda evs: any(n == "step_started" for _, n, _ in evs))
    server.stop(signal.SIGTERM)  # the run is left to resume at the next start

    # the next start has no route for /builtin/*: the run cannot resume
    no_route = BUILTIN_CONFIG.replace('"/builtin/{*component}"', '"/other/{*component}"')
    again = start_server(no_route, workdir=tmp_path)
    with client(again) as c:
        deadline = time.monotonic() + 10
        while c.get(f"/runs/{rid}").json()["status"] == "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        events = read_all(c, rid)
    ids_increase(events)
    assert events[: len(before)] == before
    end = events[-1]
    assert end[1] == "run_completed" and end[2]["status"] == "recoveryFailed"
    assert "cannot be resumed" in end[2]["error"]
