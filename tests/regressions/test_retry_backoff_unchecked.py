"""Regression: ``onError.backoff`` was not checked when a flow loaded, so ``{type: linear}`` or a
string ``delayMs`` was silently replaced by the fibonacci default (or failed mid-run).

Fixed in ``flow/load.py``: the backoff is checked against the config's backoff shapes
(config.md §6); a bad type or value is a ``FlowLoadError`` naming the JSON path, an unknown key a
warning."""

from __future__ import annotations

import pytest

from stepflow_gateway.errors import FlowLoadError
from stepflow_gateway.flow.load import parse_flow


def _flow(backoff: object) -> dict[str, object]:
    return {"steps": [{"id": "s", "component": "/x", "onError": {"action": "retry", "backoff": backoff}}]}


def test_unknown_backoff_type_is_a_load_error() -> None:
    with pytest.raises(FlowLoadError) as info:
        parse_flow(_flow({"type": "linear", "delayMs": 5}), source="f.yaml")
    assert info.value.json_path == "$.steps[0].onError.backoff.type"
    assert "f.yaml" in str(info.value) and "step 's'" in str(info.value)


def test_bad_backoff_value_names_its_key() -> None:
    with pytest.raises(FlowLoadError) as info:
        parse_flow(_flow({"type": "exponential", "minDelayMs": "soon"}))
    assert info.value.json_path == "$.steps[0].onError.backoff.minDelayMs"


def test_valid_backoffs_load_and_round_trip() -> None:
    for backoff in (
        {"type": "constant", "delayMs": 5},
        {"type": "exponential", "minDelayMs": 1, "maxDelayMs": 9, "factor": 3},
        {"type": "fibonacci"},
    ):
        loaded = parse_flow(_flow(backoff))
        assert loaded.diagnostics == []
        assert loaded.flow.to_json()["steps"][0]["onError"]["backoff"] == backoff


def test_unknown_backoff_key_is_a_warning() -> None:
    loaded = parse_flow(_flow({"type": "constant", "delayMs": 5, "jitter": True}))
    assert [(d.kind, d.path) for d in loaded.diagnostics] == [
        ("unknownField", "$.steps[0].onError.backoff.jitter")
    ]
