"""The "Durable runs" block of benchmarks/RESULTS.md: journal.py replaces only its block, and
harness.py (which rewrites the file) keeps it."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from sidebyside.durable_report import BEGIN, END, carry_over, splice  # noqa: E402

BLOCK = f"{BEGIN}\n## Durable runs\nfigures\n{END}\n"


def test_splice_appends_then_replaces_only_its_block() -> None:
    first = splice("# Side by side\n\ntable\n", BLOCK)
    assert first.startswith("# Side by side\n\ntable\n\n" + BEGIN)
    again = splice(first + "\ntrailer\n", BLOCK.replace("figures", "new figures"))
    assert "new figures" in again and "\nfigures" not in again
    assert again.count(BEGIN) == 1 and again.endswith("trailer\n")


def test_carry_over_keeps_the_block_when_the_rest_is_rewritten() -> None:
    old = splice("# old side by side\n", BLOCK)
    new = carry_over(old, "# new side by side\n")
    assert new.startswith("# new side by side\n") and new.count(BEGIN) == 1 and "figures" in new
    assert carry_over("# no block\n", "# new\n") == "# new\n"
