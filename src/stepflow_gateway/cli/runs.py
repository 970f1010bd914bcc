"""Journaled runs: ``resume`` (finish an interrupted run), ``runs list`` and ``runs show``.

All three read the ``--state`` file that ``run --state`` (or ``serve``) journals runs in. ``resume``
prints the result exactly like ``run``; it refuses (exit 2) a run that is not in the file, that has
already finished, or that is a sub-run (its top-level run resumes it). ``runs list`` is a table on
a terminal and JSON lines otherwise; ``runs show`` prints one JSON document.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import anyio
import typer

from . import app, runs_app
from ._durable import STATE_HELP, drive, open_state, state_path
from .render import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    UsageError,
    err,
    fail,
    print_config_warnings,
    print_diagnostics,
    write_json,
)

RUN_STATUSES = ("running", "completed", "failed", "cancelled", "recoveryFailed")
StateOption = Annotated[str, typer.Option("--state", help=STATE_HELP)]


@app.command("resume")
def resume_command(
    run_id: Annotated[str, typer.Argument(help="The run to finish (printed by `run --state`).")],
    state: StateOption,
    config: Annotated[
        Path | None, typer.Option("--config", help="Config file: the one the run was started with.")
    ] = None,
    log_level: Annotated[str | None, typer.Option("--log-level")] = None,
) -> None:
    """Finish a run a crash or Ctrl-C interrupted; finished steps are not run again. Prints like `run`."""
    from ..logging import configure

    configure(log_level)
    try:
        code = anyio.run(_resume, run_id, state, config)
    except (Exception, KeyboardInterrupt) as exc:
        fail(exc)
    raise typer.Exit(code)


async def _resume(run_id: str, state: str, config: Path | None) -> int:
    from ..engine.inputs import secret_names
    from ..errors import RunNotFound
    from ..flow.validate import blocking
    from ..gateway import Gateway
    from ..logging import redact

    store = open_state(state, create=False)
    gw = Gateway.from_config(config, store=store)
    print_config_warnings(gw.config_warnings)
    async with store:  # read the run before any plugin starts (the gateway reuses the open store)
        rec = await store.get_run(run_id)
        if rec is None:
            raise RunNotFound(f"run {run_id} is not in {state_path(store)}")
        if rec.status != "running":
            raise UsageError(f"run {run_id} has already finished (status {rec.status}); nothing to resume")
        if rec.parent_run_id is not None:
            root = rec.root_run_id or rec.parent_run_id
            raise UsageError(f"run {run_id} is a sub-run of run {root}: resume run {root}")
        async with gw:
            flow = await gw.get_flow(rec.flow_id)
            if flow is not None:
                redact(secret_names(flow.variables_schema))  # as `run` does: secrets stay out of logs
            diags = gw.validate(flow) if flow is not None else []
            if blocking(diags, errors_block=True):  # not marked recoveryFailed: a wrong --config is likely
                print_diagnostics(diags, source=f"run {run_id}")
                raise UsageError(
                    f"run {run_id} cannot run with this config; give the one it was started with"
                )
            err(f"run {run_id}: resuming from {state_path(store)}")
            handle, interrupted = await drive(gw, lambda: gw.resume_run(rec, wait=False))
            if interrupted:
                err(f"run {run_id} interrupted again; resume it once more to finish it")
                return EXIT_INTERRUPTED
            if handle is None or handle.results is None:  # recoveryFailed: the record says why
                done = await store.get_run(run_id)
                results = [i.result for i in done.items if i.result is not None] if done else []
            else:
                results = handle.results
    for r in results:
        write_json(r.to_json())
    return EXIT_FAILED if handle is None or any(r.outcome == "failed" for r in results) else 0


@runs_app.command("list")
def runs_list_command(
    state: StateOption,
    status: Annotated[str | None, typer.Option("--status", help=f"One of {', '.join(RUN_STATUSES)}.")] = None,
    flow: Annotated[str | None, typer.Option("--flow", help="Only runs of the flow with this name.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many runs, newest first.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines, even on a terminal.")] = False,
) -> None:
    """List the top-level runs in a --state file, newest first (a table on a terminal, else JSON lines)."""
    from ..state.base import RunFilter

    try:
        if status is not None and status not in RUN_STATUSES:
            raise UsageError(f"--status must be one of {', '.join(RUN_STATUSES)}, got '{status}'")
        flt = RunFilter(status=status, flow_name=flow, max_depth=0, limit=limit)
        runs = anyio.run(_read, state, lambda store: store.list_runs(flt))
    except Exception as exc:
        fail(exc)
    rows = [_summary(r) for r in runs]
    if as_json or not sys.stdout.isatty():
        for row in rows:
            write_json(row)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None)
    table.add_column("run", no_wrap=True, min_width=36)  # ids are copied from here: never cut
    for name in ("status", "flow", "items", "created", "completed"):
        table.add_column(name)
    for r in rows:
        times = (str(r[k] or "")[:19].replace("T", " ") for k in ("createdAt", "completedAt"))
        table.add_row(r["runId"], r["status"], r["flowName"] or r["flowId"][:12], str(r["itemCount"]), *times)
    Console().print(table)


@runs_app.command("show")
def runs_show_command(
    run_id: Annotated[str, typer.Argument(help="The run.")],
    state: StateOption,
) -> None:
    """Print a run as JSON: its record, items with their results, steps with status and attempts."""
    try:
        shown = anyio.run(_read, state, lambda store: _show(store, run_id))
    except Exception as exc:
        fail(exc)
    write_json(shown, pretty=sys.stdout.isatty())


async def _read(state: str, fn: Any) -> Any:
    async with open_state(state, create=False) as store:
        return await fn(store)


def _summary(rec: Any) -> dict[str, Any]:
    return {
        "runId": rec.run_id,
        "status": rec.status,
        "flowId": rec.flow_id,
        "flowName": rec.flow_name,
        "itemCount": len(rec.inputs),
        "createdAt": rec.created_at,
        "completedAt": rec.completed_at,
    }


async def _show(store: Any, run_id: str) -> dict[str, Any]:
    """The record; items and steps from the store's read model once the run has finished, else from
    the journal (which also gives every step's attempts: how many times it was started)."""
    from ..core.journal import replay
    from ..errors import RunNotFound
    from ..flow.load import parse_flow

    rec = await store.get_run(run_id)
    if rec is None:
        raise RunNotFound(f"run {run_id} is not in {state_path(store)}")
    journal = replay(run_id, await store.read_journal(rec.root_run_id or run_id))
    out = _summary(rec) | {"rootRunId": rec.root_run_id, "parentRunId": rec.parent_run_id}
    items = {i.item_index: (i.status, i.result) for i in rec.items}
    for index, result in journal.items.items():
        items.setdefault(index, (_status(result), result))
    out["items"] = [
        {
            "index": n,
            "status": items.get(n, ("running", None))[0],
            "result": _json(items.get(n, (0, None))[1]),
        }
        for n in range(len(rec.inputs))
    ]
    steps = [(s.item_index, s.step_id, s.component, s.status) for s in await store.get_steps(run_id)]
    if not steps:  # unfinished (or not recorded): every step of the flow, as far as the journal goes
        blob = await store.get_blob(rec.flow_id)
        flow_steps = parse_flow(blob[0]).flow.steps if blob is not None else []
        for n in range(len(rec.inputs)):
            for step in flow_steps:
                known = journal.steps.get((n, step.id))
                status = "pending" if known is None else _status(known.result) if known.result else "running"
                steps.append((n, step.id, step.component, status))
    out["steps"] = [
        {
            "item": n,
            "stepId": sid,
            "component": comp,
            "status": status,
            "attempts": _attempts(journal, n, sid),
        }
        for n, sid, comp, status in steps
    ]
    return out


def _attempts(journal: Any, item: int, step_id: str) -> int:
    known = journal.steps.get((item, step_id))
    return 0 if known is None else int(known.attempts)


def _status(result: Any) -> str:
    return {"success": "completed", "skipped": "skipped"}.get(result.outcome, "failed")


def _json(result: Any) -> Any:
    return None if result is None else result.to_json()
