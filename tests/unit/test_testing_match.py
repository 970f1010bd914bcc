"""engine.testing_match: result normalisation and partial matching (flow-format.md §14.3)."""

from __future__ import annotations

import pytest

from stepflow_gateway.engine.testing_match import (
    ZERO_RUN_ID,
    match_flow_result,
    normalize_result,
    partial_match,
)


def test_normalize_sorts_zeroes_run_ids_and_drops_backtraces() -> None:
    value = {
        "z": 1,
        "run_id": "5f0c6c1e-1111-2222-3333-444444444444",
        "a": {
            "stack": [{"error": "x", "backtrace": "at foo.rs:1", "attachments": ["y"]}],
            "run_id": 7,  # not a string: kept
            "backtrace": {"deep": True},
        },
        "list": [{"b": 1, "a": {"run_id": "r"}}],
    }
    out = normalize_result(value)
    assert out == {
        "a": {"run_id": 7, "stack": [{"attachments": ["y"], "error": "x"}]},
        "list": [{"a": {"run_id": ZERO_RUN_ID}, "b": 1}],
        "run_id": ZERO_RUN_ID,
        "z": 1,
    }
    assert list(out) == ["a", "list", "run_id", "z"]
    assert list(out["list"][0]) == ["a", "b"]
    assert value["run_id"] != ZERO_RUN_ID  # the input is not modified


@pytest.mark.parametrize(
    ("expected", "actual"),
    [
        ({"a": 1}, {"a": 1, "b": 2}),  # extra actual keys are fine
        ({}, {"anything": [1]}),
        ({"a": {"b": [1, {"c": 2}]}}, {"a": {"b": [1, {"c": 2, "d": 3}], "e": 4}}),
        ([{"x": 1}], [{"x": 1, "y": 2}]),  # partial inside arrays, equal length
        (15.0, 15.0),
        (15, 15),
        ("s", "s"),
        (None, None),
        (True, True),
        ([], []),
    ],
)
def test_partial_match_ok(expected: object, actual: object) -> None:
    assert partial_match(expected, actual) is None


@pytest.mark.parametrize(
    ("expected", "actual", "explanation"),
    [
        (15, 15.0, "at $: expected 15 but got 15.0"),
        (15.0, 15, "at $: expected 15.0 but got 15"),
        (1, True, "at $: expected 1 but got true"),
        (True, 1, "at $: expected true but got 1"),
        (0, False, "at $: expected 0 but got false"),
        ({"a": 1}, {"b": 1}, "at $.a: expected 1 but the key is missing"),
        ({"a": {"b.c": 1}}, {"a": {}}, 'at $.a["b.c"]: expected 1 but the key is missing'),
        ({"a": [1, 2]}, {"a": [1, 2, 3]}, "at $.a: expected an array of 2 items but got 3: [1,2,3]"),
        ({"a": [1, {"b": "x"}]}, {"a": [1, {"b": "y"}]}, 'at $.a[1].b: expected "x" but got "y"'),
        ({"a": {}}, {"a": []}, "at $.a: expected {} but got []"),
        ([1], {"0": 1}, 'at $: expected [1] but got {"0":1}'),
        (None, {"a": 1}, 'at $: expected null but got {"a":1}'),
        ("x", None, 'at $: expected "x" but got null'),
    ],
)
def test_partial_match_explains(expected: object, actual: object, explanation: str) -> None:
    assert partial_match(expected, actual) == explanation


def test_long_values_are_shortened() -> None:
    problem = partial_match("a", "b" * 1000)
    assert problem == 'at $: expected "a" but got "' + "b" * 196 + "..."


def success(result: object) -> dict[str, object]:
    return {"outcome": "success", "result": result}


def failed(code: object, message: str, **extra: object) -> dict[str, object]:
    return {"outcome": "failed", "error": {"code": code, "message": message, **extra}}


@pytest.mark.parametrize(
    ("expected", "actual"),
    [
        (success({"sum": 3}), success({"sum": 3, "extra": "ok"})),
        (success(None), success(None)),
        ({"outcome": "success"}, success(None)),
        (
            success({"run_id": "aaaa", "result": {"outcome": "success", "result": 2}}),
            success({"run_id": "bbbb", "result": {"outcome": "success", "result": 2}}),
        ),
        (failed(8, "error"), failed(8, "error", data={"x": 1})),  # data only compared when expected
        (
            failed(500, 'step "s" failed', data={"stack": [{"error": 'step "s" failed'}, {"error": "e"}]}),
            failed(
                500,
                'step "s" failed',
                data={
                    "stack": [
                        {"error": 'step "s" failed', "backtrace": "..."},
                        {"error": "e", "attachments": ["more"]},
                    ]
                },
            ),
        ),
        ({"outcome": "skipped"}, {"outcome": "skipped", "reason": "because"}),
        ({"outcome": "skipped", "reason": "because"}, {"outcome": "skipped", "reason": "because"}),
    ],
)
def test_match_flow_result_ok(expected: dict[str, object], actual: dict[str, object]) -> None:
    assert match_flow_result(expected, actual) is None


@pytest.mark.parametrize(
    ("expected", "actual", "explanation"),
    [
        (
            success({"a": 1}),
            failed(500, 'step "x" failed'),
            'expected outcome "success" but got "failed" (error 500: "step \\"x\\" failed")',
        ),
        (failed(1, "x"), success(1), 'expected outcome "failed" but got "success"'),
        ({"result": 1}, success(1), 'expected outcome null but got "success"'),
        (success({"v": 15}), success({"v": 15.0}), "at $.result.v: expected 15 but got 15.0"),
        (success([1, 2]), success([1, 2, 3]), "at $.result: expected an array of 2 items but got 3: [1,2,3]"),
        (failed(8, "error"), failed(9, "error"), "at $.error.code: expected 8 but got 9"),
        (failed(8, "error"), failed(8.0, "error"), "at $.error.code: expected 8 but got 8.0"),
        (failed(8, "error"), failed(8, "Error"), 'at $.error.message: expected "error" but got "Error"'),
        (
            failed(1, "m", data={"k": "v"}),
            failed(1, "m"),
            'at $.error.data: expected {"k":"v"} but the error has no data',
        ),
        (
            failed(500, "m", data={"stack": [{"error": "a"}]}),
            failed(500, "m", data={"stack": [{"error": "a"}, {"error": "b"}]}),
            'at $.error.data.stack: expected an array of 1 items but got 2: [{"error":"a"},{"error":"b"}]',
        ),
        (
            {"outcome": "skipped", "reason": "r"},
            {"outcome": "skipped"},
            'at $.reason: expected "r" but got null',
        ),
        ({"outcome": "failed"}, failed(1, "m"), "at $.error: the expected failed result has no error object"),
        ({"outcome": "weird"}, {"outcome": "weird"}, 'at $.outcome: unknown outcome "weird"'),
    ],
)
def test_match_flow_result_explains(
    expected: dict[str, object], actual: dict[str, object], explanation: str
) -> None:
    problem = match_flow_result(expected, actual)
    assert problem is not None
    assert problem.startswith(explanation)
    assert "\n" not in problem
