"""The ``stepflow-gateway`` command line: a thin client of the library.

Each command parses flags into library arguments, calls ``Gateway``/``load_flow``, writes JSON to
stdout (and only that) and everything else to stderr, and maps errors to exit codes in one place
(``render.fail``): 0 success, 1 a failed outcome or test, 2 an invalid flow, config or usage.
"""

from __future__ import annotations

import sys

# Start-up time is a feature (`run` on a builtin flow targets < 250 ms wall). typer imports rich
# eagerly for help formatting (~120 ms, and structlog.dev then pulls in rich tracebacks); when no
# help is being printed we hide rich during that import. rich stays importable afterwards (progress
# bars, tables), it is just not loaded up front.
_WANTS_HELP = len(sys.argv) < 2 or any(a in ("--help", "-h") for a in sys.argv[1:])
_hidden = not _WANTS_HELP and "rich" not in sys.modules
if _hidden:
    sys.modules["rich"] = None  # type: ignore[assignment]
try:
    import structlog  # noqa: F401  (imported here so that it, too, skips rich)
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

from . import components, misc, run, test, validate  # noqa: E402,F401  (registers commands)

try:  # the server commands live in their own module (issue: serve)
    from . import serve  # noqa: E402,F401
except ImportError:  # pragma: no cover
    pass


def main() -> None:
    app()
