"""Lazy evaluation, re-evaluation and parallelism of the executor (flow-format.md §7).

* a ``$if`` in the output whose branches are steps decided by another step's value runs only the
  taken branch (upstream fails this with "Step X not completed"; the gateway re-evaluates);
* ``$coalesce`` schedules the next member only after the previous one turned out ``null``;
* steps nothing needs never run; ``mustExecute`` steps do;
* independent steps overlap in time, and ``max_concurrency`` caps the step tasks in flight.
"""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest
from engine_support import states

pytestmark = pytest.mark.anyio


def echo(step_id: str, input: Any, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "component": "/probe/echo", "input": input, **extra}


def flow(output: Any, *steps: dict[str, Any]) -> dict[str, Any]:
    return {"name": "t", "description": "d", "steps": list(steps), "output": output}


@pytest.mark.parametrize(
    ("ok", "taken", "not_taken"), [(True, "a", "b"), (False, "b", "a"), (None, "b", "a")]
)
async def test_if_in_output_runs_only_the_taken_branch(
    open_gw: Any, ok: Any, taken: str, not_taken: str
) -> None:
    f = flow(
        {"$if": {"$step": "check", "path": "ok"}, "then": {"$step": "a"}, "else": {"$step": "b"}},
        echo("check", {"ok": {"$input": "ok"}}),
        echo("a", "A"),
        echo("b", "B"),
    )
    async with open_gw() as (gw, probe):
        handle = await gw.submit(f, [{"ok": ok}])
    assert handle.results is not None
    assert handle.results[0].result == taken.upper()
    assert [c.step_id for c in probe.calls] == ["check", taken]
    st = states(handle)
    assert st[taken] == "completed" and st[not_taken] == "blocked"


async def test_if_branch_decided_by_a_step_value_inside_a_step_input(open_gw: Any) -> None:
    f = flow(
        {"$step": "final"},
        echo("check", {"$input": "flag"}),
        echo("expensive", "E"),
        echo("cheap", "C"),
        echo(
            "final",
            {"v": {"$if": {"$step": "check"}, "then": {"$step": "expensive"}, "else": {"$step": "cheap"}}},
        ),
    )
    async with open_gw() as (gw, probe):
        r = await gw.run(f, {"flag": False})
    assert r.result == {"v": "C"}
    assert [c.step_id for c in probe.calls] == ["check", "cheap", "final"]


async def test_if_condition_in_skip_if_and_variable_default_are_reevaluated(open_gw: Any) -> None:
    f = flow(
        {"x": {"$step": "x"}, "v": {"$variable": "missing", "default": {"$step": "fallback"}}},
        echo("decide", True),
        echo("x", 1, skipIf={"$step": "decide"}),
        echo("fallback", "from step"),
    )
    f["schemas"] = {
        "properties": {"variables": {"type": "object", "properties": {"missing": {"type": "object"}}}}
    }
    async with open_gw() as (gw, probe):
        handle = await gw.submit(f, [None])
    assert handle.results is not None
    assert handle.results[0].to_json() == {"outcome": "skipped", "reason": "dependency x was skipped"}
    assert sorted(c.step_id for c in probe.calls) == ["decide", "fallback"]


async def test_coalesce_schedules_next_member_only_after_previous_is_null(open_gw: Any) -> None:
    f = flow(
        {"$coalesce": [{"$step": "first"}, {"$step": "second"}, {"$step": "third"}, {"$step": "fourth"}]},
        echo("first", None),
        {"id": "second", "component": "/probe/skipme"},
        echo("third", "found"),
        echo("fourth", "never"),
    )
    async with open_gw() as (gw, probe):
        handle = await gw.submit(f, [None])
    assert handle.results is not None and handle.results[0].result == "found"
    calls = [c.step_id for c in probe.calls]
    assert calls == ["first", "second", "third"]
    # strictly sequential: each member started after the previous one finished
    assert probe.peak == 1
    assert states(handle)["fourth"] == "blocked"


async def test_coalesce_stops_at_failure_without_scheduling_the_rest(open_gw: Any) -> None:
    f = flow(
        {"$coalesce": [{"$step": "first"}, {"$step": "bad"}, {"$step": "never"}]},
        echo("first", None),
        {"id": "bad", "component": "/probe/fail", "input": {"code": 5, "message": "stop"}},
        echo("never", 1),
    )
    async with open_gw() as (gw, probe):
        r = await gw.run(f, None)
    assert r.to_json() == {"outcome": "failed", "error": {"code": 5, "message": "stop"}}
    assert [c.step_id for c in probe.calls] == ["first", "bad"]


async def test_transitive_needs_and_unreferenced_chains(open_gw: Any) -> None:
    f = flow(
        {"$step": "c"},
        echo("a", 1),
        echo("b", {"$step": "a"}),
        echo("c", {"$step": "b"}),
        echo("orphan1", 1),
        echo("orphan2", {"$step": "orphan1"}),
        echo("side", {"$step": "a"}, mustExecute=True),
    )
    async with open_gw() as (gw, probe):
        handle = await gw.submit(f, [None])
    assert handle.results is not None and handle.results[0].result == 1
    assert sorted(c.step_id for c in probe.calls) == ["a", "b", "c", "side"]
    assert len(probe.called("a")) == 1  # shared dependency runs once
    st = states(handle)
    assert st["orphan1"] == st["orphan2"] == "blocked"


async def test_null_output_runs_only_must_execute(open_gw: Any) -> None:
    f = flow(None, echo("a", 1), echo("m", 2, mustExecute=True))
    async with open_gw() as (gw, probe):
        r = await gw.run(f, None)
    assert r.to_json() == {"outcome": "success", "result": None}
    assert [c.step_id for c in probe.calls] == ["m"]


async def test_long_chain_is_not_recursive(open_gw: Any) -> None:
    n = 3000
    steps = [{"id": "s0", "component": "/mock/inc", "input": 0}]
    steps += [{"id": f"s{i}", "component": "/mock/inc", "input": {"$step": f"s{i - 1}"}} for i in range(1, n)]
    behaviours = {i: {"outcome": "success", "result": i + 1} for i in range(n)}
    async with open_gw({"/inc": {"behaviors": behaviours}}) as (gw, _):
        r = await gw.run(flow({"$step": f"s{n - 1}"}, *steps), None)
    assert r.result == n


# -- parallelism ------------------------------------------------------------------------------------
async def test_independent_steps_overlap(open_gw: Any) -> None:
    # Each gate call waits until all three are in flight: finishing proves they overlapped.
    gate = {"gate": "g", "n": 3}
    f = flow(
        {"$step": "join"},
        {"id": "a", "component": "/probe/gate", "input": gate},
        {"id": "b", "component": "/probe/gate", "input": gate},
        {"id": "c", "component": "/probe/gate", "input": gate},
        echo("join", [{"$step": "a"}, {"$step": "b"}, {"$step": "c"}]),
    )
    async with open_gw() as (gw, probe):
        r = await gw.run(f, None)
    assert r.outcome == "success" and r.result == [gate, gate, gate]
    assert probe.peak == 3
    # the join started only after all three finished
    assert [c.step_id for c in probe.calls][-1] == "join"


async def test_items_of_a_batch_run_concurrently(open_gw: Any) -> None:
    f = flow({"$step": "g"}, {"id": "g", "component": "/probe/gate", "input": {"gate": "items", "n": 4}})
    async with open_gw() as (gw, probe):
        results = await gw.run_batch(f, [1, 2, 3, 4])
    assert [r.outcome for r in results] == ["success"] * 4
    assert sorted(c.item_index for c in probe.calls) == [0, 1, 2, 3]


@pytest.mark.parametrize("cap", [1, 2])
async def test_max_concurrency_caps_steps_in_flight(open_gw: Any, cap: int) -> None:
    f = flow(
        [{"$step": f"s{i}"} for i in range(6)],
        *({"id": f"s{i}", "component": "/probe/slow", "input": {"ms": 5, "i": i}} for i in range(6)),
    )
    async with open_gw() as (gw, probe):
        results = await gw.run_batch(f, [None, None], max_concurrency=cap)
    assert all(r.outcome == "success" for r in results)
    assert len(probe.calls) == 12
    assert probe.peak == cap


async def test_unbounded_by_default(open_gw: Any) -> None:
    f = flow(
        [{"$step": f"s{i}"} for i in range(8)],
        *({"id": f"s{i}", "component": "/probe/gate", "input": {"gate": "all", "n": 8}} for i in range(8)),
    )
    async with open_gw() as (gw, probe):
        r = await gw.run(f, None)
    assert r.outcome == "success" and probe.peak == 8


async def test_step_events_are_reported_in_order(open_gw: Any) -> None:
    events: list[tuple[str, str | None]] = []
    f = flow({"$step": "b"}, echo("a", 1), echo("b", {"$step": "a"}))
    async with open_gw() as (gw, _):
        await gw.submit(f, [None], listener=lambda ev: events.append((ev.kind, ev.step_id)))
    assert events == [
        ("step_started", "a"),
        ("step_completed", "a"),
        ("step_started", "b"),
        ("step_completed", "b"),
        ("item_completed", None),
        ("run_completed", None),
    ]


async def test_cancel_stops_steps_in_flight(open_gw: Any) -> None:
    f = flow({"$step": "g"}, {"id": "g", "component": "/probe/gate", "input": {"gate": "never", "n": 2}})
    started = anyio.Event()

    def listener(ev: Any) -> None:
        if ev.kind == "step_started":
            started.set()

    async with open_gw() as (gw, probe):
        async with anyio.create_task_group() as tg:
            gw.task_group = tg
            handle = await gw.submit(f, [None], wait=False, listener=listener)
            with anyio.fail_after(5):
                await started.wait()
                while not probe.calls:  # the step task has been started; let it reach the plugin
                    await anyio.lowlevel.checkpoint()
            handle.cancel()
            with anyio.fail_after(5):
                await handle.done.wait()
        gw.task_group = None
    assert handle.status == "cancelled"
    assert handle.results is not None
    assert handle.results[0].to_json() == {
        "outcome": "failed",
        "error": {"code": 500, "message": "Run was cancelled"},
    }
