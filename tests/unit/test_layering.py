"""The package's layering and its import graph, read from the source with ``ast`` (nothing is imported).

Every ``import`` of every module counts, wherever it is written: at module level, inside a function
(it runs on the first call) or under ``if TYPE_CHECKING:`` (it never runs, but it still says which
way the dependency points). Two rules:

* **Layers.** :data:`LAYERS` lists the top-level modules and subpackages from the bottom up. A module
  may import its own top-level unit and anything in a lower layer. Units that share a layer are
  independent of each other: ``plugins`` never imports ``sdk``, nor ``sdk`` ``plugins``.
* **No import cycles**, within a subpackage as well as across them. A cycle among the imports that
  run when a module is imported (module level: not inside a function, not under ``TYPE_CHECKING``)
  makes the import order matter; a circle closed by a function-local or ``TYPE_CHECKING`` import
  still ties two modules together (``server.api`` loading ``server.events`` on first use while
  ``events`` borrows ``api``'s helpers), so none of those either: move the shared thing down.

Dynamic imports (``importlib.import_module``, the lazy ``__getattr__`` re-exports) are not seen.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

import stepflow_gateway

PACKAGE = "stepflow_gateway"
ROOT = "__init__"
"""The unit name of the package's own ``__init__.py``."""

LAYERS: tuple[tuple[str, ...], ...] = (
    # Shared vocabulary. The package __init__ holds only __version__ (server.runtime reads it); if
    # it ever re-exports Gateway, it moves to the top and the version moves out.
    (ROOT, "types", "ids", "errors", "core"),
    # Helpers over plain JSON values, and structlog set-up.
    ("jsonutil", "jsonpath", "logging"),
    ("yaml_loader",),
    # The config file, the StepFlow wire protocol, persistence.
    ("config", "protocol", "state"),
    # Flow files (onError.backoff has the shape of the config's retry.backoff).
    ("flow",),
    # What serves components: the runtime's plugins, and the SDK for component authors.
    ("plugins", "sdk"),
    ("engine",),
    # The façade over the engine: starts plugins and the store, runs flows.
    ("gateway",),
    # Applications of the gateway: the REST/MCP server and the embedded-test runner.
    ("server", "testing"),
    # The command line drives all of them.
    ("cli",),
    ("__main__",),
)


@dataclass(frozen=True, slots=True)
class Import:
    """One import edge: ``importer`` (at ``file:line``) needs ``target``."""

    importer: str
    file: str
    line: int
    target: str
    local: bool = False
    """Written inside a function: runs on the first call, not at import time."""
    type_only: bool = False
    """Written under ``if TYPE_CHECKING:``: never runs."""

    @property
    def at_import_time(self) -> bool:
        return not (self.local or self.type_only)

    def where(self) -> str:
        return f"{self.file}:{self.line}"


# -- collecting ---------------------------------------------------------------------------------


def _module_name(path: Path, src: Path) -> tuple[str, bool]:
    """``(dotted name, is a package __init__)`` of a file under ``src``."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    is_init = parts[-1] == "__init__"
    if is_init:
        parts.pop()
    return ".".join(parts), is_init


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Collector(ast.NodeVisitor):
    def __init__(self, module: str, is_init: bool, file: str, modules: set[str], package: str) -> None:
        self.module = module
        self.base = module if is_init else module.rpartition(".")[0]  # what `from .` means
        self.file = file
        self.modules = modules
        self.package = package
        self.local = False
        self.type_only = False
        self.found: list[Import] = []

    def _add(self, node: ast.stmt, target: str) -> None:
        if target == self.module:
            return
        if target == self.package or target.startswith(self.package + "."):
            self.found.append(Import(self.module, self.file, node.lineno, target, self.local, self.type_only))

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        outer, self.local = self.local, True
        self.generic_visit(node)
        self.local = outer

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self.visit(node.test)
        outer, self.type_only = self.type_only, True
        for stmt in node.body:
            self.visit(stmt)
        self.type_only = outer
        for stmt in node.orelse:  # the `else:` of `if TYPE_CHECKING:` is what runs
            self.visit(stmt)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.base.split(".")
            if node.level - 1 > len(base) - 1:
                raise ValueError(f"{self.file}:{node.lineno}: relative import beyond the top-level package")
            base = base[: len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        # `from X import name` needs the submodule X.name when there is one; otherwise an attribute
        # of X, so X itself (its __init__ for a package).
        needs_source = False
        for alias in node.names:
            sub = f"{source}.{alias.name}"
            if sub in self.modules:
                self._add(node, sub)
            else:
                needs_source = True
        if needs_source:
            self._add(node, source)


def collect(src: Path, package: str = PACKAGE) -> tuple[set[str], list[Import]]:
    """Every module of ``package`` under ``src`` and every import of the package that they write."""
    files = sorted((src / package).rglob("*.py"))
    names = {path: _module_name(path, src) for path in files}
    modules = {name for name, _ in names.values()}
    imports: list[Import] = []
    for path in files:
        module, is_init = names[path]
        collector = _Collector(module, is_init, str(path.relative_to(src)), modules, package)
        collector.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        imports.extend(collector.found)
    return modules, imports


# -- checking -----------------------------------------------------------------------------------


def unit_of(module: str, package: str = PACKAGE) -> str:
    """The top-level module or subpackage a module belongs to (``ROOT`` for the package itself)."""
    parts = module.split(".")
    assert parts[0] == package, module
    return parts[1] if len(parts) > 1 else ROOT


def layer_violations(
    imports: Iterable[Import],
    layers: tuple[tuple[str, ...], ...] = LAYERS,
    package: str = PACKAGE,
) -> list[str]:
    """One message per import that points up, or sideways to another unit of the same layer."""
    rank = {unit: i for i, layer in enumerate(layers) for unit in layer}
    problems: list[str] = []
    for imp in imports:
        src_unit, dst_unit = unit_of(imp.importer, package), unit_of(imp.target, package)
        if src_unit == dst_unit:
            continue
        for unit in (src_unit, dst_unit):
            if unit not in rank:
                problems.append(f"{imp.where()}: {package}.{unit} is in no layer; add it to LAYERS")
        if src_unit not in rank or dst_unit not in rank:
            continue
        kind = "" if imp.at_import_time else " (inside a function)" if imp.local else " (TYPE_CHECKING)"
        if rank[dst_unit] > rank[src_unit]:
            problems.append(
                f"{imp.where()}: {imp.importer} imports {imp.target}{kind}, "
                f"but {dst_unit!r} is a higher layer than {src_unit!r}"
            )
        elif rank[dst_unit] == rank[src_unit]:
            problems.append(
                f"{imp.where()}: {imp.importer} imports {imp.target}{kind}, "
                f"but {src_unit!r} and {dst_unit!r} share a layer and must stay independent"
            )
    return sorted(set(problems))


def import_cycles(imports: Iterable[Import], *, every_kind: bool = False) -> list[str]:
    """One message per cycle, naming each edge: among the imports that run at import time, or with
    ``every_kind`` among all of them (function-local and ``TYPE_CHECKING`` ones too)."""
    graph: dict[str, dict[str, Import]] = {}
    for imp in imports:
        if every_kind or imp.at_import_time:
            graph.setdefault(imp.importer, {}).setdefault(imp.target, imp)
    problems: list[str] = []
    for component in _strongly_connected(graph):
        if len(component) < 2:
            continue
        cycle = _cycle_in(graph, component)
        edges = [graph[a][b] for a, b in zip(cycle, cycle[1:], strict=False)]
        path = " -> ".join(cycle)
        problems.append(f"import cycle {path} ({', '.join(e.where() for e in edges)})")
    return sorted(problems)


def _strongly_connected(graph: dict[str, dict[str, Import]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative (the graph is a few hundred nodes, recursion would do too)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []
    nodes = sorted(set(graph) | {t for edges in graph.values() for t in edges})
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, {}))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: set[str] = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                out.append(component)
    return out


def _cycle_in(graph: dict[str, dict[str, Import]], component: set[str]) -> list[str]:
    """A shortest cycle through the smallest member of a strongly connected component."""
    start = min(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for child in sorted(graph.get(node, {})):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child in component and child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover - component has one


# -- the real package ---------------------------------------------------------------------------

SRC = Path(stepflow_gateway.__file__).resolve().parent.parent

Package = tuple[set[str], list[Import]]
"""The modules of the package and their imports, as :func:`collect` returns them."""


@pytest.fixture(scope="module")
def package() -> Package:
    modules, imports = collect(SRC)
    assert imports, f"no imports found under {SRC}"
    return modules, imports


def test_lower_layers_never_import_higher_ones(package: Package) -> None:
    problems = layer_violations(package[1])
    assert not problems, "layering violations:\n" + "\n".join(problems)


def test_no_import_cycles_at_import_time(package: Package) -> None:
    problems = import_cycles(package[1])
    assert not problems, "import cycles:\n" + "\n".join(problems)


def test_no_import_circles_through_function_local_or_type_checking_imports(package: Package) -> None:
    problems = import_cycles(package[1], every_kind=True)
    assert not problems, "import circles:\n" + "\n".join(problems)


SDK_MAY_IMPORT = frozenset({*LAYERS[0], *LAYERS[1], "protocol"})
"""Component authors install the SDK to serve components; it must not pull in the runtime."""


def test_the_sdk_needs_only_the_protocol_and_the_bottom_layers(package: Package) -> None:
    problems = [
        f"{imp.where()}: {imp.importer} imports {imp.target}"
        for imp in package[1]
        if unit_of(imp.importer) == "sdk" and unit_of(imp.target) not in SDK_MAY_IMPORT | {"sdk"}
    ]
    assert not problems, "the sdk reaches into the runtime:\n" + "\n".join(problems)


def test_every_unit_is_in_exactly_one_layer(package: Package) -> None:
    modules = package[0]
    placed = [unit for layer in LAYERS for unit in layer]
    assert len(placed) == len(set(placed)), "a unit is listed twice in LAYERS"
    missing = sorted({unit_of(m) for m in modules} - set(placed))
    assert not missing, f"not in LAYERS: {missing}"


# -- the checks themselves ----------------------------------------------------------------------


def _imp(
    importer: str, target: str, line: int = 1, *, local: bool = False, type_only: bool = False
) -> Import:
    file = importer.replace(".", "/") + ".py"
    return Import(importer, file, line, target, local, type_only)


def test_an_upward_import_is_reported_with_file_line_and_target() -> None:
    problems = layer_violations(
        [
            _imp("stepflow_gateway.config.load", "stepflow_gateway.plugins.router", 425, local=True),
            _imp("stepflow_gateway.state.base", "stepflow_gateway.engine.executor", 7, type_only=True),
            _imp("stepflow_gateway.engine.executor", "stepflow_gateway.flow.model", 3),  # downward: fine
            _imp("stepflow_gateway.flow.load", "stepflow_gateway.flow.model", 4),  # same unit: fine
        ]
    )
    assert problems == [
        "stepflow_gateway/config/load.py:425: stepflow_gateway.config.load imports "
        "stepflow_gateway.plugins.router (inside a function), but 'plugins' is a higher layer than "
        "'config'",
        "stepflow_gateway/state/base.py:7: stepflow_gateway.state.base imports "
        "stepflow_gateway.engine.executor (TYPE_CHECKING), but 'engine' is a higher layer than 'state'",
    ]


def test_units_of_one_layer_must_not_import_each_other() -> None:
    problems = layer_violations([_imp("stepflow_gateway.sdk.server", "stepflow_gateway.plugins.base", 9)])
    assert problems == [
        "stepflow_gateway/sdk/server.py:9: stepflow_gateway.sdk.server imports "
        "stepflow_gateway.plugins.base, but 'sdk' and 'plugins' share a layer and must stay independent"
    ]


def test_a_unit_missing_from_the_layers_is_reported() -> None:
    problems = layer_violations([_imp("stepflow_gateway.extras.x", "stepflow_gateway.errors", 2)])
    assert problems == [
        "stepflow_gateway/extras/x.py:2: stepflow_gateway.extras is in no layer; add it to LAYERS"
    ]


def test_cycles_are_reported_by_kind_of_import() -> None:
    a, b, c = "stepflow_gateway.sdk.server", "stepflow_gateway.sdk.http", "stepflow_gateway.sdk.stdio"
    assert import_cycles([_imp(a, b, 10), _imp(b, c, 20), _imp(c, a, 30)]) == [
        f"import cycle {b} -> {c} -> {a} -> {b} "
        "(stepflow_gateway/sdk/http.py:20, stepflow_gateway/sdk/stdio.py:30, "
        "stepflow_gateway/sdk/server.py:10)"
    ]
    local_back_edge = [_imp(a, b, 10), _imp(b, a, 20, local=True)]
    assert import_cycles(local_back_edge) == []
    assert import_cycles([_imp(a, b, 10), _imp(b, a, 20, type_only=True)]) == []
    assert import_cycles(local_back_edge, every_kind=True) == [
        f"import cycle {b} -> {a} -> {b} (stepflow_gateway/sdk/http.py:20, stepflow_gateway/sdk/server.py:10)"
    ]


def test_collect_resolves_relative_imports_and_marks_where_they_run(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "low.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import mod\n")
    (pkg / "sub" / "mod.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "import os\n"
        "from ..low import thing\n"  # line 3
        "from . import helper\n"  # line 4: an attribute of pkg.sub, so pkg.sub itself
        "if TYPE_CHECKING:\n"
        "    from pkg.top import T\n"  # line 6
        "else:\n"
        "    import pkg.low\n"  # line 8: runs
        "class C:\n"
        "    from .. import low\n"  # line 10: a class body runs at import time
        "def f():\n"
        "    from ..top import g\n"  # line 12
    )
    (pkg / "top.py").write_text("")
    modules, imports = collect(tmp_path, "pkg")
    assert modules == {"pkg", "pkg.low", "pkg.sub", "pkg.sub.mod", "pkg.top"}
    got = {(i.importer, i.line, i.target, i.local, i.type_only) for i in imports}
    assert got == {
        ("pkg.sub", 1, "pkg.sub.mod", False, False),
        ("pkg.sub.mod", 3, "pkg.low", False, False),
        ("pkg.sub.mod", 4, "pkg.sub", False, False),
        ("pkg.sub.mod", 6, "pkg.top", False, True),
        ("pkg.sub.mod", 8, "pkg.low", False, False),
        ("pkg.sub.mod", 10, "pkg.low", False, False),
        ("pkg.sub.mod", 12, "pkg.top", True, False),
    }
    # pkg.sub imports pkg.sub.mod, which needs an attribute of pkg.sub: a cycle at import time.
    assert import_cycles(imports) == [
        "import cycle pkg.sub -> pkg.sub.mod -> pkg.sub (pkg/sub/__init__.py:1, pkg/sub/mod.py:4)"
    ]
