"""The values a run produces: ``FlowResult`` and its error payload.

The same union is used for flow results, step results, ``eval``/``map`` results, the ``runs/*``
protocol results and REST items (flow-format.md §9).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Outcome = Literal["success", "failed", "skipped"]

_NO_DATA: Any = object()


@dataclass(slots=True, frozen=True)
class ResultError:
    """``{code, message, data?}``: why a step or flow failed."""

    code: int
    message: str
    data: Any = _NO_DATA

    @property
    def has_data(self) -> bool:
        return self.data is not _NO_DATA

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not _NO_DATA:
            out["data"] = self.data
        return out

    @classmethod
    def from_json(cls, value: Any) -> ResultError:
        if not isinstance(value, dict):
            return cls(500, f"invalid error payload: {value!r}")
        code = value.get("code", 500)
        message = value.get("message", "")
        if "data" in value:
            return cls(int(code) if isinstance(code, (int, float)) else 500, str(message), value["data"])
        return cls(int(code) if isinstance(code, (int, float)) else 500, str(message))


@dataclass(slots=True, frozen=True)
class FlowResult:
    """One of ``success(result)``, ``failed(error)`` or ``skipped(reason)``."""

    outcome: Outcome
    result: Any = None
    error: ResultError | None = None
    reason: str | None = None

    @staticmethod
    def success(value: Any) -> FlowResult:
        return FlowResult("success", value)

    @staticmethod
    def failed(code: int, message: str, data: Any = _NO_DATA) -> FlowResult:
        return FlowResult("failed", None, ResultError(code, message, data))

    @staticmethod
    def skipped(reason: str | None = None) -> FlowResult:
        return FlowResult("skipped", None, None, reason)

    @property
    def is_success(self) -> bool:
        return self.outcome == "success"

    def to_json(self) -> dict[str, Any]:
        if self.outcome == "success":
            return {"outcome": "success", "result": self.result}
        if self.outcome == "failed":
            assert self.error is not None
            return {"outcome": "failed", "error": self.error.to_json()}
        out: dict[str, Any] = {"outcome": "skipped"}
        if self.reason is not None:
            out["reason"] = self.reason
        return out

    @classmethod
    def from_json(cls, value: Any) -> FlowResult:
        """Parse the wire form. Raises ``ValueError`` for anything that is not a FlowResult."""
        if not isinstance(value, dict) or "outcome" not in value:
            raise ValueError(f"not a FlowResult: {value!r}")
        outcome = value["outcome"]
        if outcome == "success":
            return cls("success", value.get("result"))
        if outcome == "failed":
            return cls("failed", None, ResultError.from_json(value.get("error")))
        if outcome == "skipped":
            reason = value.get("reason")
            return cls("skipped", None, None, reason if isinstance(reason, str) else None)
        raise ValueError(f"unknown outcome {outcome!r}")
