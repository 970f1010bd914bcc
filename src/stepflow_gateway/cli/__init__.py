"""The ``stepflow-gateway`` command line: a thin client of the library.

Each command parses flags into library arguments, calls ``Gateway``/``load_flow``, writes JSON to
stdout (and only that) and everything else to stderr, and maps errors to exit codes in one place
(``render.fail``): 0 success, 1 a failed outcome or test, 2 an invalid flow, config or usage (a
``resume`` of a run that is unknown or finished included), 130 a journaled run interrupted by
Ctrl-C/SIGTERM (``run --state``, ``resume``), left in its ``--state`` file to resume.
"""

from __future__ import annotations

import sys

# Start-up time is a feature (`run` on a builtin flow targets < 250 ms wall). typer imports rich
# eagerly for help formatting (~120 ms); when no help is being printed we hide rich during that
# import. rich stays importable afterwards (progress bars, tables), it is just not loaded up front.
# structlog is not imported here: ``stepflow_gateway.logging`` loads it on the first real event.
_WANTS_HELP = len(sys.argv) < 2 or any(a in ("--help", "-h") for a in sys.argv[1:])
_hidden = not _WANTS_HELP and "rich" not in sys.modules
if _hidden:
    sys.modules["rich"] = None  # type: ignore[assignment]
try:
    import typer
finally:
    if _hidden:
        del sys.modules["rich"]

app = typer.Typer(
    name="stepflow-gateway",
    help="Run StepFlow flows that mix StepFlow component servers, MCP tools and builtins.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
plugins_app = typer.Typer(help="Installed plugin types.", no_args_is_help=True)
app.add_typer(plugins_app, name="plugins")
runs_app = typer.Typer(help="Runs journaled in a --state file.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")

_COMMAND_MODULES: dict[str, str] = {
    "run": "run",
    "validate": "validate",
    "test": "test",
    "list-components": "components",
    "schema": "misc",
    "plugins": "misc",
    "serve": "serve",
    "submit": "serve",
    "resume": "runs",
    "runs": "runs",
}
"""The module that registers each command. ``main`` imports only the one being run: typer builds a
click command (signature inspection, ~1-3 ms each) for every registered command on each start."""

_ALL_MODULES = ("components", "misc", "run", "runs", "test", "validate", "serve")


def register_commands(argv: list[str] | None = None) -> None:
    """Register the command ``argv`` names, or every command (top-level help, unknown names).

    The command is the first argument that is not an option; when that guess is wrong (an unknown
    name) everything is registered, so typer's own usage errors and help stay complete.
    """
    import importlib

    name = next((a for a in argv if not a.startswith("-")), None) if argv is not None else None
    module = _COMMAND_MODULES.get(name) if name is not None else None
    for mod in (module,) if module is not None else _ALL_MODULES:
        try:
            importlib.import_module(f"{__name__}.{mod}")
        except ImportError:  # pragma: no cover  (the server extras may be missing)
            if mod != "serve":
                raise


def main() -> None:
    register_commands(sys.argv[1:])
    app()
