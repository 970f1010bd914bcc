"""Regression: ``{$template: ..., values: {$literal: "text"}}`` rendered as ``"text"`` (the template
was ignored), and ``values: {$step: a}`` crashed the loader with an ``AssertionError``.

Fixed in ``flow/expr.py``: ``values`` must be an object (or a ``$literal`` object); anything else
is a ``FlowLoadError`` naming the JSON path."""

from __future__ import annotations

import pytest

from stepflow_gateway.errors import FlowLoadError
from stepflow_gateway.flow.load import parse_flow


@pytest.mark.parametrize("values", [{"$literal": "text"}, {"$step": "a"}, {"$input": "x"}])
def test_values_that_are_not_an_object(values: object) -> None:
    with pytest.raises(FlowLoadError) as info:
        parse_flow({"steps": [], "output": {"$template": "{{x}}", "values": values}}, source="f.yaml")
    assert info.value.json_path == "$.output.values"
    assert "f.yaml" in str(info.value)
