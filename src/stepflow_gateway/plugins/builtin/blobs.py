"""``/put_blob`` and ``/get_blob`` (builtins.md §3–4): blobs through the runtime's state store.

The runtime computes blob ids (SHA-256 of the compact JSON of the data as given) and validates
``flow`` blobs; these components only check their input and translate runtime errors into
component errors.
"""

from __future__ import annotations

import re
from typing import Any

from ...core.result import FlowResult
from ...errors import GatewayError
from ..base import ExecutionContext
from ._errors import builtin_error, expect_object, invalid_input, require, require_str

__all__ = ["get_blob", "is_blob_id", "put_blob"]

BLOB_TYPES = ("data", "flow")

is_blob_id = re.compile(r"[0-9a-f]{64}").fullmatch
"""True (a match) for 64 lowercase hex characters: the only blob id form (no ``sha256:`` prefix)."""


def check_blob_id(blob_id: str) -> None:
    """Raise the ``invalid input`` component error unless ``blob_id`` is 64 lowercase hex characters."""
    if not is_blob_id(blob_id):
        raise invalid_input(f"invalid blob ID {blob_id!r}: expected 64 lowercase hex characters")


async def put_blob(input: Any, ctx: ExecutionContext) -> FlowResult:
    """``{data, blob_type: data|flow}`` → ``{blob_id}``."""
    obj = expect_object(input)
    data = require(obj, "data")
    blob_type = require_str(obj, "blob_type")
    if blob_type not in BLOB_TYPES:
        raise invalid_input(f"unknown variant `{blob_type}`, expected `data` or `flow`")
    try:
        blob_id = await ctx.runtime.put_blob(data, blob_type)
    except GatewayError as exc:
        # A ``flow`` blob that does not parse as a flow lands here (the runtime validates it).
        if blob_type == "flow":
            raise invalid_input(f"data is not a valid flow: {exc}") from exc
        raise builtin_error("internal error", f"storing the blob failed: {exc}") from exc
    return FlowResult.success({"blob_id": blob_id})


async def get_blob(input: Any, ctx: ExecutionContext) -> FlowResult:
    """``{blob_id}`` → ``{data}``; an invalid or unknown id is a component error."""
    blob_id = require_str(expect_object(input), "blob_id")
    check_blob_id(blob_id)
    try:
        data, _blob_type = await ctx.runtime.get_blob(blob_id)
    except GatewayError as exc:
        raise builtin_error("internal error", f"blob {blob_id} could not be read: {exc}") from exc
    return FlowResult.success({"data": data})
