"""``stepflow-gateway list-components``: the discovery registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import anyio
import typer

from . import app
from .render import fail, print_config_warnings, write_json


@app.command("list-components")
def list_components_command(
    config: Annotated[Path | None, typer.Option("--config", help="Config file.")] = None,
    format: Annotated[str, typer.Option("--format", help="pretty | json | yaml")] = "pretty",
    schemas: Annotated[
        bool, typer.Option("--schemas/--no-schemas", help="Include input/output schemas.")
    ] = True,
    hide_unreachable: Annotated[bool, typer.Option("--hide-unreachable")] = False,
) -> None:
    """List every component of every configured plugin with its public path."""
    from ..logging import configure

    configure()
    try:
        comps = anyio.run(_list, config)
    except Exception as exc:
        fail(exc)
    rows = [c.to_json() for c in comps if c.reachable or not hide_unreachable]
    if not schemas:
        for r in rows:
            r.pop("input_schema", None)
            r.pop("output_schema", None)
    if format == "json":
        write_json({"components": rows}, pretty=True)
    elif format == "yaml":
        import yaml

        typer.echo(yaml.safe_dump({"components": rows}, sort_keys=False, allow_unicode=True))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table("component", "plugin", "description")
        for r in rows:
            name = r["component"] + ("" if r.get("reachable", True) else " (unreachable)")
            table.add_row(name, r["plugin"], (r.get("description") or "").split("\n")[0])
        Console().print(table)


async def _list(config: Path | None):  # type: ignore[no-untyped-def]
    from ..gateway import Gateway

    gw = Gateway.from_config(config)
    print_config_warnings(gw.config_warnings)
    async with gw:
        return gw.components()
