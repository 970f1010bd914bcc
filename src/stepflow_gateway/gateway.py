"""``Gateway``: the embedding API. Starts plugins and the state store from a config and runs flows.

```python
async with Gateway.from_config("plugins.yaml") as gw:
    result = await gw.run("flow.yaml", {"x": 1})
```

The CLI and the server are thin clients of this class. It also implements the ``RuntimeAPI``
callbacks (blobs, nested runs) that components and builtins use.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from .core.journal import CANCEL_REQUESTED, RUN_CREATED, RUN_FINISHED, RecoveredRun, replay
from .core.result import FlowResult
from .engine.executor import Dispatch, Plan, RunExecution, StepEvent
from .engine.journal import TreeJournal, child_run_id
from .errors import FlowLoadError, FlowValidationError, GatewayError, InputValidationError, RunNotFound
from .flow.diagnostics import Diagnostic
from .flow.load import LoadedFlow, load_flow, parse_flow
from .flow.model import Flow
from .flow.validate import blocking, validate_flow
from .ids import new_run_id
from .logging import get_logger
from .plugins.base import ExecutionContext, RunInfo
from .plugins.registry import PluginSet, RegisteredComponent
from .state.base import ItemRecord, RunRecord, StateStore, StepRecord

__all__ = ["Gateway", "RunHandle", "StepLog"]

from .logging import ensure_default as _ensure_logging

_ensure_logging()
log = get_logger(__name__)

_RECENT_RUNS = 1024
"""Finished runs kept readable in memory in run/test mode (where no store keeps them)."""

_RECORD_TIMEOUT_S = 5.0
"""How long recording a run cancelled from outside may take (the store write is shielded)."""

_PLAN_CACHE_SIZE = 256
"""Plans are cheap to keep and costly to rebuild for big flows; bound the cache anyway."""


_second_prefix: tuple[int, str] = (-1, "")


def now_iso(ts: float | None = None) -> str:
    """RFC 3339 UTC with microseconds and ``Z``. Runs a few times per run: the date and time up to
    the second are formatted once per second and reused."""
    global _second_prefix
    if ts is None:
        ts = time.time()
    second = int(ts // 1)
    micro = int((ts - second) * 1_000_000)
    cached_second, prefix = _second_prefix
    if second != cached_second:
        prefix = datetime.fromtimestamp(second, UTC).isoformat()[:19]
        _second_prefix = (second, prefix)
    return f"{prefix}.{micro:06d}Z"


class RunDone:
    """Whether a run has finished, and a wait for it; the event behind the wait is only made for a
    waiter that comes before the end (most runs are awaited in the task that runs them)."""

    __slots__ = ("_set", "_event")

    def __init__(self) -> None:
        self._set = False
        self._event: anyio.Event | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        if self._event is not None:
            self._event.set()

    async def wait(self) -> None:
        if self._set:
            return
        if self._event is None:
            self._event = anyio.Event()
        await self._event.wait()


@dataclass(slots=True)
class RunHandle:
    """A run in progress (or just finished) in this process."""

    run_id: str
    flow: Flow
    execution: RunExecution
    record: RunRecord
    done: RunDone = field(default_factory=RunDone)
    results: list[FlowResult] | None = None
    subscribers: list[Callable[[StepEvent], None]] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.record.status

    def subscribe(self, callback: Callable[[StepEvent], None]) -> None:
        """Receive this run's progress events from now on. Events are only built while someone listens."""
        self.subscribers.append(callback)
        self.execution.listener = self._fan_out

    def unsubscribe(self, callback: Callable[[StepEvent], None]) -> None:
        try:
            self.subscribers.remove(callback)
        except ValueError:
            return
        if not self.subscribers:
            self.execution.listener = None

    def _fan_out(self, event: StepEvent) -> None:
        for sub in list(self.subscribers):
            sub(event)

    def info(self) -> RunInfo:
        results: list[FlowResult | None]
        if self.results is not None:
            results = list(self.results)
        else:
            results = [item.result for item in self.execution.items]
            results += [None] * (len(self.record.inputs) - len(results))
        return RunInfo(
            self.run_id,
            self.execution.plan.flow_id,
            self.record.status,
            results,
            self.record.created_at,
            self.record.completed_at,
        )

    def cancel(self) -> None:
        self.execution.cancel()

    def interrupt(self) -> None:
        """Stop the run without ending it: a journaled run resumes at the next start."""
        self.execution.interrupted = True
        self.execution.cancel()


class StepLog(Sequence[StepRecord]):
    """A finished run's step records, built on first read.

    ``complete_run`` gets this instead of a list: a store that persists at once (SQLite) iterates
    it there; the memory store keeps it and builds the records only if ``GET .../steps`` asks, so a
    run nobody inspects never pays for ``StepRecord`` objects and their timestamps. It keeps the
    finished items and the plan, not the execution (its task group and cancel scope).
    """

    __slots__ = ("_view", "_records")

    def __init__(self, execution: RunExecution) -> None:
        self._view: Any = _ExecutionView(execution.plan, execution.items)
        self._records: list[StepRecord] | None = None

    def records(self) -> list[StepRecord]:
        if self._records is None:
            self._records = [
                StepRecord(
                    item,
                    idx,
                    step.id,
                    step.component,
                    status,
                    result,
                    now_iso(started) if started else None,
                    now_iso(finished) if finished else None,
                    self._view.items[item].attempts[idx],
                )
                for item, idx, step, status, result, started, finished in RunExecution.step_states(self._view)
            ]
            self._view = None
        return self._records

    def __len__(self) -> int:
        return len(self.records())

    def size_hint(self) -> int:
        """How many records there are (or will be), without building them."""
        if self._records is not None:
            return len(self._records)
        return len(self._view.plan.steps) * len(self._view.items)

    def __getitem__(self, index: Any) -> Any:
        return self.records()[index]

    def __iter__(self) -> Iterator[StepRecord]:
        return iter(self.records())


@dataclass(slots=True)
class _ExecutionView:
    """What ``RunExecution.step_states`` reads: the plan and the items."""

    plan: Plan
    items: list[Any]


def _item_status(result: FlowResult, run_cancelled: bool) -> str:
    """An item's REST status: ``cancelled`` for items a cancel cut short (rest-api.md §2.11)."""
    if result.outcome != "failed":
        return "completed"
    if run_cancelled and result.error is not None and result.error.message == "Run was cancelled":
        return "cancelled"
    return "failed"


class Gateway:
    """Plugins + router + state store + executor. An async context manager."""

    def __init__(
        self,
        config: Any,
        *,
        store: StateStore | None = None,
        mode: str = "run",
        config_warnings: list[Any] | None = None,
        environ: Mapping[str, str] | None = None,
        record_steps: bool | None = None,
        data_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.config = config
        self.mode = mode
        self.config_warnings = config_warnings or []
        self.environ = dict(os.environ if environ is None else environ)
        self._store = store
        self.store: StateStore = store  # type: ignore[assignment]
        self.data_dir = Path(data_dir) if data_dir is not None else None
        """Where a default SQLite store goes (``<data_dir>/state.db``); ``None``:
        ``<workingDirectory>/.stepflow-gateway``."""
        self.router: Any = None
        self.plugin_set: PluginSet | None = None
        self.dispatch: Dispatch | None = None
        self.record_steps = (mode == "serve") if record_steps is None else record_steps
        self._plans: dict[str, Plan] = {}
        self._stored_flows: set[str] = set()
        """Flow ids this process has stored; ``forget_flow`` drops one when its blob is deleted."""
        self.live: dict[str, RunHandle] = {}
        self._recent: OrderedDict[str, RunHandle] = OrderedDict()
        self.task_group: Any = None
        self.journaling = False
        """Runs write the journal (a durable store, or ``serve``): set when the store opens."""
        self.stopping = False
        """Shutting down: runs stopped now are interrupted (resumed at the next start), not cancelled."""

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_config(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        flow_path: str | os.PathLike[str] | None = None,
        mode: str = "run",
        **kw: Any,
    ) -> Gateway:
        """Find and load a config (config.md §1 discovery) and build a gateway (not yet started)."""
        from .config.load import find_config, load_config

        search: list[Path] = []
        if flow_path is not None:
            search.append(Path(flow_path).resolve().parent)
        search.append(Path.cwd())
        explicit = Path(path) if path is not None else None
        if explicit is None and mode == "serve" and os.environ.get("STEPFLOW_CONFIG"):
            explicit = Path(os.environ["STEPFLOW_CONFIG"])
        found = find_config(explicit, search if mode != "serve" else [Path.cwd()])
        loaded = load_config(found, default_working_dir=Path.cwd())
        return cls(loaded.config, mode=mode, config_warnings=loaded.warnings, **kw)

    # -- lifecycle -----------------------------------------------------------------------------
    async def __aenter__(self) -> Gateway:
        from .plugins.router import Router
        from .state.open import open_store

        self.router = Router.build(self.config.routes)
        if self._store is None:
            data_dir = self.data_dir or Path(self.config.working_directory) / ".stepflow-gateway"
            explicit = getattr(self.config, "state_store_explicit", True)
            self.store = open_store(
                self.config.state_store if explicit else None,
                default="sqlite" if self.mode == "serve" else "memory",
                data_dir=data_dir,
            )
        await self.store.open()
        self.journaling = self.mode == "serve" or bool(getattr(self.store, "durable", False))
        self.plugin_set = PluginSet(self.config, self, environ=self.environ)
        try:
            await self.plugin_set.__aenter__()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.store.close()
            raise
        self.dispatch = Dispatch(
            self.router, self.plugin_set.plugins, self, getattr(self.config.retry, "backoff", None)
        )
        return self

    @property
    def resumable(self) -> bool:
        """Runs stopped now resume at the next start: they are journaled in a durable store."""
        return self.journaling and bool(getattr(self.store, "durable", False))

    def stop_run(self, handle: RunHandle) -> None:
        """Stop a run at shutdown: interrupted (to resume) when ``resumable``, else cancelled."""
        if self.resumable:
            handle.interrupt()
        else:
            handle.cancel()

    async def __aexit__(self, *exc: object) -> None:
        self.stopping = True
        for handle in list(self.live.values()):
            self.stop_run(handle)
        if self.plugin_set is not None:
            await self.plugin_set.__aexit__(None, None, None)
        with anyio.CancelScope(shield=True):
            await self.store.close()

    # -- flows ---------------------------------------------------------------------------------
    def load(self, flow: Flow | LoadedFlow | Mapping[str, Any] | str | os.PathLike[str]) -> Flow:
        """Accept a Flow, a JSON mapping or a file path."""
        if isinstance(flow, Flow):
            return flow
        if isinstance(flow, LoadedFlow):
            return flow.flow
        if isinstance(flow, Mapping):
            return parse_flow(dict(flow)).flow
        return load_flow(flow).flow

    def validate(self, flow: Flow) -> list[Diagnostic]:
        """Flow diagnostics including the config checks (routes, known components, literal inputs)."""
        return validate_flow(flow, route=self._route_for_validation, component_check=self._component_check)

    def _route_for_validation(self, component: str) -> tuple[str, str] | str:
        try:
            if self.router.needs_input(component):
                return (
                    self.router.resolve_static(component)
                    if hasattr(self.router, "resolve_static")
                    else ("", "")
                )
            route: tuple[str, str] = self.router.resolve(component, None)
            return route
        except GatewayError as exc:
            return exc.message

    def _component_check(self, plugin: str, local: str, literal: Any) -> list[str] | None:
        if not plugin or self.plugin_set is None or plugin not in self.plugin_set.components:
            return None
        comps = {c.name: c for c in self.plugin_set.components[plugin]}
        if not comps:
            return None
        info = comps.get(local)
        if info is None:
            p = self.plugin_set.plugins.get(plugin)
            if getattr(p, "lists_all_components", True) is False:
                return None
            return ["unknown"]
        p = self.plugin_set.plugins.get(plugin)
        check = getattr(p, "validate_input", None)
        from .flow.validate import _LITERAL_UNKNOWN

        if check is not None and literal is not _LITERAL_UNKNOWN:
            try:
                return list(check(local, literal))
            except Exception:
                return []
        return []

    def plan(self, flow: Flow) -> Plan:
        plan = self._plans.get(flow.flow_id)
        if plan is None:
            if len(self._plans) >= _PLAN_CACHE_SIZE:
                self._plans.pop(next(iter(self._plans)))
            plan = Plan(flow)
            self._plans[flow.flow_id] = plan
        return plan

    async def store_flow(self, flow: Flow) -> str:
        """Store a flow as a ``flow`` blob; returns its flow id."""
        await self.store.put_blob(flow.flow_id, flow.to_json(), "flow")
        return flow.flow_id

    def forget_flow(self, flow_id: str) -> None:
        """The flow's blob was deleted: the next run of it stores it again."""
        self._stored_flows.discard(flow_id)

    async def get_flow(self, flow_id: str) -> Flow | None:
        plan = self._plans.get(flow_id)
        if plan is not None:  # flows are immutable and content-addressed: the cached parse is valid
            return plan.flow
        got = await self.store.get_blob(flow_id)
        if got is None or got[1] != "flow":
            return None
        return parse_flow(got[0]).flow

    def components(self) -> list[RegisteredComponent]:
        assert self.plugin_set is not None
        return self.plugin_set.registry(self.router)

    # -- running -------------------------------------------------------------------------------
    async def run(self, flow: Any, input: Any = None, **kw: Any) -> FlowResult:
        """Run one input item and return its result."""
        handle = await self.submit(flow, [input], **kw)
        await handle.done.wait()
        assert handle.results is not None
        return handle.results[0]

    async def run_batch(self, flow: Any, inputs: list[Any], **kw: Any) -> list[FlowResult]:
        handle = await self.submit(flow, inputs, **kw)
        await handle.done.wait()
        assert handle.results is not None
        return handle.results

    async def submit(
        self,
        flow: Any,
        inputs: list[Any],
        *,
        variables: dict[str, Any] | None = None,
        overrides: Any = None,
        max_concurrency: int | None = None,
        parent: ExecutionContext | None = None,
        wait: bool = True,
        listener: Callable[[StepEvent], None] | None = None,
        check: bool = True,
    ) -> RunHandle:
        """Start a run. With ``wait`` (default) it has finished when this returns."""
        flow = self.load(flow)
        if overrides:
            from .engine.overrides import apply_overrides

            flow = apply_overrides(flow, overrides)
        if check and flow.flow_id not in self._plans:  # a cached plan has passed this check
            fatal = blocking(validate_flow(flow), errors_block=False)
            if fatal:
                raise FlowValidationError(
                    "; ".join(f"{d.path}: {d.formatted}" for d in fatal), diagnostics=fatal, file=flow.source
                )
        if variables:
            from .engine.inputs import validate_variables

            problem = validate_variables(flow.variables_schema, variables)
            if problem:
                raise InputValidationError(problem, code=400)
        plan = self.plan(flow)
        journal: TreeJournal | None = None
        recovered: RecoveredRun | None = None
        if parent is not None:
            run_id = child_run_id(
                parent.run_id, parent.item_index, parent.step_id, parent.retry, parent.subruns
            )
            parent.subruns += 1
            root = parent.root_run_id or parent.run_id
            parent_handle = self.live.get(parent.run_id)
            if parent_handle is not None:
                journal = parent_handle.execution.journal
            if journal is not None and journal.recovered:
                # The parent step runs again after a crash: its child may exist already.
                existing = await self.store.get_run(run_id)
                if existing is not None:
                    if existing.status != "running":
                        return self._finished_handle(existing, flow, plan)
                    return await self._resume(existing, flow, journal, wait=wait)
        else:
            run_id = new_run_id()
            root = run_id
            if self.journaling:
                journal = TreeJournal(self.store, run_id)
        record = RunRecord(
            run_id=run_id,
            flow_id=plan.flow_id,
            flow_name=flow.name,
            status="running",
            created_at=now_iso(),
            inputs=list(inputs),
            root_run_id=root,
            parent_run_id=parent.run_id if parent is not None else None,
            overrides=overrides,
            variables=variables,
            max_concurrency=max_concurrency,
        )
        execution = RunExecution(
            plan,
            list(inputs),
            self.dispatch,  # type: ignore[arg-type]
            run_id=run_id,
            root_run_id=root,
            variables=variables,
            max_concurrency=max_concurrency,
            journal=journal,
            recovered=recovered,
        )
        handle = RunHandle(run_id, flow, execution, record)
        if listener is not None:
            handle.subscribe(listener)
        if self.mode == "serve" or journal is not None:
            if plan.flow_id not in self._stored_flows:  # stored flows are content-addressed
                await self.store_flow(flow)
                self._stored_flows.add(plan.flow_id)
            await self.store.create_run(record)
            if journal is not None:
                data = {"flowId": plan.flow_id, "parentRunId": record.parent_run_id, "itemCount": len(inputs)}
                journal.add(run_id, RUN_CREATED, data=data)
                if not wait:  # the caller gets the run id: the run must survive a crash from now on
                    await journal.barrier()
        return await self._start(handle, wait)

    async def _start(self, handle: RunHandle, wait: bool) -> RunHandle:
        self.live[handle.run_id] = handle
        if wait:
            await self._execute(handle)
        else:
            if self.task_group is None:
                raise GatewayError("background runs need a running server task group")
            self.task_group.start_soon(self._execute, handle)
        return handle

    def _finished_handle(self, rec: RunRecord, flow: Flow, plan: Plan) -> RunHandle:
        """A handle for a run that had already finished (a child found again after a crash)."""
        execution = RunExecution(plan, list(rec.inputs), self.dispatch, run_id=rec.run_id)  # type: ignore[arg-type]
        handle = RunHandle(rec.run_id, flow, execution, rec)
        handle.results = [
            i.result if i.result is not None else FlowResult.failed(500, "Run was cancelled")
            for i in rec.items
        ]
        handle.done.set()
        return handle

    async def _resume(self, rec: RunRecord, flow: Flow, journal: TreeJournal, *, wait: bool) -> RunHandle:
        """Continue a run the journal says was interrupted (a root at start, or a child found again)."""
        state = replay(rec.run_id, journal.recovered)
        plan = self.plan(flow)
        execution = RunExecution(
            plan,
            list(rec.inputs),
            self.dispatch,  # type: ignore[arg-type]
            run_id=rec.run_id,
            root_run_id=rec.root_run_id or rec.run_id,
            variables=rec.variables,
            max_concurrency=rec.max_concurrency,
            journal=journal,
            recovered=state,
        )
        rec.status = "running"
        handle = RunHandle(rec.run_id, flow, execution, rec)
        if state.cancel_requested:
            execution.cancelled = True
        return await self._start(handle, wait)

    async def _execute(self, handle: RunHandle) -> None:
        """Run, record the end, release waiters. Waiters are released and the live entry dropped
        whatever happens, so nothing waits forever on a run that broke or whose record failed."""
        execution = handle.execution
        try:
            try:
                results = await execution.execute()
                if execution.interrupted and self._leave_for_recovery(handle):
                    return
            except BaseException as exc:
                if self.stopping and self._leave_for_recovery(handle):
                    raise
                # The task running the run was cancelled (a waiting request at shutdown), or the
                # engine broke: record what finished and the rest as cancelled or failed, so
                # nothing stays "running" in the store.
                if isinstance(exc, Exception):
                    log.error("run failed inside the engine", run_id=handle.run_id, exc_info=exc)
                    unfinished = FlowResult.failed(500, f"Internal error: {type(exc).__name__}: {exc}")
                else:
                    execution.cancelled = True
                    unfinished = FlowResult.failed(500, "Run was cancelled")
                results = [i.result if i.result is not None else unfinished for i in execution.items]
                results += [unfinished] * (len(execution.inputs) - len(results))
                with anyio.move_on_after(_RECORD_TIMEOUT_S, shield=True):
                    try:
                        await self._record_end(handle, results)
                    except Exception as record_exc:  # the first error is the one to report
                        log.error(
                            "could not record the end of a run",
                            run_id=handle.run_id,
                            error=f"{type(record_exc).__name__}: {record_exc}",
                        )
                raise
            await self._record_end(handle, results)
        finally:
            self._finished_handles_keep(handle)
            handle.done.set()

    def _leave_for_recovery(self, handle: RunHandle) -> bool:
        """At shutdown, a journaled run in a durable store is left unfinished (it resumes at the
        next start); what it journaled so far is queued for the store's last batch."""
        journal = handle.execution.journal
        if journal is None or not self.resumable:
            return False
        journal.publish()
        handle.execution.cancelled = False
        stopped = FlowResult.failed(503, "The server stopped; the run resumes when it starts again")
        handle.results = [i.result if i.result is not None else stopped for i in handle.execution.items]
        handle.results += [stopped] * (len(handle.record.inputs) - len(handle.results))
        log.info("run interrupted by shutdown; it resumes at the next start", run_id=handle.run_id)
        return True

    async def _record_end(self, handle: RunHandle, results: list[FlowResult]) -> None:
        handle.results = results
        rec = handle.record
        rec.completed_at = now_iso()
        cancelled = handle.execution.cancelled
        if cancelled:
            rec.status = "cancelled"
        else:
            rec.status = "failed" if any(r.outcome == "failed" for r in results) else "completed"
        items = [
            ItemRecord(i, _item_status(r, cancelled), r, rec.completed_at) for i, r in enumerate(results)
        ]
        rec.items = items
        journal = handle.execution.journal
        if self.mode == "serve" or self.record_steps or journal is not None:
            steps = StepLog(handle.execution)
            if journal is not None:
                journal.add(rec.run_id, RUN_FINISHED, data={"status": rec.status})
                journal.publish()
            if getattr(self.store, "suspends", True):
                with anyio.CancelScope(shield=True):
                    await self.store.complete_run(rec.run_id, rec.status, rec.completed_at, items, steps)
                    if journal is not None:
                        await journal.barrier()  # the end is durable before anyone sees it
            else:  # nothing to shield: the store's coroutines never suspend
                await self.store.complete_run(rec.run_id, rec.status, rec.completed_at, items, steps)

    def _finished_handles_keep(self, handle: RunHandle) -> None:
        # In serve mode the store has finished runs, so live entries are dropped. In run/test mode
        # nothing persists runs: the most recent finished ones stay readable (``runs/get`` of a
        # nested run) in a bounded map, so a long-lived embedded gateway does not grow forever.
        self.live.pop(handle.run_id, None)
        if self.mode != "serve":
            self._recent[handle.run_id] = handle
            if len(self._recent) > _RECENT_RUNS:
                self._recent.popitem(last=False)

    # -- recovery and cancellation ---------------------------------------------------------------
    async def recover(self, *, limit: int | None = None, wait: bool = False) -> list[RunHandle]:
        """Resume every top-level run a previous process left unfinished (at most ``limit``).

        Runs that cannot be resumed (their flow is gone, a component no longer has a route or a
        plugin) end as ``recoveryFailed`` with an error that names what is missing. Without
        ``wait`` the runs continue in the server's task group; with it, this returns when they end.
        """
        if not self.resumable:
            return []
        handles: list[RunHandle] = []
        for rec in await self.store.unfinished_runs(limit):
            if rec.run_id in self.live:
                continue
            handle = await self.resume_run(rec, wait=wait)
            if handle is not None:
                handles.append(handle)
        if handles:
            log.info("resumed interrupted runs", count=len(handles))
        return handles

    async def resume_run(self, rec: RunRecord, *, wait: bool = False) -> RunHandle | None:
        """Resume one interrupted top-level run; ``None`` if it ended as ``recoveryFailed``."""
        events = await self.store.read_journal(rec.run_id)
        last_seq = max((ev.seq for ev in events), default=0)
        journal = TreeJournal(self.store, rec.run_id, next_seq=last_seq + 1, recovered=events)
        flow = await self.get_flow(rec.flow_id)
        problem = None
        if flow is None:
            problem = f"its flow {rec.flow_id} is no longer in the store"
        else:
            problem = self._unroutable(flow)
        if problem is not None:
            message = f"Run {rec.run_id} cannot be resumed: {problem}"
            log.error("run cannot be resumed", run_id=rec.run_id, problem=problem)
            now = now_iso()
            done = {i.item_index: i for i in rec.items if i.status != "running"}
            failed = FlowResult.failed(500, message)
            items = [
                done.get(i) or ItemRecord(i, "recoveryFailed", failed, now) for i in range(len(rec.inputs))
            ]
            journal.add(rec.run_id, RUN_FINISHED, data={"status": "recoveryFailed", "error": message})
            journal.publish()
            await self.store.complete_run(rec.run_id, "recoveryFailed", now, items, [])
            await journal.barrier()
            return None
        assert flow is not None
        log.info("resuming run", run_id=rec.run_id, flow_id=rec.flow_id, journal_events=len(events))
        return await self._resume(rec, flow, journal, wait=wait)

    def _unroutable(self, flow: Flow) -> str | None:
        """Why some step of ``flow`` cannot be executed with this config, or ``None``."""
        for step in flow.steps:
            try:
                if self.router.needs_input(step.component):
                    plugin, _local = self.router.resolve_static(step.component)
                else:
                    plugin, _local = self.router.resolve(step.component, None)
            except GatewayError as exc:
                return f"step '{step.id}': component '{step.component}' has no route ({exc.message})"
            if plugin and self.plugin_set is not None and plugin not in self.plugin_set.plugins:
                return (
                    f"step '{step.id}': component '{step.component}' routes to plugin '{plugin}', "
                    "which is not configured"
                )
        return None

    async def cancel_run(self, run_id: str) -> bool:
        """Cancel a live run; the request is journaled first. False if the run is not live here."""
        handle = self.live.get(run_id)
        if handle is None:
            return False
        journal = handle.execution.journal
        if journal is not None:
            journal.add(run_id, CANCEL_REQUESTED)
            await journal.barrier()
        handle.cancel()
        return True

    # -- RuntimeAPI ----------------------------------------------------------------------------
    async def put_blob(self, data: Any, blob_type: str = "data") -> str:
        from .jsonutil import blob_id

        if blob_type == "flow":
            try:
                flow = parse_flow(data).flow
            except FlowLoadError as exc:
                raise GatewayError(f"blob is not a valid flow: {exc}") from None
            await self.store.put_blob(flow.flow_id, flow.to_json(), "flow")
            return flow.flow_id
        bid = blob_id(data)
        await self.store.put_blob(bid, data, blob_type)
        return bid

    async def get_blob(self, blob_id: str) -> tuple[Any, str]:
        got = await self.store.get_blob(blob_id)
        if got is None:
            raise GatewayError(f"Blob not found: {blob_id}", code=404)
        data, blob_type = got
        if blob_type == "flow" and isinstance(data, dict):
            data = {"schema": "https://stepflow.org/schemas/v1/flow.json", **data}
        return data, blob_type

    async def submit_run(
        self,
        flow_id: str,
        inputs: list[Any],
        *,
        wait: bool = True,
        max_concurrency: int | None = None,
        overrides: Any = None,
        parent: ExecutionContext | None = None,
    ) -> RunInfo:
        flow = await self.get_flow(flow_id)
        if flow is None:
            raise GatewayError(f"Flow not found: {flow_id}", code=404)
        if not wait and self.task_group is None:
            wait = True  # no background task group outside serve: run to completion
        handle = await self.submit(
            flow, inputs, max_concurrency=max_concurrency, overrides=overrides, parent=parent, wait=wait
        )
        return handle.info()

    async def get_run(
        self,
        run_id: str,
        *,
        wait: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 (public API)
    ) -> RunInfo:
        handle = self.live.get(run_id) or self._recent.get(run_id)
        if handle is not None:
            if wait:
                with anyio.move_on_after(timeout if timeout is not None else 3600):
                    await handle.done.wait()
            return handle.info()
        rec = await self.store.get_run(run_id)
        if rec is None:
            raise RunNotFound(f"Execution '{run_id}' not found")
        return RunInfo(
            rec.run_id,
            rec.flow_id,
            rec.status,
            [i.result for i in rec.items],
            rec.created_at,
            rec.completed_at,
        )

    async def flow_metadata(self, flow_id: str, step_id: str | None = None) -> dict[str, Any]:
        flow = await self.get_flow(flow_id)
        if flow is None:
            raise GatewayError(f"Flow not found: {flow_id}", code=404)
        out: dict[str, Any] = {"flow_metadata": flow.metadata}
        if step_id is not None:
            step = flow.step(step_id)
            out["step_metadata"] = step.metadata if step is not None else None
        return out
