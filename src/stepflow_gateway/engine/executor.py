"""One run of one flow over one or more input items: lazy, parallel, re-evaluated as steps finish.

Owns flow-format.md §7–9: which steps are needed (only what the output and ``mustExecute`` steps
need), starting them as soon as their inputs resolve, ``skipIf``/``depends_on``, ``onError``
policies, and the shape of step failures.

Scheduling is a worklist, not recursion (chains of thousands of steps), and each waiting expression
keeps a count of the steps it still waits for, so a completion costs O(its waiters): linear in the
flow size overall. Components that need no I/O (``execute_inline``) run synchronously inside the
worklist; everything else runs as a task in the run's task group and re-enters the worklist when it
completes. All state is touched from the event-loop thread only, so there are no locks.

With a journal (``engine.journal.TreeJournal``) every step end, item end and component call start
is recorded; the journal's barrier is awaited before each component call that does I/O. A run
resumed after a crash gets the journal's ``RecoveredRun``: finished steps keep their results and
are not called again, a call that was in flight runs again with the next ``attempt``.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from ..core.journal import ITEM_FINISHED, STEP_FINISHED, STEP_RETRY, STEP_STARTED, RecoveredRun
from ..core.result import FlowResult, ResultError
from ..errors import GatewayError, RoutingError
from ..flow.expr import EvalScope, Failed, Pending, Skipped, is_truthy
from ..flow.model import Flow, Step
from ..logging import get_logger
from ..plugins.base import ExecutionContext
from .inputs import InputChecker, resolve_variables
from .journal import TreeJournal

__all__ = ["Dispatch", "Plan", "RunExecution", "StepEvent"]

log = get_logger(__name__)

# step states
NEW, DEMANDED, WAITING, RUNNING, DONE = 0, 1, 2, 3, 4
OUTPUT = -1


def rust_debug_str(s: str) -> str:
    """A string quoted the way Rust's ``{:?}`` quotes it (for ``step "<id>" failed``)."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Plan:
    """Everything about a flow that does not change between runs; built once per flow."""

    __slots__ = ("flow", "flow_id", "steps", "index", "roots", "input_checker", "_route_cache")

    def __init__(self, flow: Flow) -> None:
        self.flow = flow
        self.flow_id = flow.flow_id
        self.steps: list[Step] = flow.steps
        self.index: dict[str, int] = {}
        for i, s in enumerate(flow.steps):
            self.index.setdefault(s.id, i)
        self.roots = [i for i, s in enumerate(flow.steps) if s.must_execute]
        schema = flow.input_schema
        self.input_checker = InputChecker(schema, flow.schemas) if isinstance(schema, dict) else None
        self._route_cache: list[Any] = [None] * len(flow.steps)


@dataclass(slots=True)
class Dispatch:
    """How the executor reaches components: the router, the started plugins, the callback API."""

    router: Any
    plugins: dict[str, Any]
    runtime: Any
    default_backoff: Any = None


@dataclass(slots=True)
class StepEvent:
    """A progress event: ``step_started`` | ``step_completed`` | ``item_completed`` | ``run_completed``."""

    kind: str
    run_id: str
    item_index: int = 0
    step_id: str | None = None
    result: FlowResult | None = None
    at: float = 0.0


class ItemState(EvalScope):
    __slots__ = (
        "item_index",
        "state",
        "wait_count",
        "waiters",
        "result",
        "started",
        "finished",
        "attempts",
    )

    def __init__(self, item_index: int, input: Any, variables: dict[str, Any], plan: Plan) -> None:
        super().__init__(input, {}, variables, plan.index)
        n = len(plan.steps)
        self.item_index = item_index
        self.state = [NEW] * n
        self.wait_count: dict[int, int] = {}
        self.waiters: dict[int, list[int]] = {}
        self.result: FlowResult | None = None
        self.started: list[float] = [0.0] * n
        self.finished: list[float] = [0.0] * n
        self.attempts: list[int] = [0] * n
        """The number of each step's last try (0: never started)."""


def outcome_to_result(outcome: Any) -> FlowResult:
    t = type(outcome)
    if t is Failed:
        return FlowResult("failed", None, outcome.error)
    if t is Skipped:
        return FlowResult("skipped", None, None, outcome.reason)
    return FlowResult("success", outcome)


def result_to_outcome(result: FlowResult) -> Any:
    if result.outcome == "success":
        return result.result
    if result.outcome == "failed":
        return Failed(result.error or ResultError(500, "failed"))
    return Skipped(result.reason)


def component_failure(step: Step, local: str, exc: BaseException) -> Failed:
    """``failed {500, 'step "<id>" failed', data: {stack}}`` for a component or plugin error."""
    attachments = [f"Component: {local}", f"Component execution failed for step '{step.id}'"]
    below: list[dict[str, Any]]
    if isinstance(exc, GatewayError):
        attachments.extend(getattr(exc, "attachments", []) or [])
        below = list(getattr(exc, "stack", None) or [{"error": exc.message}])
    else:
        below = [{"error": f"{type(exc).__name__}: {exc}"}]
    message = f"step {rust_debug_str(step.id)} failed"
    stack = [{"error": message, "attachments": attachments}, *below]
    return Failed(ResultError(500, message, {"stack": stack}))


def _call_failure(step: Step, local: str, exc: Exception) -> Failed:
    """A raised component call as a step failure; anything but a ``GatewayError`` is a plugin bug."""
    if not isinstance(exc, GatewayError):
        log.exception("plugin raised", step_id=step.id, component=step.component)
    return component_failure(step, local, exc)


def _use_default(step: Step, outcome: Any) -> Any:
    """``onError: useDefault`` turns a failure of the step's own call into its literal default."""
    if type(outcome) is Failed and step.on_error.action == "useDefault":
        return step.on_error.default_value if step.on_error.has_default else None
    return outcome


class RunExecution:
    """The mutable state of one run. ``await execute()`` returns one ``FlowResult`` per item."""

    def __init__(
        self,
        plan: Plan,
        inputs: list[Any],
        dispatch: Dispatch,
        *,
        run_id: str,
        root_run_id: str | None = None,
        variables: dict[str, Any] | None = None,
        max_concurrency: int | None = None,
        listener: Callable[[StepEvent], None] | None = None,
        journal: TreeJournal | None = None,
        recovered: RecoveredRun | None = None,
    ) -> None:
        self.plan = plan
        self.inputs = inputs
        self.dispatch = dispatch
        self.run_id = run_id
        self.root_run_id = root_run_id or run_id
        self.variables = resolve_variables(plan.flow.variables_schema, variables)
        self.limiter = anyio.CapacityLimiter(max_concurrency) if max_concurrency else None
        self.listener = listener
        self.items: list[ItemState] = []
        self.cancelled = False
        self.interrupted = False
        """Stopped by a shutdown, not by a cancel: the run is left for recovery."""
        self._tg: Any = None
        self._deferred: list[tuple[Any, ...]] | None = None
        self._scope: anyio.CancelScope | None = None
        self.journal = journal
        self.recovered = recovered

    # ---------------------------------------------------------------------------------------
    async def execute(self) -> list[FlowResult]:
        if self.cancelled:  # cancelled before it started
            for i, item in enumerate(self.inputs):
                self.items.append(ItemState(i, item, self.variables, self.plan))
        else:
            # Inline components finish inside this first pass. Steps that need I/O are deferred:
            # one at a time they are awaited right here (a chain of calls needs no task), and
            # when several are ready together they run in a task group. Only the cancel scope is
            # opened for every run that does I/O.
            deferred: list[tuple[Any, ...]] = []
            self._deferred = deferred
            for i, item in enumerate(self.inputs):
                self._start_item(i, item)
            if deferred:
                with anyio.CancelScope() as scope:
                    self._scope = scope
                    if self.cancelled:
                        scope.cancel()
                    while deferred:
                        if len(deferred) == 1:
                            await self._run_step(*deferred.pop())
                            continue
                        ready = deferred[:]
                        deferred.clear()
                        async with anyio.create_task_group() as tg:
                            self._tg = tg
                            for args in ready:
                                tg.start_soon(self._run_step, *args)
                        self._tg = None
            self._deferred = None
        results: list[FlowResult] = []
        for item in self.items:
            if item.result is None:
                item.result = (
                    FlowResult.failed(500, "Run was cancelled")
                    if self.cancelled
                    else FlowResult.failed(500, "Flow output could not be completed")
                )
            results.append(item.result)
        if self.listener is not None:
            self.listener(StepEvent("run_completed", self.run_id, at=time.time()))
        return results

    def cancel(self) -> None:
        """Cancel every step in flight; unfinished items end as cancelled."""
        self.cancelled = True
        if self._scope is not None:
            self._scope.cancel()

    # ---------------------------------------------------------------------------------------
    def _start_item(self, index: int, raw_input: Any) -> None:
        plan = self.plan
        value = raw_input
        if plan.input_checker is not None:
            checked = plan.input_checker.check(raw_input)
            if type(checked) is FlowResult:
                item = ItemState(index, raw_input, self.variables, plan)
                self.items.append(item)
                self._set_item_result(item, checked)
                return
            value = checked
        item = ItemState(index, value, self.variables, plan)
        self.items.append(item)
        if self.recovered is not None and self._seed(item):
            return
        work: list[int] = [OUTPUT]
        for r in plan.roots:
            item.state[r] = DEMANDED
            work.append(r)
        self._drive(item, work)

    def _seed(self, item: ItemState) -> bool:
        """Put back what the journal says this item had finished; True if the item itself had."""
        recovered = self.recovered
        assert recovered is not None
        done = recovered.items.get(item.item_index)
        if done is not None:
            item.result = done
            return True
        index = item.item_index
        for i, step in enumerate(self.plan.steps):
            prior = recovered.steps.get((index, step.id))
            if prior is not None and prior.result is not None:
                item.state[i] = DONE
                item.results[step.id] = result_to_outcome(prior.result)
                item.attempts[i] = prior.attempts or 1
        return False

    def _set_item_result(self, item: ItemState, result: FlowResult) -> None:
        item.result = result
        if self.journal is not None:
            self.journal.add(self.run_id, ITEM_FINISHED, item.item_index, None, 0, result)
        if self.listener is not None:
            self.listener(
                StepEvent("item_completed", self.run_id, item.item_index, None, result, time.time())
            )

    def _drive(self, item: ItemState, work: list[int]) -> None:
        steps = self.plan.steps
        state = item.state
        while work:
            w = work.pop()
            if w == OUTPUT:
                if item.result is not None:
                    continue
                r = self.plan.flow.output.eval(item)
                if type(r) is Pending:
                    self._wait(item, OUTPUT, r.needs, work)
                else:
                    self._set_item_result(item, outcome_to_result(r))
                continue
            st = state[w]
            if st != DEMANDED and st != WAITING:
                continue
            step = steps[w]
            pre = self._prepare(item, step)
            t = type(pre)
            if t is Pending:
                self._wait(item, w, pre.needs, work)
                continue
            if t is Failed or t is Skipped:
                self._finish(item, w, pre, work)
                continue
            # ready: route and run
            state[w] = RUNNING
            item.started[w] = time.time()
            if self.listener is not None:
                self.listener(
                    StepEvent("step_started", self.run_id, item.item_index, step.id, None, item.started[w])
                )
            route = self._route(w, step, pre)
            if type(route) is Failed:
                self._finish(item, w, route, work)
                continue
            plugin, local = route
            inline = getattr(plugin, "execute_inline", None)
            if inline is not None and step.on_error.action != "retry":
                ctx = self._context(item, step, 1)
                try:
                    res = inline(local, pre, ctx)
                except Exception as exc:  # a plugin bug must not take the run down either
                    res = _call_failure(step, local, exc)
                if res is not None:
                    outcome = res if type(res) is Failed else result_to_outcome(res)
                    self._finish(item, w, _use_default(step, outcome), work, 1)
                    continue
            if self._tg is not None:
                self._tg.start_soon(self._run_step, item, w, step, plugin, local, pre)
            else:
                assert self._deferred is not None  # set for the whole of execute()
                self._deferred.append((item, w, step, plugin, local, pre))

    def _wait(self, item: ItemState, waiter: int, needs: list[str], work: list[int]) -> None:
        index = self.plan.index
        state = item.state
        uniq = dict.fromkeys(needs)
        item.wait_count[waiter] = len(uniq)
        if waiter != OUTPUT:
            state[waiter] = WAITING
        for sid in uniq:
            n = index[sid]
            lst = item.waiters.get(n)
            if lst is None:
                item.waiters[n] = [waiter]
            else:
                lst.append(waiter)
            if state[n] == NEW:
                state[n] = DEMANDED
                work.append(n)

    def _finish(self, item: ItemState, i: int, outcome: Any, work: list[int], attempt: int = 0) -> None:
        step = self.plan.steps[i]
        item.state[i] = DONE
        item.results[step.id] = outcome
        item.finished[i] = time.time()
        if attempt:
            item.attempts[i] = attempt
        if self.journal is not None:
            self.journal.add(
                self.run_id, STEP_FINISHED, item.item_index, step.id, attempt, outcome_to_result(outcome)
            )
        if self.listener is not None:
            self.listener(
                StepEvent(
                    "step_completed",
                    self.run_id,
                    item.item_index,
                    step.id,
                    outcome_to_result(outcome),
                    item.finished[i],
                )
            )
        waiters = item.waiters.pop(i, None)
        if waiters:
            wc = item.wait_count
            for w in waiters:
                c = wc[w] - 1
                wc[w] = c
                if c == 0:
                    work.append(w)

    def _prepare(self, item: ItemState, step: Step) -> Any:
        """Evaluate ``skipIf``, ``depends_on`` and the input: Pending, Failed, Skipped or the input."""
        if step.skip_if is not None:
            c = step.skip_if.eval(item)
            tc = type(c)
            if tc is Pending:
                return c
            if tc is Failed:
                return c
            if is_truthy(c):
                return Skipped("skipIf condition is true")
        if step.depends_on:
            needs: list[str] = []
            for dep in step.depends_on:
                v = item.results.get(dep, _MISSING)
                if v is _MISSING:
                    needs.append(dep)
                    continue
                tv = type(v)
                if tv is Failed:
                    return v
                if tv is Skipped:
                    return Skipped(f"dependency {dep} was skipped")
            if needs:
                return Pending(needs)
        return step.input.eval(item)

    def _route(self, i: int, step: Step, input: Any) -> Any:
        cache = self.plan._route_cache
        cached = cache[i]
        if cached is not None and cached[0] is self.dispatch:
            return cached[1]
        router = self.dispatch.router
        try:
            plugin_name, local = router.resolve(step.component, input)
            plugin = self.dispatch.plugins.get(plugin_name)
            if plugin is None:
                raise RoutingError(f"Plugin '{plugin_name}' is not available for component: {step.component}")
        except GatewayError as exc:
            return component_failure(step, step.component, exc)
        route = (plugin, local)
        if not router.needs_input(step.component):
            cache[i] = (self.dispatch, route)
        return route

    def _context(self, item: ItemState, step: Step, attempt: int, retry: int = 0) -> ExecutionContext:
        return ExecutionContext(
            runtime=self.dispatch.runtime,
            run_id=self.run_id,
            flow_id=self.plan.flow_id,
            step_id=step.id,
            item_index=item.item_index,
            attempt=attempt,
            root_run_id=self.root_run_id,
            retry=retry,
        )

    async def _run_step(
        self, item: ItemState, i: int, step: Step, plugin: Any, local: str, input: Any
    ) -> None:
        outcome, attempt = await self._call(item, step, plugin, local, input)
        work: list[int] = []
        self._finish(item, i, outcome, work, attempt)
        self._drive(item, work)

    async def _call(
        self, item: ItemState, step: Step, plugin: Any, local: str, input: Any
    ) -> tuple[Any, int]:
        """The step's outcome after its tries, and the number of its last try."""
        policy = step.on_error
        attempt, retry = 1, 0
        journal = self.journal
        if self.recovered is not None:
            prior = self.recovered.steps.get((item.item_index, step.id))
            if prior is not None:  # it was started before a crash: this is the next try
                attempt, retry = prior.attempts + 1, prior.retries
        while True:
            ctx = self._context(item, step, attempt, retry)
            if journal is not None:
                journal.add(self.run_id, STEP_STARTED, item.item_index, step.id, attempt)
                try:
                    await journal.barrier()
                except GatewayError as exc:
                    message = (
                        f"the state store is unavailable, so step '{step.id}' was not started: {exc.message}"
                    )
                    return Failed(ResultError(503, message)), attempt
            try:
                if self.limiter is not None:
                    async with self.limiter:
                        res = await plugin.execute(local, input, ctx)
                else:
                    res = await plugin.execute(local, input, ctx)
                outcome = result_to_outcome(res)
            except Exception as exc:
                outcome = _call_failure(step, local, exc)
            if (
                type(outcome) is Failed
                and policy.action == "retry"
                and retry < policy.max_retries
                and outcome.error.retryable  # not upstream HEAD's never-retried string codes
            ):
                retry += 1
                if journal is not None:
                    journal.add(
                        self.run_id, STEP_RETRY, item.item_index, step.id, attempt, outcome_to_result(outcome)
                    )
                delay = backoff_seconds(policy.backoff, self.dispatch.default_backoff, retry)
                log.info(
                    "retrying step",
                    step_id=step.id,
                    attempt=attempt + 1,
                    delay_s=round(delay, 3),
                    error=outcome.error.message,
                )
                await anyio.sleep(delay)
                attempt += 1
                continue
            break
        return _use_default(step, outcome), attempt

    # ---------------------------------------------------------------------------------------
    def step_states(self) -> list[tuple[int, int, Step, str, FlowResult | None, float, float]]:
        """``(item, step index, step, status, result, started, finished)`` for every step of every item."""
        out = []
        for item in self.items:
            for i, step in enumerate(self.plan.steps):
                st = item.state[i]
                result = None
                if st == DONE:
                    outcome = item.results.get(step.id)
                    result = outcome_to_result(outcome)
                    status = {"success": "completed", "failed": "failed", "skipped": "skipped"}[
                        result.outcome
                    ]
                elif st == RUNNING:
                    status = "running"
                elif st == WAITING:
                    status = "blocked"
                elif st == DEMANDED:
                    status = "runnable"
                else:
                    status = "blocked"
                out.append((item.item_index, i, step, status, result, item.started[i], item.finished[i]))
        return out


_MISSING: Any = object()


def backoff_seconds(spec: Any, default: Any, n: int) -> float:
    """Delay before retry ``n`` (1-based) per config.md §6, with ±10% jitter."""
    spec = spec if spec is not None else default
    if spec is None:
        spec = {"type": "fibonacci", "minDelayMs": 1000, "maxDelayMs": 10000}
    if hasattr(spec, "delay_ms"):
        ms = float(spec.delay_ms(n))
    else:
        kind = spec.get("type", "fibonacci")
        if kind == "constant":
            ms = float(spec.get("delayMs", 1000))
        elif kind == "exponential":
            ms = min(
                float(spec.get("minDelayMs", 1000)) * float(spec.get("factor", 2.0)) ** (n - 1),
                float(spec.get("maxDelayMs", 10000)),
            )
        else:
            a, b = 1, 1
            for _ in range(n - 1):
                a, b = b, a + b
            ms = min(float(spec.get("minDelayMs", 1000)) * a, float(spec.get("maxDelayMs", 10000)))
    if not math.isfinite(ms) or ms < 0:
        ms = 0.0
    return ms / 1000.0 * random.uniform(0.9, 1.1)
