"""The result model: rows of one metric measured on both runtimes, each value a number or "n/a: why".

Kept apart from measuring (``cells.py``) and rendering (``report.py``) so either can change alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Results", "Row", "Value", "na"]


@dataclass(frozen=True, slots=True)
class Value:
    """A measured number (``num``), or ``num=None`` with ``note`` saying why it is missing.

    ``note`` on a number is a qualifier printed next to it (e.g. "after 34,567 runs", "3 errors").
    """

    num: float | None
    note: str = ""


def na(reason: str) -> Value:
    """A missing value with its one-line reason."""
    return Value(None, reason)


@dataclass(slots=True)
class Row:
    """One metric of one section (a flow, "memory", "cold start") on both runtimes."""

    section: str
    metric: str
    unit: str
    better: Literal["lower", "higher"]
    values: dict[str, Value] = field(default_factory=dict)

    def ratio(self) -> float | None:
        """ours / upstream, when both are numbers and upstream is not zero."""
        ours, up = self.values.get("ours"), self.values.get("upstream")
        if ours is None or up is None or ours.num is None or up.num is None or up.num == 0:
            return None
        return ours.num / up.num


@dataclass(slots=True)
class Results:
    """Everything one harness run produced, in measurement order."""

    profile: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)
    """Machine, date, versions, counts: printed as the report's header list."""

    def row(self, section: str, metric: str, unit: str, better: Literal["lower", "higher"]) -> Row:
        """The row (section, metric), created on first use."""
        for r in self.rows:
            if r.section == section and r.metric == metric:
                return r
        r = Row(section, metric, unit, better)
        self.rows.append(r)
        return r

    def find(self, section: str, metric: str) -> Row | None:
        for r in self.rows:
            if r.section == section and r.metric == metric:
                return r
        return None
