"""Skips [gw]: ``skipIf``/``skip``, skip propagation, ``onSkip``, and ``depends_on``
(flow-format.md §7.3, §8.4), including skipped flow results."""

from __future__ import annotations

from typing import Any

import pytest
from engine_support import states

pytestmark = pytest.mark.anyio


def echo(step_id: str, input: Any, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "component": "/probe/echo", "input": input, **extra}


def flow(output: Any, *steps: dict[str, Any]) -> dict[str, Any]:
    return {"name": "t", "description": "d", "steps": list(steps), "output": output}


SKIPPED_IF = {"outcome": "skipped", "reason": "skipIf condition is true"}


@pytest.mark.parametrize(
    ("cond", "skipped"), [(True, True), (0, True), ("", True), ({}, True), (None, False), (False, False)]
)
async def test_skip_if_uses_if_truthiness(open_gw: Any, cond: Any, skipped: bool) -> None:
    f = flow({"$step": "s"}, echo("s", "ran", skipIf={"$input": "c"}))
    async with open_gw() as (gw, probe):
        handle = await gw.submit(f, [{"c": cond}])
    assert handle.results is not None
    if skipped:
        assert handle.results[0].to_json() == {"outcome": "skipped", "reason": "dependency s was skipped"}
        assert probe.calls == []
        assert states(handle)["s"] == "skipped"
    else:
        assert handle.results[0].to_json() == {"outcome": "success", "result": "ran"}


async def test_skip_alias_and_skipped_output_result(open_gw: Any) -> None:
    f = flow({"$step": "s"}, echo("s", 1, skip=True))
    async with open_gw() as (gw, probe):
        handle = await gw.submit(f, [None])
    assert handle.results is not None
    assert handle.results[0].outcome == "skipped"
    assert handle.status == "completed"  # skipped is not a failure
    assert probe.calls == []


async def test_skip_if_is_decided_before_the_input_is_scheduled(open_gw: Any) -> None:
    f = flow(
        {"$step": "s"},
        echo("flag", True),
        echo("input_source", "expensive"),
        echo("s", {"$step": "input_source"}, skipIf={"$step": "flag"}),
    )
    async with open_gw() as (gw, probe):
        handle = await gw.submit(f, [None])
    assert [c.step_id for c in probe.calls] == ["flag"]
    st = states(handle)
    assert st["s"] == "skipped" and st["input_source"] == "blocked"


async def test_failing_skip_if_fails_the_step(open_gw: Any) -> None:
    f = flow({"$step": "s"}, echo("s", 1, skipIf={"$input": "$.nope"}, onError={"action": "useDefault"}))
    async with open_gw() as (gw, probe):
        r = await gw.run(f, {})
    assert r.to_json() == {
        "outcome": "failed",
        "error": {"code": 1, "message": "Input path $.nope not found"},
    }
    assert probe.calls == []


async def test_must_execute_with_true_condition_is_still_skipped(open_gw: Any) -> None:
    f = flow("done", echo("m", 1, mustExecute=True, skipIf=True))
    async with open_gw() as (gw, probe):
        handle = await gw.submit(f, [None])
    assert handle.results is not None and handle.results[0].result == "done"
    assert probe.calls == [] and states(handle)["m"] == "skipped"


async def test_skip_propagates_without_calling_the_component_or_on_error(open_gw: Any) -> None:
    f = flow(
        {"$step": "c"},
        echo("a", 1, skipIf=True),
        echo("b", {"x": {"$step": "a"}}, onError={"action": "useDefault", "defaultValue": "no"}),
        echo("c", {"$step": "b", "path": "x"}),
    )
    async with open_gw() as (gw, probe):
        handle = await gw.submit(f, [None])
    assert handle.results is not None
    assert handle.results[0].to_json() == {"outcome": "skipped", "reason": "dependency c was skipped"}
    assert probe.calls == []
    assert states(handle) == {"a": "skipped", "b": "skipped", "c": "skipped"}
    # step b records why it was skipped
    b = next(r for it, _i, step, _s, r, *_ in handle.execution.step_states() if step.id == "b")
    assert b.to_json() == {"outcome": "skipped", "reason": "dependency a was skipped"}


async def test_on_skip_use_default(open_gw: Any) -> None:
    f = flow(
        {
            "with_value": {"$step": "a", "onSkip": {"action": "useDefault", "defaultValue": {"k": 1}}},
            "path_not_applied": {
                "$step": "a",
                "path": "$.k",
                "onSkip": {"action": "useDefault", "defaultValue": {"k": 2}},
            },
            "null": {"$step": "a", "onSkip": {"action": "useDefault"}},
            "from": {"$from": {"step": "a"}, "onSkip": {"action": "useDefault", "defaultValue": 3}},
        },
        echo("a", {"k": 0}, skipIf=True),
    )
    async with open_gw() as (gw, _):
        r = await gw.run(f, None)
    assert r.to_json() == {
        "outcome": "success",
        "result": {"with_value": {"k": 1}, "path_not_applied": {"k": 2}, "null": None, "from": 3},
    }


async def test_on_skip_skip_is_the_default_and_explicit(open_gw: Any) -> None:
    f = flow({"$step": "a", "onSkip": {"action": "skip"}}, echo("a", 1, skipIf=True))
    async with open_gw() as (gw, _):
        assert (await gw.run(f, None)).to_json() == {
            "outcome": "skipped",
            "reason": "dependency a was skipped",
        }


async def test_on_skip_does_not_apply_to_failures(open_gw: Any) -> None:
    f = flow(
        {"$step": "a", "onSkip": {"action": "useDefault", "defaultValue": 1}},
        {"id": "a", "component": "/probe/fail", "input": {"code": 9, "message": "x"}},
    )
    async with open_gw() as (gw, _):
        assert (await gw.run(f, None)).to_json() == {
            "outcome": "failed",
            "error": {"code": 9, "message": "x"},
        }


async def test_coalesce_and_if_treat_skips_as_null_and_false(open_gw: Any) -> None:
    f = flow(
        {
            "coalesce": {"$coalesce": [{"$step": "a"}, "next"]},
            "if": {"$if": {"$step": "a"}, "then": "then", "else": "else"},
        },
        echo("a", True, skipIf=True),
    )
    async with open_gw() as (gw, _):
        assert (await gw.run(f, None)).result == {"coalesce": "next", "if": "else"}


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ([{"$step": "skipped"}, {"$step": "failed"}], "skipped"),
        ([{"$step": "failed"}, {"$step": "skipped"}], "failed"),
        ({"ok": {"$step": "fine"}, "s": {"$step": "skipped"}}, "skipped"),
        ({"$template": "v={{v}}", "values": {"v": {"$step": "skipped"}}}, "skipped"),
    ],
)
async def test_first_non_success_member_decides(open_gw: Any, output: Any, expected: str) -> None:
    f = flow(
        output,
        echo("skipped", 1, skipIf=True),
        {"id": "failed", "component": "/probe/fail", "input": {"code": 2, "message": "f"}},
        echo("fine", 1),
    )
    async with open_gw() as (gw, _):
        assert (await gw.run(f, None)).outcome == expected


async def test_component_returning_skipped_skips_the_step(open_gw: Any) -> None:
    f = flow({"direct": {"$step": "s"}}, {"id": "s", "component": "/probe/skipme"})
    async with open_gw() as (gw, _):
        r = (await gw.run(f, None)).to_json()
    assert r == {"outcome": "skipped", "reason": "dependency s was skipped"}


async def test_mock_skipped_behaviour(open_gw: Any) -> None:
    mock = {"/s": {"behaviors": {"x": {"outcome": "skipped", "reason": "mock says so"}}}}
    f = flow(
        {"$step": "s", "onSkip": {"action": "useDefault", "defaultValue": "d"}},
        {"id": "s", "component": "/mock/s", "input": "x"},
    )
    async with open_gw(mock) as (gw, _):
        assert (await gw.run(f, None)).result == "d"


# -- depends_on -------------------------------------------------------------------------------------
async def test_depends_on_makes_listed_steps_needed_and_orders_them(open_gw: Any) -> None:
    f = flow(
        {"$step": "read"},
        {"id": "write", "component": "/probe/slow", "input": {"ms": 10}},
        echo("read", "r", depends_on=["write"]),
    )
    async with open_gw() as (gw, probe):
        handle = await gw.submit(f, [None])
    assert [c.step_id for c in probe.calls] == ["write", "read"]
    write_done = next(
        fin for _it, _i, step, _s, _r, _st, fin in handle.execution.step_states() if step.id == "write"
    )
    read_started = next(
        st for _it, _i, step, _s, _r, st, _f in handle.execution.step_states() if step.id == "read"
    )
    assert write_done <= read_started


async def test_depends_on_failed_step_takes_its_failure(open_gw: Any) -> None:
    f = flow(
        {"$step": "b"},
        {"id": "a", "component": "/probe/fail", "input": {"code": 11, "message": "a failed"}},
        echo("b", 1, depends_on=["a"], onError={"action": "useDefault"}),
    )
    async with open_gw() as (gw, probe):
        r = await gw.run(f, None)
    assert r.to_json() == {"outcome": "failed", "error": {"code": 11, "message": "a failed"}}
    assert [c.step_id for c in probe.calls] == ["a"]


async def test_depends_on_skipped_step_is_skipped(open_gw: Any) -> None:
    f = flow(
        {"$step": "b", "onSkip": {"action": "useDefault", "defaultValue": "fallback"}},
        echo("a", 1, skipIf=True),
        echo("b", 1, depends_on=["a"]),
    )
    async with open_gw() as (gw, probe):
        handle = await gw.submit(f, [None])
    assert handle.results is not None and handle.results[0].result == "fallback"
    assert probe.calls == []
    b = next(r for _it, _i, step, _s, r, *_ in handle.execution.step_states() if step.id == "b")
    assert b.to_json() == {"outcome": "skipped", "reason": "dependency a was skipped"}


async def test_skip_example_from_the_spec(open_gw: Any) -> None:
    f = flow(
        {"$step": "store"},
        echo("enrich", {"text": {"$input": "text"}}, skipIf={"$input": "fast_mode"}),
        echo(
            "store",
            {
                "text": {"$input": "text"},
                "extra": {"$step": "enrich", "onSkip": {"action": "useDefault", "defaultValue": {}}},
            },
        ),
    )
    async with open_gw() as (gw, probe):
        fast, slow = await gw.run_batch(
            f, [{"text": "t", "fast_mode": True}, {"text": "t", "fast_mode": False}]
        )
    assert fast.result == {"text": "t", "extra": {}}
    assert slow.result == {"text": "t", "extra": {"text": "t"}}
    assert sorted((c.item_index, c.step_id) for c in probe.calls) == [
        (0, "store"),
        (1, "enrich"),
        (1, "store"),
    ]
