"""REST request bodies (rest-api.md §1–2): reading, JSON decoding and the shapes of ``POST /flows`` and
``POST /runs``.

The body rules: a body over the size limit → 413, malformed JSON → 400, the wrong shape → 422 with
upstream's sentence ("Failed to deserialize the JSON body into the target type: …").

The shape is checked in two tiers so that a server which only stores and runs flows never imports
pydantic (~130 ms):

* the *plain shape* (every field of exactly the JSON type the model declares, under its camelCase
  name, values in range) is accepted here with a few ``type(...) is`` checks;
* anything else (a missing or mistyped field, a snake_case field name, a value pydantic would
  coerce such as ``"wait": "true"``) goes through the pydantic model in ``models.py``, which either
  accepts it the way it always has or words the 422. So both tiers accept and reject exactly what
  the model does, with the model's messages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from .errors import ApiError

__all__ = [
    "CreateRunBody",
    "StoreFlowBody",
    "create_run_body",
    "create_run_from",
    "decode_json",
    "plain_create_run",
    "read_body",
    "store_flow_body",
    "store_flow_from",
]


@dataclass(slots=True)
class StoreFlowBody:
    """``POST /flows``: the flow, and whether to validate only."""

    flow: dict[str, Any]
    dry_run: bool = False


@dataclass(slots=True)
class CreateRunBody:
    """``POST /runs``."""

    flow_id: str
    input: list[Any]
    variables: dict[str, Any] | None = None
    overrides: dict[str, Any] | None = None
    max_concurrency: int | None = None
    wait: bool = True
    timeout_secs: int | None = None
    """upstream HEAD's ``timeoutSecs``: with ``wait``, answer after this long even if the run is still
    going (``status: running``, no result; the run is not cancelled). ``None``: wait for the end."""


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes (413) whatever Content-Length says."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"Request body is too large: {declared} bytes (limit {limit} bytes)")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"Request body is too large: more than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_json(raw: bytes) -> Any:
    """The JSON value of a body (stdlib decoder: exact integers, ``NaN``/``Infinity`` refused), or 400."""
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"Failed to parse the request body as JSON: {exc}") from None


async def store_flow_body(request: Request, limit: int) -> StoreFlowBody:
    """The body of ``POST /flows`` (413, 400 or 422 as the module docstring says)."""
    return store_flow_from(decode_json(await read_body(request, limit)))


def store_flow_from(value: Any) -> StoreFlowBody:
    """A decoded ``POST /flows`` body as ``StoreFlowBody``, or a 422."""
    if type(value) is dict and "dry_run" not in value:
        flow = value.get("flow")
        dry_run = value.get("dryRun", False)
        if type(flow) is dict and type(dry_run) is bool:
            return StoreFlowBody(flow, dry_run)
    from .models import StoreFlowRequest, validate_body

    model = validate_body(StoreFlowRequest, value)
    return StoreFlowBody(model.flow, model.dry_run)


_RUN_SNAKE_NAMES = ("flow_id", "max_concurrency", "timeout_secs")
"""Field names the model also accepts (``populate_by_name``): left to the model to arbitrate."""


async def create_run_body(request: Request, limit: int) -> CreateRunBody:
    """The body of ``POST /runs`` (413, 400 or 422 as the module docstring says)."""
    return create_run_from(decode_json(await read_body(request, limit)))


U64_MAX = 2**64 - 1

NOT_PLAIN: Any = object()
"""What ``plain_timeout_secs`` answers for a value it leaves to the model."""


def plain_timeout_secs(value: Any) -> int | None:
    """``timeoutSecs`` of the plain shape: ``None`` (absent or ``null``), an integer in ``0..2**64-1``,
    or, as upstream's protobuf JSON writes a uint64, a string of 1 to 20 ASCII digits in that range.
    ``NOT_PLAIN`` for anything else (the model decides)."""
    if value is None:
        return None
    seconds: int
    if type(value) is str:
        if not (0 < len(value) <= 20 and value.isascii() and value.isdigit()):
            return NOT_PLAIN  # type: ignore[no-any-return]
        seconds = int(value)
    elif type(value) is int:
        seconds = value
    else:
        return NOT_PLAIN  # type: ignore[no-any-return]
    return seconds if 0 <= seconds <= U64_MAX else NOT_PLAIN


def plain_create_run(value: Any) -> CreateRunBody | None:
    """A decoded ``POST /runs`` body of the plain shape as ``CreateRunBody``, else ``None`` (no pydantic:
    the raw fast path uses this too, and hands anything else to the full handler)."""
    if type(value) is not dict or any(k in value for k in _RUN_SNAKE_NAMES):
        return None
    flow_id = value.get("flowId")
    inputs = value.get("input")
    variables = value.get("variables")
    overrides = value.get("overrides")
    cap = value.get("maxConcurrency")
    wait = value.get("wait", True)
    timeout = plain_timeout_secs(value.get("timeoutSecs"))
    if (
        type(flow_id) is str
        and type(inputs) is list
        and (variables is None or type(variables) is dict)
        and (overrides is None or type(overrides) is dict)
        and (cap is None or (type(cap) is int and cap >= 1))
        and type(wait) is bool
        and timeout is not NOT_PLAIN
    ):
        return CreateRunBody(flow_id, inputs, variables, overrides, cap, wait, timeout)
    return None


def create_run_from(value: Any) -> CreateRunBody:
    """A decoded ``POST /runs`` body as ``CreateRunBody``, or a 422."""
    plain = plain_create_run(value)
    if plain is not None:
        return plain
    from .models import CreateRunRequest, validate_body

    model = validate_body(CreateRunRequest, value)
    return CreateRunBody(
        model.flow_id,
        model.input,
        model.variables,
        model.overrides,
        model.max_concurrency,
        model.wait,
        model.timeout_secs,
    )
