"""Diagnostics: kinds, codes and levels of flow-format.md §10, and their wire shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["CODES", "Diagnostic", "make_diagnostic", "summarize"]

CODES: dict[str, int] = {
    "duplicateStepId": 3000,
    "emptyStepId": 3001,
    "selfReference": 3002,
    "undefinedStepReference": 3003,
    "invalidReferenceExpression": 3004,
    "emptyComponentName": 2001,
    "invalidComponent": 2500,
    "invalidSubflowLiteral": 2003,
    "undefinedVariable": 2004,
    "undefinedRequiredVariable": 2005,
    "invalidRouteReference": 2200,
    "unknownComponent": 2201,
    "invalidStepInput": 2202,
    "unreachableStep": 1000,
    "missingFlowName": 1001,
    "missingFlowDescription": 1002,
    "unvalidatedFieldAccess": 1003,
    "missingVariableSchema": 1004,
    "unknownField": 1090,
    "legacySyntax": 1091,
    "noPluginsConfigured": 1200,
    "noRoutingRulesConfigured": 1201,
    "unusedPlugin": 1202,
    "mockComponent": 1500,
}


def _level(code: int) -> str:
    if code >= 3000:
        return "fatal"
    if code >= 2000:
        return "error"
    return "warning"


@dataclass(slots=True, frozen=True)
class Diagnostic:
    kind: str
    code: int
    level: str
    formatted: str
    path: str
    data: Any = None
    experimental: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "code": self.code,
            "level": self.level,
            "formatted": self.formatted,
        }
        if self.data:
            out["data"] = self.data
        out["path"] = self.path
        if self.experimental:
            out["experimental"] = True
        return out

    def __str__(self) -> str:
        return f"{self.level}: {self.path}: {self.formatted} [{self.kind}]"


def make_diagnostic(
    kind: str, path: str, formatted: str, data: Any = None, experimental: bool = False
) -> Diagnostic:
    code = CODES[kind]
    return Diagnostic(kind, code, _level(code), formatted, path, data, experimental)


def summarize(diags: list[Diagnostic]) -> dict[str, Any]:
    """The REST ``diagnostics`` object: ``{diagnostics, numFatal, numError, numWarning}``."""
    return {
        "diagnostics": [d.to_json() for d in diags],
        "numFatal": sum(1 for d in diags if d.level == "fatal"),
        "numError": sum(1 for d in diags if d.level == "error"),
        "numWarning": sum(1 for d in diags if d.level == "warning"),
    }
