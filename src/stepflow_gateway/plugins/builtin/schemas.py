"""Component info of the builtins: description, input and output JSON Schemas (draft 2020-12).

REST ``GET /components`` and ``list-components`` show these. They document the shapes of
builtins.md; execution does not validate against them (each builtin checks its own input).
"""

from __future__ import annotations

import copy
from typing import Any

from ..base import ComponentInfo

__all__ = ["BUILTIN_INFOS", "component_infos"]

_DRAFT = "https://json-schema.org/draft/2020-12/schema"

_FLOW_RESULT: dict[str, Any] = {
    "description": "A FlowResult: success (result), failed (error) or skipped (reason).",
    "type": "object",
    "properties": {
        "outcome": {"type": "string", "enum": ["success", "failed", "skipped"]},
        "result": {"description": "The output (outcome success)."},
        "error": {
            "type": "object",
            "properties": {
                "code": {"description": "An integer, or a TaskErrorCode name", "type": ["integer", "string"]},
                "message": {"type": "string"},
                "data": {},
            },
            "required": ["code", "message"],
        },
        "reason": {"type": "string"},
    },
    "required": ["outcome"],
}

_FLOW: dict[str, Any] = {
    "description": "An inline flow (wrap it in $literal so the calling flow does not evaluate it).",
    "type": "object",
}

_MESSAGE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "role": {"type": "string", "enum": ["system", "user", "assistant"]},
        "content": {"type": "string"},
    },
    "required": ["role", "content"],
}

_BLOB_ID: dict[str, Any] = {
    "description": "A blob id: SHA-256 (64 lowercase hex) of the compact JSON of the data.",
    "type": "string",
    "pattern": "^[0-9a-f]{64}$",
}


_U64: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": 2**64 - 1}


def _obj(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"$schema": _DRAFT, "type": "object", "properties": properties, "required": required}


BUILTIN_INFOS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "/put_blob": (
        "Store JSON data as a blob and return its content-addressable ID",
        _obj(
            {
                "data": {"description": "The JSON data to store"},
                "blob_type": {
                    "description": "The blob type; 'flow' data must be a valid flow",
                    "type": "string",
                    "enum": ["data", "flow"],
                },
            },
            ["data", "blob_type"],
        ),
        _obj({"blob_id": _BLOB_ID}, ["blob_id"]),
    ),
    "/get_blob": (
        "Retrieve JSON data from a blob using its ID",
        _obj({"blob_id": _BLOB_ID}, ["blob_id"]),
        _obj({"data": {"description": "The stored JSON data (a flow comes back normalised)"}}, ["data"]),
    ),
    "/eval": (
        "Execute a stored flow (by blob id) with the given input as a nested run and return its result",
        _obj(
            {
                "flow_id": {**_BLOB_ID, "description": "The blob id of a flow blob"},
                "input": {"description": "The input of the nested run"},
            },
            ["flow_id", "input"],
        ),
        _obj(
            {
                "result": _FLOW_RESULT,
                "run_id": {"description": "The calling run's id", "type": "string"},
            },
            ["result", "run_id"],
        ),
    ),
    "/map": (
        "Apply a flow to each item in a list (one nested batch run) and collect the results",
        _obj(
            {
                "workflow": _FLOW,
                "items": {"description": "One nested run input per item", "type": "array"},
                "max_concurrency": {
                    "description": "Items run at once (default: the number of items)",
                    "type": "integer",
                    "minimum": 0,
                },
            },
            ["workflow", "items"],
        ),
        _obj(
            {
                "results": {"type": "array", "items": _FLOW_RESULT},
                "successful": {"type": "integer", "minimum": 0},
                "failed": {"type": "integer", "minimum": 0},
                "skipped": {
                    "description": "Present only when some result was skipped",
                    "type": "integer",
                    "minimum": 0,
                },
            },
            ["results", "successful", "failed"],
        ),
    ),
    "/iterate": (
        "Iteratively apply a flow until it returns a result instead of next",
        _obj(
            {
                "flow": {**_FLOW, "description": "The flow to iterate; it must return {result} or {next}"},
                "initial_input": {"description": "The input of the first iteration"},
                "max_iterations": {
                    "description": "Stop (terminated: true) after this many iterations",
                    "type": "integer",
                    "minimum": 0,
                    "default": 1000,
                },
            },
            ["flow", "initial_input"],
        ),
        _obj(
            {
                "result": {"description": "The final result (or the last input when terminated)"},
                "iterations": {"type": "integer", "minimum": 0},
                "terminated": {"description": "Whether max_iterations stopped the loop", "type": "boolean"},
            },
            ["result", "iterations", "terminated"],
        ),
    ),
    "/load_file": (
        "Load and parse a file (JSON, YAML, or text) from the filesystem",
        _obj(
            {
                "path": {"description": "File path, relative to the working directory", "type": "string"},
                "format": {
                    "description": "File format; inferred from the extension when absent",
                    "type": ["string", "null"],
                    "enum": ["json", "yaml", "text", None],
                },
            },
            ["path"],
        ),
        _obj(
            {
                "data": {"description": "The parsed JSON/YAML or the raw text"},
                "metadata": {
                    "type": "object",
                    "properties": {
                        "resolved_path": {"type": "string"},
                        "size_bytes": {"type": "integer", "minimum": 0},
                        "format": {"type": "string", "enum": ["json", "yaml", "text"]},
                    },
                    "required": ["resolved_path", "size_bytes", "format"],
                },
            },
            ["data", "metadata"],
        ),
    ),
    "/create_messages": (
        "Create a chat message list from system instructions and user prompt",
        _obj(
            {
                "system_instructions": {
                    "description": "The system instructions to include in the message list",
                    "type": ["string", "null"],
                },
                "user_prompt": {
                    "description": "The user prompt to include in the message list",
                    "type": "string",
                },
            },
            ["user_prompt"],
        ),
        _obj({"messages": {"type": "array", "items": _MESSAGE}}, ["messages"]),
    ),
    "/openai": (
        "Send messages to an OpenAI-compatible chat completion API and get a response",
        _obj(
            {
                "messages": {"type": "array", "items": _MESSAGE},
                "max_tokens": {"description": "Max tokens to generate", "type": "integer", "minimum": 0},
                "temperature": {"description": "Sampling temperature", "type": "number"},
                "api_key": {"description": "API key (default: $OPENAI_API_KEY)", "type": "string"},
                "model": {"description": "Model name (default: gpt-3.5-turbo)", "type": "string"},
            },
            ["messages"],
        ),
        _obj({"response": {"description": "The generated text", "type": "string"}}, ["response"]),
    ),
    "/noop": (
        "No-op component that returns its input unchanged",
        {"$schema": _DRAFT, "description": "Any JSON value"},
        {"$schema": _DRAFT, "description": "The input, unchanged"},
    ),
    "/sleep": (
        "Sleep for duration_ms milliseconds, then return the duration and the passthrough data",
        _obj(
            {
                "duration_ms": {
                    "description": "Duration to sleep in milliseconds",
                    **_U64,
                },
                "passthrough": {"description": "Optional data to pass through unchanged"},
            },
            ["duration_ms"],
        ),
        _obj(
            {
                "duration_ms": {"description": "The duration that was slept, in milliseconds", **_U64},
                "passthrough": {"description": "The passthrough data (absent when none, or null, was given)"},
            },
            ["duration_ms"],
        ),
    ),
}
"""Plugin-local name → (description, input schema, output schema)."""


def component_infos() -> list[ComponentInfo]:
    """Fresh ``ComponentInfo`` objects (schemas copied) for the builtins: the eight of builtins.md in
    its order, then upstream HEAD's ``/noop`` and ``/sleep``."""
    return [
        ComponentInfo(name, desc, copy.deepcopy(ins), copy.deepcopy(outs))
        for name, (desc, ins, outs) in BUILTIN_INFOS.items()
    ]
