"""Run profiles: how many requests, how long, which flows. ``full`` is the default (~15 min at most).

Each load cell stops at ``cell_count`` requests or ``cell_seconds``, whichever comes first; ``rounds``
repeats every cell (runtimes alternating A B / B A) and pools the results.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .flows import DEFAULT_FLOWS

__all__ = ["PROFILES", "Profile"]


@dataclass(frozen=True, slots=True)
class Profile:
    """Counts and bounds of one benchmark run."""

    name: str
    flows: tuple[str, ...]
    concurrency: tuple[int, ...]
    """Load cells per flow; c=1 is the sequential cell that also gives p50/p99."""
    cell_count: int
    cell_seconds: float
    rounds: int
    warmup_count: int
    warmup_seconds: float
    memory_checkpoints: tuple[int, ...]
    """noop-1 runs (cumulative) after which the server's RSS is read; the last is "after N runs"."""
    memory_seconds: float
    """Bound of the whole memory cell (the run count reached is reported)."""
    memory_concurrency: int
    cold_configs: tuple[str, ...]
    cold_reps: int

    def with_flows(self, flows: tuple[str, ...]) -> Profile:
        return replace(self, flows=flows)


PROFILES = {
    "smoke": Profile(
        "smoke",
        ("noop-1", "python-echo", "mcp-echo"),
        (1, 8),
        20,
        2.0,
        1,
        3,
        2.0,
        (50, 100),
        10.0,
        8,
        ("builtin",),
        1,
    ),
    "quick": Profile(
        "quick",
        DEFAULT_FLOWS,
        (1, 8, 32, 64),
        5000,
        1.0,
        1,
        30,
        1.0,
        (1000, 10000),
        40.0,
        8,
        ("builtin", "full"),
        1,
    ),
    "full": Profile(
        "full",
        DEFAULT_FLOWS,
        (1, 8, 32, 64),
        50000,
        2.5,
        2,
        100,
        2.0,
        (1000, 50000),
        150.0,
        8,
        ("builtin", "full"),
        3,
    ),
}
