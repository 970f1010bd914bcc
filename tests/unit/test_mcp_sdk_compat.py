"""``plugins/mcp/_sdk_compat.py`` pinned against the installed mcp SDK.

The module rewrites, from public API, what the SDK's ``ClientSession`` does to a raw
``tools/call`` result (its helpers for that are private). Each step is compared here with the
SDK's own private helper, and the whole with ``ClientSession.call_tool`` run over a canned
dispatcher, for every handshake-era protocol version: an SDK release that renames, moves or
changes any of it fails here.
"""

from __future__ import annotations

import copy
from typing import Any

import mcp.client.session as sdk_session
import pytest
from mcp.client.session import ClientSession
from mcp.types import Implementation, InitializeResult, ServerCapabilities
from mcp_types.methods import SERVER_RESULTS
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, KNOWN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from stepflow_gateway.plugins.mcp._sdk_compat import (
    CALL_TOOL_RESULT,
    check_call_result,
    clamp_inbound_ttl,
    later_revision_fields,
)

pytestmark = pytest.mark.anyio

TEXT = [{"type": "text", "text": "hi"}]
RAW_RESULTS: dict[str, dict[str, Any]] = {
    "plain": {"content": TEXT},
    "is_error": {"content": TEXT, "isError": True},
    "structured": {"content": TEXT, "structuredContent": {"a": 1}},
    "structured_null": {"content": TEXT, "structuredContent": None},
    "extra_keys": {"content": TEXT, "foo": 1, "_meta": {"k": 1}},
    "later_revision": {"content": TEXT, "resultType": "complete", "ttlMs": -5, "cacheScope": "private"},
    "ttl_only": {"content": TEXT, "ttlMs": -1.5},
    "ttl_bool": {"content": TEXT, "ttlMs": True},
    "input_required": {"resultType": "input_required", "inputRequests": {}},
    "malformed_content": {"content": "nope"},
    "no_content": {},
    "is_error_string": {"content": [], "isError": "yes"},
    "text_not_string": {"content": [{"type": "text", "text": 5}]},
    "image": {"content": [{"type": "image", "data": "aGk=", "mimeType": "image/png"}]},
    "snake_case_key": {"content": TEXT, "is_error": True},
    # a later revision's keys on a handshake-era session: dropped before parsing
    "later_input_required": {"content": TEXT, "resultType": "input_required", "inputRequests": {}},
    "later_request_state": {"content": TEXT, "requestState": "s"},
    # refused by the negotiated revision's own check, accepted by the version-free type
    "structured_list": {"content": TEXT, "structuredContent": [1]},
    "structured_string": {"content": TEXT, "structuredContent": "s"},
    "audio": {"content": [{"type": "audio", "data": "aGk=", "mimeType": "audio/wav"}]},
    "resource_link": {"content": [{"type": "resource_link", "uri": "file:///x", "name": "x"}]},
    "is_error_null": {"content": TEXT, "isError": None},
}


def test_later_revision_fields_match_the_sdk() -> None:
    methods = {method for method, _version in SERVER_RESULTS}
    versions = [*KNOWN_PROTOCOL_VERSIONS, "1999-01-01"]
    for method in [*sorted(methods), "no/such/method"]:
        for version in versions:
            expected = sdk_session._later_revision_fields(method, version)
            assert later_revision_fields(method, version) == expected, (method, version)
    # the interesting cases are really there: 2026-07-28 keys on a handshake-era session
    assert {"resultType", "inputRequests"} <= later_revision_fields("tools/call", "2025-11-25")
    assert {"ttlMs", "cacheScope"} <= later_revision_fields("tools/list", "2025-11-25")
    assert later_revision_fields("tools/call", KNOWN_PROTOCOL_VERSIONS[-1]) == frozenset()


@pytest.mark.parametrize("ttl", [-5, -1.5, -0.0, 0, 3, 2.5, True, False, None, "-1", [-1]])
def test_clamp_inbound_ttl_matches_the_sdk(ttl: Any) -> None:
    ours, theirs = {"ttlMs": ttl, "x": 1}, {"ttlMs": ttl, "x": 1}
    clamp_inbound_ttl(ours)
    sdk_session._clamp_inbound_ttl(theirs)
    assert ours == theirs and type(ours["ttlMs"]) is type(theirs["ttlMs"])
    absent: dict[str, Any] = {}
    clamp_inbound_ttl(absent)
    assert absent == {}


class _Canned:
    """A ``Dispatcher`` answering ``tools/call`` with one raw result (and ``tools/list`` for the
    session's own output-schema check)."""

    def __init__(self, result: dict[str, Any]) -> None:
        self.result = result

    async def send_raw_request(self, method: str, params: Any, opts: Any = None) -> dict[str, Any]:
        if method == "tools/list":
            return {"tools": [{"name": "t", "inputSchema": {"type": "object"}}]}
        assert method == "tools/call"
        return copy.deepcopy(self.result)

    async def notify(self, method: str, params: Any, opts: Any = None) -> None:
        pass


def _session(version: str, raw: dict[str, Any]) -> ClientSession:
    session = ClientSession(dispatcher=_Canned(raw))  # type: ignore[arg-type]
    session.adopt(
        InitializeResult(
            protocol_version=version,
            capabilities=ServerCapabilities(),
            server_info=Implementation(name="canned", version="1"),
        )
    )
    return session


@pytest.mark.parametrize("version", HANDSHAKE_PROTOCOL_VERSIONS)
def test_the_adapter_is_the_sessions(version: str) -> None:
    session = _session(version, {})
    assert CALL_TOOL_RESULT.core_schema == session._call_tool_adapter.core_schema


def _outcome(run: Any) -> tuple[str, Any]:
    try:
        result = run()
    except (ValidationError, RuntimeError) as exc:
        return type(exc).__name__, None
    return type(result).__name__, result.model_dump(by_alias=True)


@pytest.mark.parametrize("version", HANDSHAKE_PROTOCOL_VERSIONS)
@pytest.mark.parametrize("name", sorted(RAW_RESULTS))
async def test_check_call_result_is_what_call_tool_returns(version: str, name: str) -> None:
    raw = RAW_RESULTS[name]
    try:
        sdk_result = await _session(version, raw).call_tool("t", {})
    except (ValidationError, RuntimeError) as exc:
        expected: tuple[str, Any] = (type(exc).__name__, None)
    else:
        expected = (type(sdk_result).__name__, sdk_result.model_dump(by_alias=True))
    assert _outcome(lambda: check_call_result(copy.deepcopy(raw), version)) == expected
