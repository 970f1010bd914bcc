"""``stepflow-gateway test``: run the embedded test cases of flow files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import anyio
import typer

from . import app
from .render import fail


@app.command("test")
def test_command(
    paths: Annotated[list[Path] | None, typer.Argument(help="Flow files and/or directories.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Use this config for every flow.")] = None,
    case: Annotated[list[str] | None, typer.Option("--case", help="Only these cases (repeatable).")] = None,
    update: Annotated[
        bool, typer.Option("--update", help="Rewrite expected outputs with actual ones.")
    ] = False,
    diff: Annotated[bool, typer.Option("--diff", help="Show a diff for failing cases.")] = False,
) -> None:
    """Run test cases embedded in flows (test.cases); exit 1 if any case fails."""
    from ..logging import configure
    from ..testing import run_tests

    configure()
    try:
        summary = anyio.run(
            lambda: run_tests(
                paths or [Path(".")], config=config, cases=case, update=update, diff=diff, write=typer.echo
            )
        )
    except Exception as exc:
        fail(exc)
    raise typer.Exit(summary.exit_code)
