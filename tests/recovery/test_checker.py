"""The crash tests' checker (``recovery_support.check_executions``) on made-up records: it passes a
correct recovery and catches each kind of wrong one. No servers; fast."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from recovery_support import Kill, Record, check_executions

RUN = "r1"
OLD_GW, NEW_GW, OLD_CHILD, NEW_CHILD = 100, 200, 101, 201


def write(path: Path, events: list[tuple]) -> Record:
    """``events``: ``(ev, pid, label, attempt)``; boot lines are added for both children."""
    lines = [
        {"ev": "boot", "pid": OLD_CHILD, "ppid": OLD_GW},
        {"ev": "boot", "pid": NEW_CHILD, "ppid": NEW_GW},
    ]
    for ev, pid, label, attempt in events:
        lines.append({"ev": ev, "pid": pid, "ppid": 0, "label": label, "run_id": RUN, "attempt": attempt})
    path.write_text("".join(json.dumps(d) + "\n" for d in lines))
    return Record(path)


def kill(durable: set[str], attempts: dict[str, int]) -> Kill:
    return Kill(
        gateway_pid=OLD_GW,
        cut=0,
        durable={(RUN, s) for s in durable},
        journal_attempts={(RUN, 0, s): a for s, a in attempts.items()},
        children=[OLD_CHILD],
    )


# s1 ended and was journaled; s2 was running at the kill
BEFORE = [("start", OLD_CHILD, "s1", 1), ("end", OLD_CHILD, "s1", 1), ("start", OLD_CHILD, "s2", 1)]
EXPECTED = {(RUN, "s1"), (RUN, "s2")}


def test_a_correct_recovery_passes(tmp_path: Path) -> None:
    rec = write(tmp_path / "r", [*BEFORE, ("start", NEW_CHILD, "s2", 2), ("end", NEW_CHILD, "s2", 2)])
    ex = check_executions(rec, [kill({"s1"}, {"s1": 1, "s2": 1})], EXPECTED)
    assert ex.attempts((RUN, "s2")) == [1, 2]


@pytest.mark.parametrize(
    ("after", "problem"),
    [
        # s1's result was journaled, yet it ran again
        (
            [
                ("start", NEW_CHILD, "s1", 2),
                ("end", NEW_CHILD, "s1", 2),
                ("start", NEW_CHILD, "s2", 2),
                ("end", NEW_CHILD, "s2", 2),
            ],
            "journaled before kill 1, yet it ran again",
        ),
        # the interrupted s2 was not run again with the next attempt
        ([("start", NEW_CHILD, "s2", 1), ("end", NEW_CHILD, "s2", 1)], "made attempts [1], expected [2]"),
        # the interrupted s2 ran twice after the restart
        (
            [
                ("start", NEW_CHILD, "s2", 2),
                ("end", NEW_CHILD, "s2", 2),
                ("start", NEW_CHILD, "s2", 3),
                ("end", NEW_CHILD, "s2", 3),
            ],
            "started 3 times, but 1 kill(s) interrupted it",
        ),
        # s2 never finished
        ([("start", NEW_CHILD, "s2", 2)], "never ended"),
        # something that is not in the flow ran
        (
            [
                ("start", NEW_CHILD, "s2", 2),
                ("end", NEW_CHILD, "s2", 2),
                ("start", NEW_CHILD, "x", 1),
                ("end", NEW_CHILD, "x", 1),
            ],
            "should not have run",
        ),
    ],
)
def test_a_wrong_recovery_fails(tmp_path: Path, after: list[tuple], problem: str) -> None:
    rec = write(tmp_path / "r", [*BEFORE, *after])
    with pytest.raises(AssertionError, match=re.escape(problem)):
        check_executions(rec, [kill({"s1"}, {"s1": 1, "s2": 1})], EXPECTED)


def test_a_try_journaled_but_never_delivered_counts(tmp_path: Path) -> None:
    """The journal had s2's attempt 1 as started, but the kill came before the call reached the
    component: the component sees attempt 2 first, and that is right."""
    before = [("start", OLD_CHILD, "s1", 1), ("end", OLD_CHILD, "s1", 1)]
    rec = write(tmp_path / "r", [*before, ("start", NEW_CHILD, "s2", 2), ("end", NEW_CHILD, "s2", 2)])
    check_executions(rec, [kill({"s1"}, {"s1": 1, "s2": 1})], EXPECTED)
