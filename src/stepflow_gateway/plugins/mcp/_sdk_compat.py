"""What the mcp SDK's ``ClientSession`` does to a raw ``tools/call`` result, for the direct path.

The direct path (``_direct.py``) receives the raw ``result`` object of a response and must turn it
into the ``CallToolResult`` the SDK's ``call_tool`` would have returned, with the same failures.
The SDK keeps those steps private (``mcp.client.session``), so they are written here, from public
API only (``mcp.types``, ``mcp_types.methods``, ``mcp_types.version``, pydantic):

1. a negative ``ttlMs`` is floored to 0 (2026-07-28 caching: a client SHOULD);
2. ``mcp_types.methods.validate_server_result`` checks the result against the negotiated
   revision (a method that revision does not define is left to step 4);
3. keys that only a *later* revision declares for the method are dropped: the version-free
   result types carry every revision's fields, and such a key is outside the negotiated
   contract (``later_revision_fields``);
4. the result is validated as ``CallToolResult | InputRequiredResult`` (``CALL_TOOL_RESULT``),
   by alias. This is the adapter a session uses for every protocol version of the handshake era,
   the only era the direct path serves: extension result claims are only ever active in the modern
   era (and the gateway registers none).

``tests/unit/test_mcp_sdk_compat.py`` pins each step against the installed SDK (its private
helpers, and ``ClientSession.call_tool`` itself end to end), so an SDK release that changes any of
them fails there.
"""

from __future__ import annotations

from functools import cache
from types import UnionType
from typing import Any, get_args

from mcp.types import CallToolResult, InputRequiredResult
from mcp_types.methods import SERVER_RESULTS, validate_server_result
from mcp_types.version import KNOWN_PROTOCOL_VERSIONS
from pydantic import BaseModel, TypeAdapter

__all__ = ["CALL_TOOL_RESULT", "check_call_result", "clamp_inbound_ttl", "later_revision_fields"]

CALL_TOOL_RESULT: TypeAdapter[CallToolResult | InputRequiredResult] = TypeAdapter(
    CallToolResult | InputRequiredResult
)
"""How a handshake-era session parses ``tools/call`` results (step 4)."""


def clamp_inbound_ttl(raw: dict[str, Any]) -> None:
    """Step 1, in place: a negative numeric ``ttlMs`` (booleans are not numbers here) becomes 0."""
    ttl = raw.get("ttlMs")
    if isinstance(ttl, int | float) and not isinstance(ttl, bool) and ttl < 0:
        raw["ttlMs"] = 0


def _keys(row: Any) -> frozenset[str]:
    """The top-level wire keys of a result row: a model's field aliases (names where none), or
    those of every model in a ``X | Y`` union; nothing for anything else."""
    members = get_args(row) if isinstance(row, UnionType) else (row,)
    return frozenset(
        field.alias or name
        for model in members
        if isinstance(model, type) and issubclass(model, BaseModel)
        for name, field in model.model_fields.items()
    )


@cache
def later_revision_fields(method: str, version: str) -> frozenset[str]:
    """Step 3: result keys of ``method`` declared by some revision after ``version`` but not by
    ``version`` itself; empty for an unknown version, a method ``version`` lacks, or the newest."""
    row = SERVER_RESULTS.get((method, version))
    if row is None or version not in KNOWN_PROTOCOL_VERSIONS:
        return frozenset()
    after = KNOWN_PROTOCOL_VERSIONS[KNOWN_PROTOCOL_VERSIONS.index(version) + 1 :]
    declared_later: set[str] = set()
    for revision in after:
        later_row = SERVER_RESULTS.get((method, revision))
        if later_row is not None:
            declared_later |= _keys(later_row)
    return frozenset(declared_later) - _keys(row)


def check_call_result(raw: dict[str, Any], version: str) -> CallToolResult:
    """Steps 1-4 on a raw ``tools/call`` result (``raw`` may be modified).

    Raises:
        pydantic.ValidationError: the result does not conform to the negotiated version.
        RuntimeError: the result parsed as something other than a ``CallToolResult``.
    """
    clamp_inbound_ttl(raw)
    try:
        validate_server_result("tools/call", version, raw)
    except KeyError:
        pass
    foreign = later_revision_fields("tools/call", version)
    if not foreign.isdisjoint(raw):
        raw = {key: value for key, value in raw.items() if key not in foreign}
    result = CALL_TOOL_RESULT.validate_python(raw, by_name=False)
    if not isinstance(result, CallToolResult):
        raise RuntimeError(f"tools/call returned a {type(result).__name__}, not a CallToolResult")
    return result
