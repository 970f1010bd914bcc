"""Small commands: ``schema`` (the flow JSON schema) and ``plugins list``."""

from __future__ import annotations

import typer

from . import app, plugins_app
from .render import write_json


@app.command("schema")
def schema_command() -> None:
    """Print the JSON schema of the flow format."""
    from ..flow.schema import flow_json_schema

    write_json(flow_json_schema(), pretty=True)


@plugins_app.command("list")
def plugins_list_command() -> None:
    """List installed plugin types (entry-point group stepflow_gateway.plugins)."""
    from ..plugins.registry import available_plugin_types

    for name, ep in sorted(available_plugin_types().items()):
        try:
            ep.load()
            status = "ok"
        except Exception as exc:  # reported, not fatal
            status = f"failed to import: {type(exc).__name__}: {exc}"
        typer.echo(f"{name}\t{ep.value}\t{status}")
