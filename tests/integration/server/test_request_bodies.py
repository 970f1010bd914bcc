"""``POST /flows`` and ``POST /runs`` bodies: the plain tier (no pydantic) and the model agree.

In process, every body is read both ways, by ``request_bodies`` (plain tier, falling back to the
model) and by the pydantic model alone, and must give the same value or the same 422. Through a real
server, bodies of unusual shapes get the model's exact messages (as worded before the tiers
existed) and values pydantic coerces are still accepted; a plain body does not load pydantic, an
unusual one does.
"""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from stepflow_gateway.server.errors import ApiError
from stepflow_gateway.server.models import CreateRunRequest, StoreFlowRequest, validate_body
from stepflow_gateway.server.request_bodies import (
    CreateRunBody,
    StoreFlowBody,
    create_run_from,
    decode_json,
    store_flow_from,
)

from .conftest import ServerProcess
from .test_cold_start import pydantic_mapped

FLOW = {"steps": [], "output": {"$input": "$"}}
PREFIX = "Failed to deserialize the JSON body into the target type: "

STORE_BODIES: list[Any] = [
    {"flow": FLOW},
    {"flow": FLOW, "dryRun": True},
    {"flow": FLOW, "dryRun": False, "extra": 1},
    {"flow": FLOW, "dryRun": "yes"},
    {"flow": FLOW, "dryRun": "maybe"},
    {"flow": FLOW, "dryRun": None},
    {"flow": FLOW, "dryRun": 1},
    {"flow": FLOW, "dry_run": True},
    {"flow": FLOW, "dry_run": True, "dryRun": False},
    {"flow": []},
    {"flow": None},
    {"nope": 1},
    [],
    "flow",
    None,
]
RUN_BODIES: list[Any] = [
    {"flowId": "f", "input": []},
    {"flowId": "f", "input": [1], "wait": False},
    {"flowId": "f", "input": [1], "variables": {"a": 1}, "overrides": {"steps": {}}, "maxConcurrency": 3},
    {"flowId": "f", "input": [1], "variables": None, "overrides": None, "maxConcurrency": None},
    {"flowId": "f", "input": [1], "maxConcurrency": 0},
    {"flowId": "f", "input": [1], "maxConcurrency": -5},
    {"flowId": "f", "input": [1], "maxConcurrency": True},
    {"flowId": "f", "input": [1], "maxConcurrency": 2.0},
    {"flowId": "f", "input": [1], "maxConcurrency": 2.5},
    {"flowId": "f", "input": [1], "maxConcurrency": "2"},
    {"flowId": "f", "input": [1], "maxConcurrency": 10**30},
    {"flowId": "f", "input": [1], "max_concurrency": 2},
    {"flow_id": "f", "input": [1]},
    {"flow_id": "g", "flowId": "f", "input": [1]},
    {"flowId": "f", "input": [1], "variables": []},
    {"flowId": "f", "input": [1], "overrides": "x"},
    {"flowId": "f", "input": [1], "wait": "false"},
    {"flowId": "f", "input": [1], "wait": None},
    {"flowId": "f", "input": [1], "timeoutSecs": 30},
    {"flowId": "f", "input": [1], "timeoutSecs": 0},
    {"flowId": "f", "input": [1], "timeoutSecs": "30"},
    {"flowId": "f", "input": [1], "timeoutSecs": "007"},
    {"flowId": "f", "input": [1], "timeoutSecs": "18446744073709551615"},
    {"flowId": "f", "input": [1], "timeoutSecs": "18446744073709551616"},
    {"flowId": "f", "input": [1], "timeoutSecs": 2**64},
    {"flowId": "f", "input": [1], "timeoutSecs": None},
    {"flowId": "f", "input": [1], "timeoutSecs": -1},
    {"flowId": "f", "input": [1], "timeoutSecs": "-1"},
    {"flowId": "f", "input": [1], "timeoutSecs": " 30"},
    {"flowId": "f", "input": [1], "timeoutSecs": "+5"},
    {"flowId": "f", "input": [1], "timeoutSecs": "30.0"},
    {"flowId": "f", "input": [1], "timeoutSecs": 30.0},
    {"flowId": "f", "input": [1], "timeoutSecs": 1.5},
    {"flowId": "f", "input": [1], "timeoutSecs": True},
    {"flowId": "f", "input": [1], "timeoutSecs": ""},
    {"flowId": "f", "input": [1], "timeoutSecs": "soon"},
    {"flowId": "f", "input": [1], "timeoutSecs": "٣"},
    {"flowId": "f", "input": [1], "timeoutSecs": "1" * 30},
    {"flowId": "f", "input": [1], "timeoutSecs": [1]},
    {"flowId": "f", "input": [1], "timeout_secs": 5},
    {"flowId": "f", "input": [1], "wait": False, "timeoutSecs": 5},
    {"flowId": "f", "input": {"a": 1}},
    {"flowId": "f", "input": (1,)},
    {"flowId": 5, "input": []},
    {"input": []},
    {"flowId": "f"},
    [],
    None,
]


def _outcome(fn: Any) -> Any:
    try:
        return fn()
    except ApiError as exc:
        return ("error", exc.status, exc.message)


@pytest.mark.parametrize("body", STORE_BODIES, ids=repr)
def test_store_flow_tiers_agree_with_the_model(body: Any) -> None:
    def by_model() -> StoreFlowBody:
        m = validate_body(StoreFlowRequest, body)
        return StoreFlowBody(m.flow, m.dry_run)

    assert _outcome(lambda: store_flow_from(body)) == _outcome(by_model)


@pytest.mark.parametrize("body", RUN_BODIES, ids=repr)
def test_create_run_tiers_agree_with_the_model(body: Any) -> None:
    def by_model() -> CreateRunBody:
        m = validate_body(CreateRunRequest, body)
        return CreateRunBody(
            m.flow_id, m.input, m.variables, m.overrides, m.max_concurrency, m.wait, m.timeout_secs
        )

    assert _outcome(lambda: create_run_from(body)) == _outcome(by_model)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            b"{not json",
            "Failed to parse the request body as JSON: Expecting property name enclosed in double",
        ),
        (b'{"flow": NaN}', "Failed to parse the request body as JSON: NaN is not valid JSON"),
    ],
)
def test_malformed_json_is_a_400(raw: bytes, message: str) -> None:
    with pytest.raises(ApiError) as info:
        decode_json(raw)
    assert info.value.status == 400 and info.value.message.startswith(message)


def test_big_integers_stay_exact() -> None:
    body = store_flow_from(decode_json(b'{"flow": {"output": {"$literal": 123456789012345678901234567890}}}'))
    assert body.flow["output"]["$literal"] == 123456789012345678901234567890


def _error(r: httpx2.Response, status: int) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == status
    return str(body["message"])


def test_messages_through_the_server(start_server) -> None:
    server: ServerProcess = start_server()
    with httpx2.Client(base_url=server.api, timeout=30.0) as c:
        fid = c.post("/flows", json={"flow": FLOW}).json()["flowId"]
        ok = c.post("/runs", json={"flowId": fid, "input": [1], "variables": {}, "maxConcurrency": 2}).json()
        assert ok["status"] == "completed" and ok["result"] == {"outcome": "success", "result": 1}
        assert not pydantic_mapped(server)

        # unusual shapes: the model's exact words
        assert _error(c.post("/flows", json=[]), 422) == (
            PREFIX + "body: Input should be a valid dictionary or instance of StoreFlowRequest"
        )
        assert pydantic_mapped(server)
        assert (
            _error(c.post("/flows", json={"flow": []}), 422)
            == PREFIX + "flow: Input should be a valid dictionary"
        )
        assert _error(c.post("/flows", json={"flow": FLOW, "dryRun": "maybe"}), 422).startswith(
            PREFIX + "dryRun: Input should be a valid boolean"
        )
        assert _error(c.post("/runs", json={"flowId": fid, "input": [1], "maxConcurrency": 0}), 422) == (
            PREFIX + "maxConcurrency: Input should be greater than or equal to 1"
        )
        assert _error(c.post("/runs", json={"flowId": fid, "input": [1], "variables": []}), 422) == (
            PREFIX + "variables: Input should be a valid dictionary"
        )
        assert _error(c.post("/runs", json={"flowId": 5, "input": []}), 422) == (
            PREFIX + "flowId: Input should be a valid string"
        )
        assert _error(c.post("/runs", json={"input": []}), 422) == PREFIX + "flowId: Field required"

        # values pydantic coerces, and snake_case names, are still accepted
        dry = c.post("/flows", json={"flow": FLOW, "dryRun": "yes"}).json()
        assert dry["stored"] is False
        snake = c.post("/flows", json={"flow": FLOW, "dry_run": True}).json()
        assert snake["stored"] is False
        by_name = c.post("/runs", json={"flow_id": fid, "input": [2], "max_concurrency": True}).json()
        assert by_name["result"] == {"outcome": "success", "result": 2}
        no_wait = c.post("/runs", json={"flowId": fid, "input": [3], "wait": "false", "variables": {}}).json()
        assert no_wait["status"] == "running" and "result" not in no_wait
