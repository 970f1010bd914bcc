"""The values a run produces: ``FlowResult`` and its error payload.

The same union is used for flow results, step results, ``eval``/``map`` results, the ``runs/*``
protocol results and REST items (flow-format.md §9).

An error ``code`` is an integer (0.9.0-era flows, configs and components: ``500``, ``400``, …) or,
as upstream HEAD writes them, a string naming a ``TaskErrorCode`` (``COMPONENT_FAILED``, …; upstream
issue #773). Both kinds are passed through unchanged in every direction: read, stored, answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Outcome = Literal["success", "failed", "skipped"]

ErrorCode = int | str
"""An integer code, or one of upstream HEAD's ``TaskErrorCode`` names (any string is kept)."""

NOT_RETRIED_CODES = frozenset(
    {
        "UNSPECIFIED",
        "TIMEOUT",
        "INVALID_INPUT",
        "CANCELLED",
        "UNREACHABLE",
        "COMPONENT_NOT_FOUND",
        "EXPRESSION_FAILURE",
        "ORCHESTRATOR_ERROR",
        "WORKER_ERROR",
    }
)
"""The ``TaskErrorCode`` names that ``onError: retry`` never retries (upstream HEAD's classification):
only ``COMPONENT_FAILED`` and ``RESOURCE_UNAVAILABLE`` count against ``maxRetries``, while
``TIMEOUT``/``UNREACHABLE`` are transport failures, retried (if at all) by the plugin's own policy."""

_NO_DATA: Any = object()


@dataclass(slots=True, frozen=True)
class ResultError:
    """``{code, message, data?}``: why a step or flow failed."""

    code: ErrorCode
    message: str
    data: Any = _NO_DATA

    @property
    def has_data(self) -> bool:
        return self.data is not _NO_DATA

    @property
    def retryable(self) -> bool:
        """Whether ``onError: retry`` may call the component again after this error: always for an
        integer code, and for a string code unless it is in ``NOT_RETRIED_CODES``."""
        return self.code.__class__ is not str or self.code not in NOT_RETRIED_CODES

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
        if code.__class__ is not str:
            code = int(code) if isinstance(code, (int, float)) else 500
        message = value.get("message", "")
        if "data" in value:
            return cls(code, str(message), value["data"])
        return cls(code, str(message))


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
    def failed(code: ErrorCode, message: str, data: Any = _NO_DATA) -> FlowResult:
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
