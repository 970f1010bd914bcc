"""``stepflow-gateway run``: execute a flow locally and print its FlowResult as JSON.

With ``--state sqlite:FILE`` the run is journaled in that file (``_durable.py``): Ctrl-C or a crash
leaves it there, and ``stepflow-gateway resume`` finishes it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import anyio
import typer

from . import app
from ._durable import STATE_HELP, drive, open_state, state_path
from ._values import read_jsonl, read_value
from .render import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    err,
    fail,
    print_config_warnings,
    print_diagnostics,
    write_json,
)


def _env_variables(schema: Any) -> dict[str, Any]:
    import json

    out: dict[str, Any] = {}
    names = list(schema.get("properties", {})) if isinstance(schema, dict) else []
    for name in names:
        raw = os.environ.get(f"STEPFLOW_VAR_{name.upper()}")
        if raw is None:
            continue
        try:
            out[name] = json.loads(raw)
        except ValueError:
            out[name] = raw
    return out


@app.command("run")
def run_command(
    flow: Annotated[Path, typer.Option("--flow", help="Flow file (YAML or JSON).")],
    input: Annotated[Path | None, typer.Option("--input", help="Input file (JSON or YAML).")] = None,
    input_json: Annotated[str | None, typer.Option("--input-json", help="Input as JSON text.")] = None,
    input_yaml: Annotated[str | None, typer.Option("--input-yaml", help="Input as YAML text.")] = None,
    inputs: Annotated[
        Path | None, typer.Option("--inputs", help="JSONL file: one input per line (batch).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Config file (stepflow-config.yml format).")
    ] = None,
    variables: Annotated[Path | None, typer.Option("--variables", help="Variables file.")] = None,
    variables_json: Annotated[str | None, typer.Option("--variables-json")] = None,
    variables_yaml: Annotated[str | None, typer.Option("--variables-yaml")] = None,
    env_variables: Annotated[bool, typer.Option("--env-variables", help="Read STEPFLOW_VAR_<NAME>.")] = False,
    overrides: Annotated[
        list[Path] | None, typer.Option("--overrides", help="Overrides file (repeatable).")
    ] = None,
    overrides_json: Annotated[list[str] | None, typer.Option("--overrides-json")] = None,
    overrides_yaml: Annotated[list[str] | None, typer.Option("--overrides-yaml")] = None,
    max_concurrent: Annotated[
        int | None, typer.Option("--max-concurrent", min=1, help="Cap on step tasks in flight.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", help="Write results here instead of stdout.")
    ] = None,
    state: Annotated[str | None, typer.Option("--state", help=STATE_HELP)] = None,
    log_level: Annotated[str | None, typer.Option("--log-level")] = None,
) -> None:
    """Execute a flow and print its result (JSONL for --inputs). Exit 1 if any item failed.

    With --state, Ctrl-C leaves the run in the file (exit 130) for `resume`."""
    from ..logging import configure

    configure(log_level)
    try:
        code = anyio.run(_run, locals())
    except (Exception, KeyboardInterrupt) as exc:
        fail(exc)
    raise typer.Exit(code)


async def _run(a: dict[str, Any]) -> int:
    from ..errors import FlowError
    from ..flow.load import load_flow
    from ..flow.validate import blocking
    from ..gateway import Gateway
    from ..logging import redact

    loaded = load_flow(a["flow"])
    flow = loaded.flow
    if a["inputs"] is not None:
        if any(a[k] is not None for k in ("input", "input_json", "input_yaml")):
            raise FlowError("give either --inputs or one of --input/--input-json/--input-yaml")
        items = read_jsonl(a["inputs"])
        batch = True
    else:
        items = [read_value(a["input"], a["input_json"], a["input_yaml"], what="input")]
        batch = False
    variables = read_value(a["variables"], a["variables_json"], a["variables_yaml"], what="variables")
    if a["env_variables"]:
        variables = {**_env_variables(flow.variables_schema), **(variables or {})}
    if variables is not None and not isinstance(variables, dict):
        raise FlowError("variables must be an object")
    override_sources: list[Any] = []
    for p in a["overrides"] or []:
        override_sources.append(read_value(p, what="overrides"))
    for j in a["overrides_json"] or []:
        override_sources.append(read_value(json_text=j, what="overrides"))
    for y in a["overrides_yaml"] or []:
        override_sources.append(read_value(yaml_text=y, what="overrides"))
    from ..engine.inputs import secret_names, validate_variables

    redact(secret_names(flow.variables_schema))
    problem = validate_variables(flow.variables_schema, variables)
    if problem:
        raise FlowError(problem)
    if override_sources:
        from ..engine.overrides import apply_overrides

        flow = apply_overrides(flow, *override_sources)

    store = open_state(a["state"], create=True) if a["state"] is not None else None
    gw = Gateway.from_config(a["config"], flow_path=a["flow"], store=store)
    print_config_warnings(gw.config_warnings)
    async with gw:
        diags = loaded.diagnostics + gw.validate(flow)
        print_diagnostics(diags, source=str(a["flow"]))
        if blocking(diags, errors_block=True):
            err(f"error: {a['flow']}: the flow has errors; not running it")
            return EXIT_INVALID
        progress = _progress(len(items)) if batch and sys.stderr.isatty() else None
        listener = None
        if progress is not None:
            bar, task = progress

            def listener(ev: Any) -> None:
                if ev.kind == "item_completed":
                    bar.advance(task)

            bar.start()
        kw: dict[str, Any] = {"variables": variables, "max_concurrency": a["max_concurrent"], "check": False}
        try:
            if store is None:
                results = await gw.run_batch(flow, items, listener=listener, **kw)
            else:

                async def start() -> Any:
                    handle = await gw.submit(flow, items, wait=False, listener=listener, **kw)
                    err(f"run {handle.run_id} journaled in {state_path(store)}")
                    return handle

                handle, interrupted = await drive(gw, start)
                assert handle is not None and handle.results is not None
                if interrupted:
                    err(_resume_hint(handle.run_id, a["state"], a["config"]))
                    return EXIT_INTERRUPTED
                results = handle.results
        finally:
            if progress is not None:
                progress[0].stop()
    # The CLI's run is over and nothing else is on the loop: a plain blocking open is fine here.
    out = open(a["output"], "w", encoding="utf-8") if a["output"] else sys.stdout  # noqa: ASYNC230
    try:
        if batch:
            for r in results:
                write_json(r.to_json(), out=out)
        else:
            write_json(results[0].to_json(), out=out)
    finally:
        if out is not sys.stdout:
            out.close()
    return EXIT_FAILED if any(r.outcome == "failed" for r in results) else 0


def _resume_hint(run_id: str, state: str, config: Path | None) -> str:
    import shlex

    cmd = f"stepflow-gateway resume --state {shlex.quote(state)} {run_id}"
    if config is not None:
        cmd += f" --config {shlex.quote(str(config))}"
    return f"run {run_id} interrupted; finish it with: {cmd}"


def _progress(total: int) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    bar = Progress(
        "items",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task("run", total=total)
    return bar, task
