"""Matching of embedded test cases' expected results (flow-format.md §14.3).

Owns the two rules the test runner applies to a case's expected and actual ``FlowResult`` (wire
form, plain dicts):

* :func:`normalize_result` — sort object keys, replace every string ``run_id`` with the zero UUID,
  drop every ``backtrace`` key, at any depth;
* :func:`partial_match` / :func:`match_flow_result` — objects match partially (extra actual keys are
  fine), arrays need equal length, scalars must be equal *including the JSON number kind*
  (``15`` != ``15.0``, ``1`` != ``true``). A mismatch is explained in one line with its JSON path.
"""

from __future__ import annotations

from typing import Any

from ..jsonpath import JsonPath
from ..jsonutil import dumps_compact

__all__ = ("ZERO_RUN_ID", "match_flow_result", "normalize_result", "partial_match")

ZERO_RUN_ID = "00000000-0000-0000-0000-000000000000"
"""What every string ``run_id`` is replaced with before matching."""

# Long values are cut in explanations so that a mismatch stays one readable line.
_MAX_SHOWN = 200


def normalize_result(value: Any) -> Any:
    """A copy with sorted keys, string ``run_id`` values zeroed and ``backtrace`` keys removed."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key in sorted(value):
            if key == "backtrace":
                continue
            item = value[key]
            if key == "run_id" and isinstance(item, str):
                out[key] = ZERO_RUN_ID
            else:
                out[key] = normalize_result(item)
        return out
    if isinstance(value, (list, tuple)):
        return [normalize_result(item) for item in value]
    return value


def partial_match(expected: Any, actual: Any) -> str | None:
    """``None`` when ``actual`` matches ``expected``, else a one-line explanation naming the JSON path."""
    return _match(expected, actual, [])


def match_flow_result(expected: dict[str, Any], actual: dict[str, Any]) -> str | None:
    """Compare an expected and an actual ``FlowResult`` (wire form) after normalising both.

    The outcomes must be equal. success: ``result`` is partially matched. failed: ``code`` and
    ``message`` must be equal, ``data`` is partially matched only when expected. skipped: ``reason``
    is compared only when expected. Returns ``None`` on a match, else a one-line explanation.
    """
    expected = normalize_result(expected)
    actual = normalize_result(actual)
    want = expected.get("outcome")
    got = actual.get("outcome")
    if want != got or not isinstance(want, str):
        return f"expected outcome {_show(want)} but got {_show(got)}{_summary(actual)}"
    if want == "success":
        return _match(expected.get("result"), actual.get("result"), ["result"])
    if want == "failed":
        want_error = expected.get("error")
        got_error = actual.get("error")
        if not isinstance(want_error, dict):
            return f"at $.error: the expected failed result has no error object (found {_show(want_error)})"
        if not isinstance(got_error, dict):
            return f"at $.error: expected an error object but got {_show(got_error)}"
        for field in ("code", "message"):
            problem = _scalar(want_error.get(field), got_error.get(field), ["error", field])
            if problem is not None:
                return problem
        if "data" in want_error:
            if "data" not in got_error:
                return f"at $.error.data: expected {_show(want_error['data'])} but the error has no data"
            return _match(want_error["data"], got_error["data"], ["error", "data"])
        return None
    if want == "skipped":
        if "reason" in expected:
            return _scalar(expected["reason"], actual.get("reason"), ["reason"])
        return None
    return f"at $.outcome: unknown outcome {_show(want)}"


def _match(expected: Any, actual: Any, path: list[str | int]) -> str | None:
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return _mismatch(expected, actual, path)
        for key, want in expected.items():
            if key not in actual:
                return f"at {_where(path, key)}: expected {_show(want)} but the key is missing"
            path.append(key)
            problem = _match(want, actual[key], path)
            path.pop()
            if problem is not None:
                return problem
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return _mismatch(expected, actual, path)
        if len(expected) != len(actual):
            return (
                f"at {_where(path)}: expected an array of {len(expected)} items but got "
                f"{len(actual)}: {_show(actual)}"
            )
        for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
            path.append(index)
            problem = _match(want, got, path)
            path.pop()
            if problem is not None:
                return problem
        return None
    return _scalar(expected, actual, path)


def _scalar(expected: Any, actual: Any, path: list[str | int]) -> str | None:
    # The class check keeps JSON kinds apart where Python's == does not: 15 == 15.0, 1 == True.
    if expected.__class__ is actual.__class__ and expected == actual:
        return None
    return _mismatch(expected, actual, path)


def _mismatch(expected: Any, actual: Any, path: list[str | int]) -> str:
    return f"at {_where(path)}: expected {_show(expected)} but got {_show(actual)}"


def _where(path: list[str | int], key: str | None = None) -> str:
    segments = tuple(path) if key is None else (*path, key)
    return JsonPath(segments).display()


def _show(value: Any) -> str:
    try:
        text = dumps_compact(value)
    except (TypeError, ValueError):
        text = repr(value)
    if len(text) > _MAX_SHOWN:
        text = text[: _MAX_SHOWN - 3] + "..."
    return text


def _summary(actual: dict[str, Any]) -> str:
    """A hint of why the actual run ended as it did (its error code and message)."""
    error = actual.get("error")
    if actual.get("outcome") == "failed" and isinstance(error, dict):
        return f" (error {_show(error.get('code'))}: {_show(error.get('message'))})"
    return ""
