"""Flow validation: the diagnostics of flow-format.md §10, each with a JSON path.

``validate_flow`` checks the flow alone; pass ``router``/``component_known`` to add the config checks
(route misses, routes to unknown plugins, unknown components, literal inputs against schemas).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from .diagnostics import Diagnostic, make_diagnostic
from .expr import (
    ArrayExpr,
    Coalesce,
    Expr,
    If,
    Literal,
    ObjectExpr,
    StepRef,
    Template,
    VariableRef,
)
from .model import FLOW_SCHEMA_URL, Flow

__all__ = ["iter_nodes", "validate_flow", "blocking"]


def iter_nodes(expr: Expr | None) -> Iterator[Expr]:
    """Every node of an expression tree, depth first."""
    if expr is None:
        return
    stack: list[Expr] = [expr]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ObjectExpr):
            stack.extend(reversed(node.exprs))
        elif isinstance(node, ArrayExpr | Coalesce):
            stack.extend(reversed(node.items))
        elif isinstance(node, If):
            if node.otherwise is not None:
                stack.append(node.otherwise)
            stack.append(node.then)
            stack.append(node.cond)
        elif isinstance(node, VariableRef):
            if node.default is not None:
                stack.append(node.default)
        elif isinstance(node, Template):
            if node.values is not None:
                stack.append(node.values)


def step_dependencies(flow: Flow, index: int) -> list[str]:
    """Step ids a step may reference (input, skipIf, depends_on), with duplicates removed."""
    step = flow.steps[index]
    deps: dict[str, None] = {}
    for expr in (step.input, step.skip_if):
        for node in iter_nodes(expr):
            if isinstance(node, StepRef):
                deps[node.step] = None
    for d in step.depends_on:
        deps[d] = None
    return list(deps)


def validate_flow(
    flow: Flow,
    *,
    route: Callable[[str], tuple[str, str] | str] | None = None,
    component_check: Callable[[str, str, Any], list[str] | None] | None = None,
    plugin_names: list[str] | None = None,
) -> list[Diagnostic]:
    """Diagnostics for ``flow``.

    ``route(component)`` returns ``(plugin, local name)`` or an error message string;
    ``component_check(plugin, local, literal_input)`` returns ``None`` when the plugin's components
    are unknown, else a list of problems (empty when fine; ``"unknown"`` alone means no such component).
    """
    diags: list[Diagnostic] = []
    if flow.name is None:
        diags.append(make_diagnostic("missingFlowName", "$.name", "Workflow has no name"))
    if flow.description is None:
        diags.append(
            make_diagnostic("missingFlowDescription", "$.description", "Workflow has no description")
        )

    index_of: dict[str, int] = {}
    for i, step in enumerate(flow.steps):
        where = f"$.steps[{i}]"
        if step.id == "":
            diags.append(make_diagnostic("emptyStepId", f"{where}.id", "Step id is empty"))
        elif step.id in index_of:
            diags.append(
                make_diagnostic(
                    "duplicateStepId",
                    f"{where}.id",
                    f"Duplicate step id '{step.id}' (first defined at $.steps[{index_of[step.id]}])",
                    {"step_id": step.id},
                )
            )
        else:
            index_of[step.id] = i
        if step.component == "":
            diags.append(
                make_diagnostic(
                    "emptyComponentName", f"{where}.component", f"Step '{step.id}' has no component"
                )
            )
        elif not step.component.startswith("/"):
            diags.append(
                make_diagnostic(
                    "invalidComponent",
                    f"{where}.component",
                    f"Component '{step.component}' of step '{step.id}' must start with '/'",
                )
            )

    # references: only earlier steps
    def check_refs(expr: Expr | None, where: str, current: int | None, sid: str | None) -> None:
        for node in iter_nodes(expr):
            if isinstance(node, StepRef):
                _check_ref(node.step, where, current, sid)
            elif isinstance(node, Literal) and node.wrapped:
                _check_subflow(node.value, where)

    def _check_ref(target: str, where: str, current: int | None, sid: str | None) -> None:
        ti = index_of.get(target)
        if current is not None and target == sid:
            diags.append(make_diagnostic("selfReference", where, f"Step '{sid}' references itself"))
        elif ti is None:
            diags.append(
                make_diagnostic(
                    "undefinedStepReference",
                    where,
                    f"Reference to undefined step '{target}'",
                    {"step_id": target},
                )
            )
        elif current is not None and ti > current:
            diags.append(
                make_diagnostic(
                    "undefinedStepReference",
                    where,
                    f"Step '{sid}' references step '{target}', which comes later; "
                    "only earlier steps can be referenced",
                    {"step_id": target},
                )
            )

    def _check_subflow(value: Any, where: str) -> None:
        if isinstance(value, dict) and value.get("schema") == FLOW_SCHEMA_URL:
            from ..errors import FlowLoadError
            from .load import parse_flow

            try:
                sub = parse_flow(value).flow
            except FlowLoadError as exc:
                diags.append(
                    make_diagnostic("invalidSubflowLiteral", where, f"Invalid nested flow: {exc.message}")
                )
                return
            for d in validate_flow(sub):
                if d.level in ("fatal", "error"):
                    diags.append(
                        make_diagnostic("invalidSubflowLiteral", where, f"Invalid nested flow: {d.formatted}")
                    )

    for i, step in enumerate(flow.steps):
        where = f"$.steps[{i}]"
        check_refs(step.input, f"{where}.input", i, step.id)
        check_refs(step.skip_if, f"{where}.skipIf", i, step.id)
        for j, dep in enumerate(step.depends_on):
            _check_ref(dep, f"{where}.depends_on[{j}]", i, step.id)
    check_refs(flow.output, "$.output", None, None)

    # variables
    var_schema = flow.variables_schema
    declared = var_schema.get("properties") if isinstance(var_schema, dict) else None
    required = set(var_schema.get("required") or []) if isinstance(var_schema, dict) else set()
    exprs: list[tuple[str, Expr | None]] = [("$.output", flow.output)]
    for i, s in enumerate(flow.steps):
        exprs.append((f"$.steps[{i}].input", s.input))
        exprs.append((f"$.steps[{i}].skipIf", s.skip_if))
    missing_schema_reported = False
    for where, expr in exprs:
        for node in iter_nodes(expr):
            if not isinstance(node, VariableRef):
                continue
            if declared is None:
                if not missing_schema_reported:
                    diags.append(
                        make_diagnostic(
                            "missingVariableSchema",
                            where,
                            "Flow uses $variable but declares no schemas.properties.variables",
                        )
                    )
                    missing_schema_reported = True
            elif isinstance(declared, dict) and node.name not in declared:
                kind = (
                    "undefinedRequiredVariable"
                    if node.default is None and node.name in required
                    else "undefinedVariable"
                )
                diags.append(
                    make_diagnostic(
                        kind,
                        where,
                        f"Variable '{node.name}' is not declared in schemas.properties.variables",
                        {"variable": node.name},
                    )
                )

    # reachability: from output and mustExecute steps
    needed: set[str] = set()
    work: list[str] = []
    for node in iter_nodes(flow.output):
        if isinstance(node, StepRef):
            work.append(node.step)
    for s in flow.steps:
        if s.must_execute:
            work.append(s.id)
    while work:
        sid = work.pop()
        if sid in needed or sid not in index_of:
            continue
        needed.add(sid)
        work.extend(step_dependencies(flow, index_of[sid]))
    for i, s in enumerate(flow.steps):
        if s.id and s.id not in needed and s.id in index_of and index_of[s.id] == i:
            diags.append(
                make_diagnostic(
                    "unreachableStep",
                    f"$.steps[{i}]",
                    f"Step '{s.id}' is not referenced by the output or any needed step and will not run "
                    "(use mustExecute or depends_on)",
                    {"step_id": s.id},
                )
            )

    # config checks
    if route is not None:
        used_plugins: set[str] = set()
        for i, s in enumerate(flow.steps):
            if not s.component.startswith("/"):
                continue
            where = f"$.steps[{i}].component"
            r = route(s.component)
            if isinstance(r, str):
                diags.append(make_diagnostic("invalidComponent", where, f"Step '{s.id}': {r}"))
                continue
            plugin, local = r
            used_plugins.add(plugin)
            if component_check is None:
                continue
            literal = s.input.value if isinstance(s.input, Literal) else _LITERAL_UNKNOWN
            problems = component_check(plugin, local, literal)
            if problems is None:
                continue
            if problems == ["unknown"]:
                diags.append(
                    make_diagnostic(
                        "unknownComponent",
                        where,
                        f"Step '{s.id}': plugin '{plugin}' has no component '{local}'",
                        {"plugin": plugin, "component": local},
                    )
                )
            else:
                for p in problems:
                    diags.append(
                        make_diagnostic("invalidStepInput", f"$.steps[{i}].input", f"Step '{s.id}': {p}")
                    )
    return diags


_LITERAL_UNKNOWN: Any = object()
"""Passed to ``component_check`` when a step's input is not a literal."""


def blocking(diags: list[Diagnostic], *, errors_block: bool) -> list[Diagnostic]:
    """The diagnostics that stop a run: fatal always, error-level when ``errors_block``."""
    levels = ("fatal", "error") if errors_block else ("fatal",)
    return [d for d in diags if d.level in levels]
