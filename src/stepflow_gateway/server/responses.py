"""REST response bodies (rest-api.md §2) built as plain dicts: runs, items, steps and their statistics.

These builders are on the path of every request and need no validation, so this module imports
no pydantic (a server that only stores flows and runs them never loads it). The pydantic models
describing the same bodies, for the OpenAPI document, are in ``models.py``.
"""

from __future__ import annotations

from typing import Any

from ..core.result import FlowResult
from ..state.base import ItemRecord, RunRecord, StepRecord

__all__ = [
    "EXECUTION_STATUSES",
    "item_json",
    "item_record_json",
    "item_stats",
    "item_status",
    "run_details",
    "run_summary",
    "step_json",
    "step_record_json",
]

EXECUTION_STATUSES = ("running", "completed", "failed", "cancelled", "paused")


def item_stats(total: int, statuses: list[str]) -> dict[str, int]:
    """``ItemStatistics``: items not yet finished count as running."""
    completed = statuses.count("completed")
    failed = statuses.count("failed")
    cancelled = statuses.count("cancelled")
    return {
        "total": total,
        "completed": completed,
        "running": max(0, total - completed - failed - cancelled),
        "failed": failed,
        "cancelled": cancelled,
    }


def run_summary(rec: RunRecord, item_statuses: list[str] | None = None) -> dict[str, Any]:
    """``RunSummary``; ``item_statuses`` overrides the stored items (live runs)."""
    statuses = item_statuses if item_statuses is not None else [i.status for i in rec.items]
    out: dict[str, Any] = {"runId": rec.run_id, "flowId": rec.flow_id}
    if rec.flow_name is not None:
        out["flowName"] = rec.flow_name
    out["status"] = rec.status
    out["items"] = item_stats(len(rec.inputs), statuses)
    out["createdAt"] = rec.created_at
    if rec.completed_at is not None:
        out["completedAt"] = rec.completed_at
    out["rootRunId"] = rec.root_run_id or rec.run_id
    if rec.parent_run_id is not None:
        out["parentRunId"] = rec.parent_run_id
    return out


def run_details(rec: RunRecord, item_statuses: list[str] | None = None) -> dict[str, Any]:
    """``RunDetails``: the summary plus inputs, overrides and variables."""
    out = run_summary(rec, item_statuses)
    out["inputs"] = rec.inputs
    if rec.overrides is not None:
        out["overrides"] = rec.overrides
    if rec.variables is not None:
        out["variables"] = rec.variables
    return out


def item_status(result: FlowResult | None) -> str:
    """The status of an item with this result so far (``None``: still running)."""
    if result is None:
        return "running"
    return "failed" if result.outcome == "failed" else "completed"


def item_json(index: int, status: str, result: FlowResult | None, completed_at: str | None) -> dict[str, Any]:
    """``ItemResult``."""
    out: dict[str, Any] = {"itemIndex": index, "status": status}
    if result is not None:
        out["result"] = result.to_json()
    if completed_at is not None:
        out["completedAt"] = completed_at
    return out


def item_record_json(item: ItemRecord) -> dict[str, Any]:
    return item_json(item.item_index, item.status, item.result, item.completed_at)


def step_json(
    step_id: str, step_index: int, component: str, status: str, result: FlowResult | None, attempt: int = 0
) -> dict[str, Any]:
    """``StepRunResponse`` plus ``stepIndex`` (as at commit 2e155519), and ``attempts`` when the
    step was tried more than once (retries, or a re-run after a crash)."""
    out: dict[str, Any] = {
        "stepId": step_id,
        "stepIndex": step_index,
        "component": component,
        "status": status,
    }
    if result is not None:
        out["result"] = result.to_json()
    if attempt > 1:
        out["attempts"] = attempt
    return out


def step_record_json(rec: StepRecord) -> dict[str, Any]:
    return step_json(rec.step_id, rec.step_index, rec.component, rec.status, rec.result, rec.attempt)
