"""The "Durable runs" section of ``benchmarks/RESULTS.md`` (``benchmarks/journal.py``), and how it is kept.

The section sits between two HTML comments (``BEGIN``/``END``). ``journal.py`` replaces that block (or
appends it); ``harness.py``, which rewrites the rest of the file, carries the block over
(``carry_over``), so either benchmark can run alone without erasing the other's figures.
"""

from __future__ import annotations

import json
from typing import Any

from .durable import DurableProfile, Variant
from .report import fmt_num, fmt_value
from .results import Results, Row, Value

__all__ = ["BEGIN", "END", "carry_over", "splice", "to_json", "to_markdown"]

BEGIN = "<!-- durable-runs: written by benchmarks/journal.py -->"
END = "<!-- /durable-runs -->"

# (label, section, metric, numerator variant, denominator variant or None, comparison, threshold)
TARGETS: list[tuple[str, str, str, str, str | None, str, float]] = [
    (
        "noop-1 c=1 server CPU per run, ours SQLite ÷ ours inMemory",
        "noop-1 c=1",
        "server CPU per run",
        "ours-sqlite",
        "ours-memory",
        "<=",
        1.5,
    ),
    ("noop-1 c=1 latency p50, ours SQLite (ms)", "noop-1 c=1", "latency p50", "ours-sqlite", None, "<=", 0.5),
]
RATIOS = [
    ("ours SQLite ÷ ours inMemory", "ours-sqlite", "ours-memory"),
    ("ours Postgres ÷ ours inMemory", "ours-postgres", "ours-memory"),
    ("0.13 SQLite ÷ 0.13 inMemory", "up013-sqlite", "up013-memory"),
    ("0.13 Postgres ÷ 0.13 inMemory", "up013-postgres", "up013-memory"),
    ("ours SQLite ÷ 0.13 SQLite", "ours-sqlite", "up013-sqlite"),
]


def _num_of(row: Row | None, name: str) -> float | None:
    if row is None:
        return None
    v = row.values.get(name)
    return None if v is None else v.num


def _ratio(row: Row | None, a: str, b: str) -> float | None:
    x, y = _num_of(row, a), _num_of(row, b)
    return None if x is None or y is None or y == 0 else x / y


def _label(row: Row) -> str:
    return f"{row.metric} ({row.unit}, {row.better} is better)" if row.unit else f"{row.metric}"


def _value(row: Row, v: Value | None) -> str:
    if row.unit == "runs" and v is not None and v.num is not None:
        return f"{v.num:,.0f}" + (f" ({v.note})" if v.note else "")
    return fmt_value(v)


def _table(rows: list[Row], variants: list[Variant]) -> list[str]:
    """Rows x variants; a variant with no number in any row becomes one line under the table."""
    shown = [v for v in variants if any((r.values.get(v.name) or Value(None)).num is not None for r in rows)]
    out = [
        "| " + " | ".join(["cell", "metric", *(v.label for v in shown)]) + " |",
        "|" + "---|" * (len(shown) + 2),
    ]
    last = None
    for r in rows:
        lead = f"**{r.section}**" if r.section != last else ""
        last = r.section
        cells = [_value(r, r.values.get(v.name)) for v in shown]
        out.append("| " + " | ".join([lead, _label(r), *cells]) + " |")
    missing = [v for v in variants if v not in shown]
    if missing:
        out.append("")
        for v in missing:
            why = next((x.note for r in rows if (x := r.values.get(v.name)) is not None and x.note), "")
            out.append(f"- {v.label}: n/a, {why or 'not measured'}")
    return out


def _targets(res: Results) -> list[str]:
    out = ["| target (issue 12; not asserted) | measured | target | met |", "|---|---|---|---|"]
    checks = list(TARGETS)
    rec = next((r.section for r in res.rows if r.section.startswith("recovery of")), None)
    if rec:
        checks.append(
            (
                "recovery: startup line → first resumed step, ours SQLite (s)",
                rec,
                "startup line → first resumed step starts",
                "ours-sqlite",
                None,
                "<",
                0.5,
            )
        )
    for label, section, metric, a, b, cmp, threshold in checks:
        row = res.find(section, metric)
        value = _ratio(row, a, b) if b else _num_of(row, a)
        if value is None:
            out.append(f"| {label} | n/a | {cmp} {threshold:g} | – |")
            continue
        met = {"<=": value <= threshold, "<": value < threshold}[cmp]
        out.append(f"| {label} | {fmt_num(value)} | {cmp} {threshold:g} | {'yes' if met else 'no'} |")
    return out


def _ratios(res: Results) -> list[str]:
    metrics = [
        r
        for r in res.rows
        if r.metric in ("server CPU per run", "server + PostgreSQL server CPU per run", "latency p50")
        and " c=" in r.section
    ]
    pairs = [(label, a, b) for label, a, b in RATIOS if any(_ratio(r, a, b) is not None for r in metrics)]
    out = ["| cell | metric | " + " | ".join(p[0] for p in pairs) + " |", "|" + "---|" * (len(pairs) + 2)]
    for r in metrics:
        cells = []
        for _, a, b in pairs:
            x = _ratio(r, a, b)
            cells.append("–" if x is None else f"{x:.2f}×")
        out.append(f"| {r.section} | {r.metric} | " + " | ".join(cells) + " |")
    return out


def to_markdown(res: Results, profile: DurableProfile, variants: list[Variant], command: str) -> str:
    """The whole section, markers included."""
    seq = [r for r in res.rows if " c=" in r.section or r.section.startswith("SQLite files")]
    sleep = [r for r in res.rows if "× sleep" in r.section]
    rec = [r for r in res.rows if r.section.startswith("recovery of")]
    lines = [BEGIN, "## Durable runs", ""]
    if profile.name != "full":
        lines += [
            f"> Profile **{profile.name}**: short cells, indicative only (`benchmarks/journal.py` without "
            "`--quick` gives steadier figures).",
            "",
        ]
    lines += [
        f"Generated by `{command}`: every runtime and state store below ran side by side in one private "
        "network namespace, servers pinned to one core, the same load client on the other.",
        "",
    ]
    lines += [f"- **{k}**: {v}" for k, v in res.meta.items()]
    lines.append(
        f"- **counts**: sequential cells ≤ {profile.cell_count:,} runs and ≤ {profile.cell_seconds:g} s, "
        f"{profile.rounds} round(s) pooled, variant order rotating; {profile.sleep_runs:,} sleep runs of "
        f"{profile.sleep_ms} ms; recovery of {profile.recovery_runs:,} runs sleeping "
        f"{profile.recovery_sleep_s} s"
    )
    lines += ["", "### Targets", "", *_targets(res)]
    lines += [
        "",
        "### Journal cost, sequential and at c=8",
        "",
        '`POST /api/v1/runs {flowId, input: [{"data": "bench"}], wait: true}` back to back. Server CPU is '
        "utime+stime of the server process tree from `/proc` over the cell, divided by the runs; the "
        "throwaway PostgreSQL cluster is not pinned and its processes' CPU is added in its own row. One "
        "database per variant for all rounds, so the SQLite figures include a growing file.",
        "",
        *_table(seq, variants),
        "",
        "Ratios:",
        "",
        *_ratios(res),
    ]
    if sleep:
        lines += [
            "",
            "### Many sleeping runs",
            "",
            "A fresh server per column; the runs are submitted with `wait: false` from "
            f"{profile.submit_concurrency} connections, then `GET /runs?status=running&limit=1` is polled "
            "every 20 ms until it is empty. CPU covers submission, sleeping and the polls.",
            "",
            *_table(sleep, variants),
        ]
    if rec:
        lines += [
            "",
            "### Recovery after SIGKILL",
            "",
            "The step runs on `configs/sleep_server.py` (stdio), which appends a timestamped line per "
            "execution start. When every step has started, the server and its component server get "
            "SIGKILL; the server restarts on the same store (`recovery.maxStartupRecovery` raised above the "
            "default 100 so that every run is resumed at start-up). The startup line is our `serve`'s "
            "`stepflow-gateway: serving http://…` on stderr, timestamped as it arrives.",
            "",
            *_table(rec, variants),
        ]
    if res.notes:
        lines += ["", "### Notes", "", *(f"- {n}" for n in res.notes)]
    lines += [END]
    return "\n".join(lines) + "\n"


def splice(existing: str, block: str) -> str:
    """``existing`` with its durable-runs block replaced by ``block`` (appended when it has none)."""
    i, j = existing.find(BEGIN), existing.find(END)
    if i >= 0 and j > i:
        return existing[:i] + block.rstrip("\n") + existing[j + len(END) :]
    return existing.rstrip("\n") + "\n\n" + block


def carry_over(old: str, new: str) -> str:
    """``new`` (a rewritten RESULTS.md) with ``old``'s durable-runs block kept at its end."""
    i, j = old.find(BEGIN), old.find(END)
    if i < 0 or j < i or BEGIN in new:
        return new
    return new.rstrip("\n") + "\n\n" + old[i : j + len(END)] + "\n"


def to_json(res: Results, variants: list[Variant]) -> str:
    def val(v: Value) -> dict[str, Any]:
        return {"value": v.num, "note": v.note}

    data = {
        "profile": res.profile,
        "meta": res.meta,
        "notes": res.notes,
        "variants": {v.name: v.label for v in variants},
        "rows": [
            {
                "section": r.section,
                "metric": r.metric,
                "unit": r.unit,
                "better": r.better,
                "values": {k: val(v) for k, v in r.values.items()},
            }
            for r in res.rows
        ],
    }
    return json.dumps(data, indent=1, ensure_ascii=False)
