"""Step overrides (flow-format.md §12.3): RFC 7396 merge patches applied to serialised steps."""

from __future__ import annotations

from typing import Any

from ..errors import FlowError
from ..flow.load import parse_flow
from ..flow.model import Flow

__all__ = ["apply_overrides", "merge_patch"]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: objects merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _as_step_map(overrides: Any) -> dict[str, Any]:
    steps = overrides.get("steps") if isinstance(overrides, dict) else None
    if isinstance(steps, dict) and len(overrides) == 1:
        return steps
    if isinstance(overrides, dict):
        return overrides
    raise FlowError("overrides must be an object mapping step ids to {value: ...}")


def apply_overrides(flow: Flow, *sources: Any) -> Flow:
    """Apply one or more override sources in order; returns a new flow. Raises ``FlowError`` (400)."""
    doc = flow.to_json()
    steps = doc.get("steps", [])
    by_id = {s["id"]: i for i, s in enumerate(steps)}
    for source in sources:
        for step_id, spec in _as_step_map(source).items():
            if step_id not in by_id:
                raise FlowError(f"Override for unknown step '{step_id}'", step_id=step_id, code=400)
            if not isinstance(spec, dict):
                raise FlowError("an override must be an object {value: ...}", step_id=step_id, code=400)
            kind = spec.get("$type", "merge_patch")
            if kind != "merge_patch":
                raise FlowError(f"Unsupported override type: {kind}", step_id=step_id, code=400)
            value = spec.get("value")
            if isinstance(value, dict) and "skip" in value and "skipIf" not in value:
                value = {**value, "skipIf": value["skip"]}
                value.pop("skip")
            i = by_id[step_id]
            steps[i] = merge_patch(steps[i], value)
    return parse_flow(doc, source=flow.source).flow
