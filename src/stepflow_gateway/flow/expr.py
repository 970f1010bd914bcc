"""The expression language: compile JSON values to expression nodes, evaluate them, serialise them back.

Owns flow-format.md §5 (forms, precedence, paths in references, evaluation) and the expression part of
§13 (normalised form). Compilation happens once per flow; evaluation runs on the hot path, so the
nodes are slotted classes with an ``eval`` method and the outcome protocol is allocation-light:

* a plain value means success;
* ``Failed(error)`` / ``Skipped(reason)`` are the non-success outcomes;
* ``Pending(needs)`` means "cannot be decided yet; these steps must complete first".

Plain JSON values can never be instances of those three classes, so one ``type()`` check tells them
apart.
"""

from __future__ import annotations

import re
from typing import Any

from ..core.result import ResultError
from ..errors import FlowLoadError
from ..jsonpath import MISSING, JsonPath, parse_path
from ..jsonutil import dumps_compact

__all__ = [
    "Coalesce",
    "Expr",
    "Failed",
    "If",
    "InputRef",
    "Literal",
    "ObjectExpr",
    "ArrayExpr",
    "Pending",
    "Skipped",
    "StepRef",
    "Template",
    "VariableRef",
    "compile_expr",
    "is_truthy",
]


class Failed:
    """Evaluation failed with ``error``."""

    __slots__ = ("error",)

    def __init__(self, error: ResultError) -> None:
        self.error = error

    def __repr__(self) -> str:
        return f"Failed({self.error!r})"


class Skipped:
    """Evaluation was skipped ([gw] skip propagation)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str | None) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Skipped({self.reason!r})"


class Pending:
    """Evaluation needs these (not yet complete) steps."""

    __slots__ = ("needs",)

    def __init__(self, needs: list[str]) -> None:
        self.needs = needs

    def __repr__(self) -> str:
        return f"Pending({self.needs!r})"


_OUTCOME_TYPES = (Failed, Skipped, Pending)


def is_truthy(value: Any) -> bool:
    """``$if`` truthiness: anything but ``null`` and ``false`` (failed/skipped count as false)."""
    if value is None or value is False:
        return False
    return type(value) not in _OUTCOME_TYPES


class EvalScope:
    """What expressions read while evaluating for one item. The executor's item state subclasses it."""

    __slots__ = ("input", "results", "variables", "known_steps")

    def __init__(
        self, input: Any, results: dict[str, Any], variables: dict[str, Any], known_steps: Any
    ) -> None:
        self.input = input
        self.results = results
        """step id -> outcome (value, ``Failed`` or ``Skipped``) of *completed* steps only."""
        self.variables = variables
        """variable name -> resolved value (supplied or schema default)."""
        self.known_steps = known_steps
        """container of the flow's step ids (for the unknown-step guard)."""


class Expr:
    """Base of expression nodes."""

    __slots__ = ()

    def eval(self, scope: EvalScope) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_json(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def step_refs(self) -> list[tuple[str, str]]:
        """Every ``(step id, json-path suffix)`` referenced anywhere inside (for validation)."""
        return []

    @property
    def is_literal(self) -> bool:
        return False


class Literal(Expr):
    """A constant value (plain JSON or ``$literal``)."""

    __slots__ = ("value", "wrapped")

    def __init__(self, value: Any, wrapped: bool = False) -> None:
        self.value = value
        self.wrapped = wrapped

    def eval(self, scope: EvalScope) -> Any:
        return self.value

    def to_json(self) -> Any:
        if self.wrapped:
            return {"$literal": self.value}
        return self.value

    @property
    def is_literal(self) -> bool:
        return True


class StepRef(Expr):
    """``{$step: id, path?, onSkip?}``."""

    __slots__ = ("step", "path", "on_skip_default", "on_skip_raw", "_lookup")

    def __init__(self, step: str, path: JsonPath, on_skip_raw: Any = None) -> None:
        self.step = step
        self.path = path
        self.on_skip_raw = on_skip_raw
        # onSkip: {action: skip} (default) or {action: useDefault, defaultValue?}
        self.on_skip_default: Any = MISSING
        if isinstance(on_skip_raw, dict) and on_skip_raw.get("action") == "useDefault":
            self.on_skip_default = on_skip_raw.get("defaultValue")
        self._lookup = path.lookup if path.segments else None

    def eval(self, scope: EvalScope) -> Any:
        value = scope.results.get(self.step, MISSING)
        if value is MISSING:
            if self.step not in scope.known_steps:
                return Failed(ResultError(404, f"Unknown step: {self.step}"))
            return Pending([self.step])
        if value is None:
            return None
        t = type(value)
        if t is Failed:
            return value
        if t is Skipped:
            if self.on_skip_default is not MISSING:
                return self.on_skip_default
            return Skipped(f"dependency {self.step} was skipped")
        if self._lookup is None:
            return value
        found = self._lookup(value)
        if found is MISSING:
            return Failed(ResultError(1, f"Path {self.path.display()} not found"))
        return found

    def to_json(self) -> Any:
        out: dict[str, Any] = {"$step": self.step}
        if self.path.segments:
            out["path"] = self.path.display()
        if self.on_skip_raw is not None:
            out["onSkip"] = self.on_skip_raw
        return out

    def step_refs(self) -> list[tuple[str, str]]:
        return [(self.step, self.path.display())]


class InputRef(Expr):
    """``{$input: path}`` — the path is the value of ``$input``."""

    __slots__ = ("path", "_lookup")

    def __init__(self, path: JsonPath) -> None:
        self.path = path
        self._lookup = path.lookup if path.segments else None

    def eval(self, scope: EvalScope) -> Any:
        if self._lookup is None:
            return scope.input
        found = self._lookup(scope.input)
        if found is MISSING:
            return Failed(ResultError(1, f"Input path {self.path.display()} not found"))
        return found

    def to_json(self) -> Any:
        return {"$input": self.path.display()}


class VariableRef(Expr):
    """``{$variable: name-or-path, default?}``: the first path segment is the variable name."""

    __slots__ = ("path", "name", "subpath", "default")

    def __init__(self, path: JsonPath, default: Expr | None) -> None:
        self.path = path
        if not path.segments:
            raise ValueError("empty variable path")
        self.name = str(path.segments[0])
        self.subpath = JsonPath(path.segments[1:])
        self.default = default

    def eval(self, scope: EvalScope) -> Any:
        value = scope.variables.get(self.name, MISSING)
        if value is not MISSING:
            if not self.subpath.segments:
                return value
            found = self.subpath.lookup(value)
            if found is not MISSING:
                return found
        if self.default is not None:
            return self.default.eval(scope)
        return Failed(ResultError(1, f"Undefined variable: {self.name}"))

    def to_json(self) -> Any:
        out: dict[str, Any] = {"$variable": self.path.display()}
        if self.default is not None:
            out["default"] = self.default.to_json()
        return out

    def step_refs(self) -> list[tuple[str, str]]:
        return self.default.step_refs() if self.default is not None else []


class If(Expr):
    """``{$if: cond, then, else?}``: a failed or skipped condition counts as false."""

    __slots__ = ("cond", "then", "otherwise")

    def __init__(self, cond: Expr, then: Expr, otherwise: Expr | None) -> None:
        self.cond = cond
        self.then = then
        self.otherwise = otherwise

    def eval(self, scope: EvalScope) -> Any:
        c = self.cond.eval(scope)
        if type(c) is Pending:
            return c
        if is_truthy(c):
            return self.then.eval(scope)
        if self.otherwise is None:
            return None
        return self.otherwise.eval(scope)

    def to_json(self) -> Any:
        out: dict[str, Any] = {"$if": self.cond.to_json(), "then": self.then.to_json()}
        if self.otherwise is not None:
            out["else"] = self.otherwise.to_json()
        return out

    def step_refs(self) -> list[tuple[str, str]]:
        refs = self.cond.step_refs() + self.then.step_refs()
        if self.otherwise is not None:
            refs += self.otherwise.step_refs()
        return refs


class Coalesce(Expr):
    """``{$coalesce: [...]}``: first non-null success; null and skipped pass; a failure stops."""

    __slots__ = ("items",)

    def __init__(self, items: list[Expr]) -> None:
        self.items = items

    def eval(self, scope: EvalScope) -> Any:
        for item in self.items:
            v = item.eval(scope)
            if v is None:
                continue
            t = type(v)
            if t is Skipped:
                continue
            return v  # a value, a Failed or a Pending all decide here
        return None

    def to_json(self) -> Any:
        return {"$coalesce": [i.to_json() for i in self.items]}

    def step_refs(self) -> list[tuple[str, str]]:
        return [r for i in self.items for r in i.step_refs()]


def _eval_members(exprs: Any, scope: EvalScope) -> Any:
    """Evaluate members in order. Returns the list of values, or the deciding non-success outcome."""
    values = []
    needs: list[str] | None = None
    for e in exprs:
        v = e.eval(scope)
        t = type(v)
        if t is Pending:
            if needs is None:
                needs = list(v.needs)
            else:
                needs.extend(v.needs)
            continue
        if t is Failed or t is Skipped:
            # Members after the first failure cannot change the result; earlier pending ones can.
            if needs is not None:
                return Pending(needs)
            return v
        values.append(v)
    if needs is not None:
        return Pending(needs)
    return values


class ObjectExpr(Expr):
    """An object with at least one non-literal member; keeps key order."""

    __slots__ = ("keys", "exprs")

    def __init__(self, keys: list[str], exprs: list[Expr]) -> None:
        self.keys = keys
        self.exprs = exprs

    def eval(self, scope: EvalScope) -> Any:
        values = _eval_members(self.exprs, scope)
        if type(values) is not list:
            return values
        return dict(zip(self.keys, values, strict=True))

    def to_json(self) -> Any:
        return {k: e.to_json() for k, e in zip(self.keys, self.exprs, strict=True)}

    def step_refs(self) -> list[tuple[str, str]]:
        return [r for e in self.exprs for r in e.step_refs()]


class ArrayExpr(Expr):
    """An array with at least one non-literal member."""

    __slots__ = ("items",)

    def __init__(self, items: list[Expr]) -> None:
        self.items = items

    def eval(self, scope: EvalScope) -> Any:
        return _eval_members(self.items, scope)

    def to_json(self) -> Any:
        return [e.to_json() for e in self.items]

    def step_refs(self) -> list[tuple[str, str]]:
        return [r for e in self.items for r in e.step_refs()]


_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*\}\}")


class Template(Expr):
    """``{$template: "text {{name}}", values?: {name: expr}}`` [gw], flow-format.md §5.5."""

    __slots__ = ("text", "values", "names")

    def __init__(self, text: str, values: ObjectExpr | Literal | None) -> None:
        self.text = text
        self.values = values
        self.names = [m.group(1) for m in _PLACEHOLDER.finditer(text)]

    def eval(self, scope: EvalScope) -> Any:
        resolved = self.values.eval(scope) if self.values is not None else {}
        if type(resolved) is not dict:
            return resolved  # Pending / Failed / Skipped
        for name in self.names:
            if name not in resolved:
                return Failed(ResultError(1, f"Template value {name} not found"))

        def render(m: re.Match[str]) -> str:
            v = resolved[m.group(1)]
            return v if isinstance(v, str) else dumps_compact(v)

        return _PLACEHOLDER.sub(render, self.text)

    def to_json(self) -> Any:
        out: dict[str, Any] = {"$template": self.text}
        if self.values is not None:
            out["values"] = self.values.to_json()
        return out

    def step_refs(self) -> list[tuple[str, str]]:
        return self.values.step_refs() if self.values is not None else []


# ---------------------------------------------------------------------------------------------
# compilation

_SPECIAL = ("$literal", "$if", "$coalesce", "$step", "$input", "$variable", "$template", "$from")
_ALLOWED_SIBLINGS = {
    "$literal": (),
    "$if": ("then", "else"),
    "$coalesce": (),
    "$step": ("path", "onSkip"),
    "$input": (),
    "$variable": ("default",),
    "$template": ("values",),
    "$from": ("path", "onSkip"),
}


class CompileNotes:
    """Warnings collected while compiling (``unknownField``, ``legacySyntax``)."""

    __slots__ = ("warnings",)

    def __init__(self) -> None:
        self.warnings: list[tuple[str, str, str]] = []
        """(kind, json path, message)."""

    def warn(self, kind: str, path: str, message: str) -> None:
        self.warnings.append((kind, path, message))


def _path(value: Any, where: str) -> JsonPath:
    if value is not None and not isinstance(value, str):
        raise FlowLoadError(f"expected a path string, got {dumps_compact(value)}", json_path=where)
    try:
        return parse_path(value)
    except FlowLoadError as exc:
        raise FlowLoadError(exc.message, json_path=where) from None


def compile_expr(value: Any, where: str = "$", notes: CompileNotes | None = None) -> Expr:
    """Compile a JSON value into an expression. Raises ``FlowLoadError`` (with ``json_path``)."""
    t = type(value)
    if t is dict:
        special = None
        for key in _SPECIAL:
            if key in value:
                special = key
                break
        if special is None:
            keys = list(value)
            exprs = [compile_expr(value[k], f"{where}.{k}", notes) for k in keys]
            if all(e.is_literal and not e.wrapped for e in exprs):  # type: ignore[attr-defined]
                return Literal(value)
            return ObjectExpr(keys, exprs)
        if notes is not None:
            allowed = _ALLOWED_SIBLINGS[special]
            for k in value:
                if k != special and k not in allowed:
                    notes.warn("unknownField", f"{where}.{k}", f"key '{k}' is ignored next to '{special}'")
        return _compile_special(special, value, where, notes)
    if t is list:
        items = [compile_expr(v, f"{where}[{i}]", notes) for i, v in enumerate(value)]
        if all(e.is_literal and not e.wrapped for e in items):  # type: ignore[attr-defined]
            return Literal(value)
        return ArrayExpr(items)
    return Literal(value)


def _compile_special(special: str, value: dict[str, Any], where: str, notes: CompileNotes | None) -> Expr:
    if special == "$literal":
        return Literal(value["$literal"], wrapped=True)
    if special == "$if":
        if "then" not in value:
            raise FlowLoadError("'$if' needs a 'then' branch", json_path=where)
        otherwise = compile_expr(value["else"], f"{where}.else", notes) if "else" in value else None
        return If(
            compile_expr(value["$if"], f"{where}.$if", notes),
            compile_expr(value["then"], f"{where}.then", notes),
            otherwise,
        )
    if special == "$coalesce":
        items = value["$coalesce"]
        if not isinstance(items, list):
            raise FlowLoadError("'$coalesce' expects an array of expressions", json_path=where)
        return Coalesce([compile_expr(v, f"{where}.$coalesce[{i}]", notes) for i, v in enumerate(items)])
    if special == "$step":
        step = value["$step"]
        if not isinstance(step, str):
            raise FlowLoadError(
                f"'$step' expects a step id string, got {dumps_compact(step)}", json_path=f"{where}.$step"
            )
        on_skip = _on_skip(value.get("onSkip"), f"{where}.onSkip")
        return StepRef(step, _path(value.get("path"), f"{where}.path"), on_skip)
    if special == "$input":
        return InputRef(_path(value["$input"], f"{where}.$input"))
    if special == "$variable":
        p = _path(value["$variable"], f"{where}.$variable")
        if not p.segments:
            raise FlowLoadError("'$variable' needs a variable name", json_path=f"{where}.$variable")
        default = compile_expr(value["default"], f"{where}.default", notes) if "default" in value else None
        return VariableRef(p, default)
    if special == "$template":
        text = value["$template"]
        if not isinstance(text, str):
            raise FlowLoadError("'$template' expects a string", json_path=f"{where}.$template")
        values = value.get("values")
        compiled: ObjectExpr | Literal | None = None
        if values is not None:
            if not isinstance(values, dict):
                raise FlowLoadError("'values' of '$template' must be an object", json_path=f"{where}.values")
            c = compile_expr(values, f"{where}.values", notes)
            if not isinstance(c, ObjectExpr) and not (isinstance(c, Literal) and isinstance(c.value, dict)):
                # e.g. {values: {$literal: "text"}} would otherwise render as that value
                raise FlowLoadError("'values' of '$template' must be an object", json_path=f"{where}.values")
            compiled = c
        return Template(text, compiled)
    # legacy $from
    if notes is not None:
        notes.warn("legacySyntax", where, "'$from' is deprecated; use '$step', '$input' or '$variable'")
    src = value["$from"]
    path_raw = value.get("path")
    if isinstance(src, dict):
        if "step" in src and isinstance(src["step"], str):
            on_skip = _on_skip(value.get("onSkip"), f"{where}.onSkip")
            return StepRef(src["step"], _path(path_raw, f"{where}.path"), on_skip)
        if src.get("workflow") == "input":
            return InputRef(_path(path_raw, f"{where}.path"))
        if "variable" in src and isinstance(src["variable"], str):
            sub = _path(path_raw, f"{where}.path")
            full = JsonPath((src["variable"], *sub.segments))
            default = Literal(src["default"], wrapped=True) if "default" in src else None
            return VariableRef(full, default)
    raise FlowLoadError(
        "'$from' expects {step: <id>}, {workflow: input} or {variable: <name>}", json_path=f"{where}.$from"
    )


def _on_skip(raw: Any, where: str) -> Any:
    if raw is None:
        return None
    if not isinstance(raw, dict) or raw.get("action") not in ("skip", "useDefault"):
        raise FlowLoadError(
            "'onSkip' expects {action: skip} or {action: useDefault, defaultValue?}", json_path=where
        )
    return raw
