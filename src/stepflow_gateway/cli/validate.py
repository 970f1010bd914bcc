"""``stepflow-gateway validate``: print a flow's diagnostics; exit 1 on errors, 2 when it cannot load."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import anyio
import typer

from . import app
from .render import err, fail, print_config_warnings, print_diagnostics, write_json


@app.command("validate")
def validate_command(
    flow: Annotated[Path, typer.Option("--flow", help="Flow file to check.")],
    config: Annotated[
        Path | None, typer.Option("--config", help="Config file for route/component checks.")
    ] = None,
    format: Annotated[str, typer.Option("--format", help="pretty | json")] = "pretty",
    no_plugins: Annotated[
        bool, typer.Option("--no-plugins", help="Do not start plugins (skip component checks).")
    ] = False,
) -> None:
    """Validate a flow (and its routes and components against the config)."""
    from ..logging import configure

    configure()
    try:
        code = anyio.run(_validate, flow, config, format, no_plugins)
    except Exception as exc:
        fail(exc)
    raise typer.Exit(code)


async def _validate(flow_path: Path, config: Path | None, fmt: str, no_plugins: bool) -> int:
    from ..flow.load import load_flow
    from ..flow.validate import validate_flow
    from ..gateway import Gateway

    loaded = load_flow(flow_path)
    gw = Gateway.from_config(config, flow_path=flow_path)
    print_config_warnings(gw.config_warnings)
    diags: list[Any]
    if no_plugins:
        from ..plugins.router import Router

        gw.router = Router.build(gw.config.routes)
        diags = loaded.diagnostics + validate_flow(loaded.flow, route=gw._route_for_validation)
    else:
        async with gw:
            diags = loaded.diagnostics + gw.validate(loaded.flow)
    diags += (
        gw.router.route_diagnostics(list(gw.config.plugins))
        if hasattr(gw.router, "route_diagnostics")
        else []
    )
    if fmt == "json":
        from ..flow.diagnostics import Diagnostic, summarize

        write_json(summarize([d for d in diags if isinstance(d, Diagnostic)]), pretty=True)
    else:
        print_diagnostics([d for d in diags if hasattr(d, "level")], source=str(flow_path))
        n_bad = sum(1 for d in diags if getattr(d, "level", "") in ("fatal", "error"))
        n_warn = sum(1 for d in diags if getattr(d, "level", "") == "warning")
        err(f"{flow_path}: {n_bad} error(s), {n_warn} warning(s)")
    return 1 if any(getattr(d, "level", "") in ("fatal", "error") for d in diags) else 0
