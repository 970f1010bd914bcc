"""The benchmark flows, built in code (identical to the shared anchor data in ``bench/flows/``).

"noop" is the builtin ``/create_messages`` (upstream 0.9.0 has no noop builtin). ``noop-N`` are N
independent steps (a fan-out), ``chain-N`` are N sequential steps each fed the previous step's
``$.messages[0].content``. Every flow takes the input ``{"data": "bench"}``.

One deliberate difference from the shared files: their chains write the bare path ``messages[0].content``.
Upstream 0.9.0 reads that as a path; this project's spec (flow-format.md §5.2, §16.1) reads a bare path
as ONE literal key, so our runs fail with ``Path $["messages[0].content"] not found``. Both runtimes read
``$.messages[0].content`` the same way, so the built-in chains use it (``--flows-dir`` gives the originals).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["ALL_FLOWS", "DEFAULT_FLOWS", "WITH_COMPONENT_SERVER", "load_flow"]

NOOP = "/create_messages"
CHAIN_PATH = "$.messages[0].content"
"""The shared anchor files write ``messages[0].content`` (see the module docstring)."""


def _fanout(n: int, name: str, description: str) -> dict[str, Any]:
    steps = [
        {"id": f"noop_{i}", "component": NOOP, "input": {"user_prompt": str(i)}} for i in range(1, n + 1)
    ]
    output: Any = (
        {"$step": "noop_1"} if n == 1 else {f"s{i}": {"$step": f"noop_{i}"} for i in range(1, n + 1)}
    )
    return {"name": name, "description": description, "steps": steps, "output": output}


def _chain(n: int) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [
        {"id": "noop_1", "component": NOOP, "input": {"user_prompt": {"$input": "data"}}}
    ]
    for i in range(2, n + 1):
        steps.append(
            {
                "id": f"noop_{i}",
                "component": NOOP,
                "input": {"user_prompt": {"$step": f"noop_{i - 1}", "path": CHAIN_PATH}},
            }
        )
    return {
        "name": f"Anchor - Noop chain x{n}",
        "description": f"{n} sequential noop steps",
        "steps": steps,
        "output": {"$step": f"noop_{n}"},
    }


def _one(name: str, description: str, step_id: str, component: str, input_: Any) -> dict[str, Any]:
    return {
        "name": name,
        "description": description,
        "steps": [{"id": step_id, "component": component, "input": input_}],
        "output": {"$step": step_id},
    }


ALL_FLOWS: dict[str, Callable[[], dict[str, Any]]] = {
    "noop-1": lambda: _fanout(1, "Anchor - Noop x1", "1 builtin noop step"),
    "noop-parallel": lambda: _fanout(10, "Anchor - Noop x10 parallel", "10 independent noop steps"),
    "noop-100": lambda: _fanout(100, "Anchor - Noop x100 parallel", "100 independent noop steps"),
    "chain-1": lambda: _chain(1),
    "chain-10": lambda: _chain(10),
    "chain-100": lambda: _chain(100),
    "chain-1000": lambda: _chain(1000),
    "routed-noop": lambda: _one(
        "Anchor - Routed Noop",
        "noop via a prefixed route with component rewrite",
        "noop",
        "/bench/noop",
        {"user_prompt": {"$input": "data"}},
    ),
    "python-echo": lambda: _one(
        "Anchor - Python Echo",
        "1 step on the Python component server",
        "echo",
        "/python/echo",
        {"$input": "$"},
    ),
    "mcp-echo": lambda: _one(
        "Anchor - MCP Echo",
        "1 step: the echo tool of server-everything over stdio",
        "echo",
        "/mcp/echo",
        {"message": {"$input": "data"}},
    ),
    "sleep-10ms": lambda: _one(
        "Anchor - Sleep 10ms",
        "1 step sleeping 10 ms on the Python component server",
        "sleep",
        "/python/sleep",
        {"duration_ms": 10, "passthrough": {"$input": "data"}},
    ),
    "sleep-100ms": lambda: _one(
        "Anchor - Sleep 100ms",
        "1 step sleeping 100 ms on the Python component server",
        "sleep",
        "/python/sleep",
        {"duration_ms": 100, "passthrough": {"$input": "data"}},
    ),
}
"""Every known flow by name (the sleep flows measure waiting, not overhead: not in the default set)."""

WITH_COMPONENT_SERVER = frozenset({"python-echo", "mcp-echo", "sleep-10ms", "sleep-100ms"})
"""Flows whose step runs in a component server (a child process): their CPU rows also show the
runtime's own process alone, so the component server's share is visible."""

DEFAULT_FLOWS = (
    "noop-1",
    "noop-parallel",
    "noop-100",
    "chain-1",
    "chain-10",
    "chain-100",
    "chain-1000",
    "routed-noop",
    "python-echo",
    "mcp-echo",
)


def load_flow(name: str, flows_dir: Path | None = None) -> dict[str, Any]:
    """The flow ``name``: from ``flows_dir/<name>.json`` when given, else built in code."""
    if flows_dir is not None:
        return json.loads((flows_dir / f"{name}.json").read_text())
    try:
        return ALL_FLOWS[name]()
    except KeyError:
        raise SystemExit(f"unknown flow {name!r}; known: {', '.join(ALL_FLOWS)}") from None
