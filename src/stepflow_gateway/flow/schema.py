"""The JSON schema of the flow format (what ``stepflow-gateway schema`` prints).

Describes the wire format of flow-format.md §2–5 including the gateway's documented superset.
It is written by hand, not generated, because the expression language is a recursive union that a
model-derived schema would blur.
"""

from __future__ import annotations

from typing import Any

__all__ = ["flow_json_schema"]


def flow_json_schema() -> dict[str, Any]:
    expr = {"$ref": "#/$defs/Expr"}

    def named_input(extra: dict[str, Any]) -> dict[str, Any]:
        """An example or a test case: a name, an optional description, an input, and ``extra``."""
        properties = {"name": {"type": "string"}, "description": {"type": "string"}, "input": {}}
        return {"type": "object", "properties": properties | extra, "required": ["name", "input"]}

    path = {"type": ["string", "null"], "description": 'A bare key, or a $-path like $.a[0]["b.c"]'}
    backoff = {
        "type": "object",
        "properties": {
            "type": {"enum": ["constant", "exponential", "fibonacci"]},
            "delayMs": {"type": "integer", "minimum": 0},
            "minDelayMs": {"type": "integer", "minimum": 0},
            "maxDelayMs": {"type": "integer", "minimum": 0},
            "factor": {"type": "number", "exclusiveMinimum": 0},
        },
        "required": ["type"],
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://stepflow.org/schemas/v1/flow.json",
        "title": "StepFlow flow",
        "type": "object",
        "properties": {
            "schema": {"const": "https://stepflow.org/schemas/v1/flow.json"},
            "name": {"type": "string"},
            "description": {"type": "string"},
            "version": {"type": "string"},
            "schemas": {
                "type": ["object", "null"],
                "description": "A JSON Schema bundle: $defs and properties.{input,output,variables,steps}",
                "properties": {
                    "$defs": {"type": "object"},
                    "properties": {
                        "type": "object",
                        "properties": {
                            "input": {},
                            "output": {},
                            "variables": {},
                            "steps": {"type": "object", "properties": {"properties": {"type": "object"}}},
                        },
                    },
                },
            },
            "steps": {"type": "array", "items": {"$ref": "#/$defs/Step"}},
            "output": expr,
            "test": {"$ref": "#/$defs/Test"},
            "examples": {"type": "array", "items": named_input({})},
            "metadata": {"type": "object"},
        },
        "$defs": {
            "Step": {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "minLength": 1},
                    "component": {"type": "string", "pattern": "^/"},
                    "input": expr,
                    "onError": {"$ref": "#/$defs/OnError"},
                    "mustExecute": {"type": "boolean"},
                    "skipIf": expr,
                    "skip": expr,
                    "depends_on": {"type": "array", "items": {"type": "string"}},
                    "metadata": {"type": "object"},
                },
                "required": ["id", "component"],
            },
            "OnError": {
                "oneOf": [
                    {"type": "object", "properties": {"action": {"const": "fail"}}, "required": ["action"]},
                    {
                        "type": "object",
                        "properties": {"action": {"const": "useDefault"}, "defaultValue": {}},
                        "required": ["action"],
                    },
                    {
                        "type": "object",
                        "properties": {
                            "action": {"const": "retry"},
                            "maxRetries": {
                                "description": "Retries after component errors (default 3; null = default)",
                                "type": ["integer", "null"],
                                "minimum": 0,
                                "maximum": 4294967295,
                            },
                            "backoff": backoff,
                        },
                        "required": ["action"],
                    },
                ]
            },
            "SkipAction": {
                "type": "object",
                "properties": {"action": {"enum": ["skip", "useDefault"]}, "defaultValue": {}},
                "required": ["action"],
            },
            "Expr": {
                "description": "Any JSON value; objects with a special key are expressions "
                "(first match wins: $literal, $if, $coalesce, $step, $input, $variable, $template, $from).",
                "anyOf": [
                    {"type": "object", "properties": {"$literal": {}}, "required": ["$literal"]},
                    {
                        "type": "object",
                        "properties": {"$if": expr, "then": expr, "else": expr},
                        "required": ["$if", "then"],
                    },
                    {
                        "type": "object",
                        "properties": {"$coalesce": {"type": "array", "items": expr}},
                        "required": ["$coalesce"],
                    },
                    {
                        "type": "object",
                        "properties": {
                            "$step": {"type": "string"},
                            "path": path,
                            "onSkip": {"$ref": "#/$defs/SkipAction"},
                        },
                        "required": ["$step"],
                    },
                    {"type": "object", "properties": {"$input": path}, "required": ["$input"]},
                    {
                        "type": "object",
                        "properties": {"$variable": {"type": "string"}, "default": expr},
                        "required": ["$variable"],
                    },
                    {
                        "type": "object",
                        "properties": {
                            "$template": {"type": "string"},
                            "values": {"type": "object", "additionalProperties": expr},
                        },
                        "required": ["$template"],
                    },
                    {"type": "object", "additionalProperties": expr},
                    {"type": "array", "items": expr},
                    {"type": ["string", "number", "boolean", "null"]},
                ],
            },
            "Test": {
                "type": "object",
                "properties": {
                    "servers": {"type": "object"},
                    "config": {"type": "object"},
                    "cases": {"type": "array", "items": named_input({"output": {"type": "object"}})},
                },
            },
        },
    }
