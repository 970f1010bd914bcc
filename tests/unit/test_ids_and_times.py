"""Run ids and timestamps: the hand-rolled fast forms equal what the stdlib would give."""

from __future__ import annotations

import random
import re
import time
import uuid
from datetime import UTC, datetime

from stepflow_gateway.gateway import now_iso
from stepflow_gateway.ids import new_run_id


def test_run_ids_are_time_ordered_version_7_uuids() -> None:
    before = time.time_ns() // 1_000_000
    made = [new_run_id() for _ in range(2000)]
    after = time.time_ns() // 1_000_000
    assert len(set(made)) == 2000
    for rid in made[:200]:
        parsed = uuid.UUID(rid)
        assert str(parsed) == rid  # canonical lowercase 8-4-4-4-12 form
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert before <= parsed.int >> 80 <= after  # the first 48 bits: Unix milliseconds
    stamps = [uuid.UUID(r).int >> 80 for r in made]
    assert stamps == sorted(stamps)


def test_now_iso_matches_datetime_formatting() -> None:
    rng = random.Random(7)
    stamps = [0.0, 0.5, 59.999999, 1_700_000_000.123456, 1_700_000_001.0, 4_102_444_799.25]
    stamps += [rng.uniform(0, 4_000_000_000) for _ in range(500)]
    for ts in stamps:
        expected = datetime.fromtimestamp(ts, UTC)
        got = now_iso(ts)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", got), got
        parsed = datetime.fromisoformat(got.replace("Z", "+00:00"))
        # same second; microseconds truncated instead of rounded (at most 1 µs apart)
        assert abs((parsed - expected).total_seconds()) <= 1e-6, (ts, got, expected)
    a, b = now_iso(), now_iso()
    assert a <= b
