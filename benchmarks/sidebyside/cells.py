"""The measurements: cold start, memory, and per-flow load cells, both runtimes interleaved.

Order of a run (each runtime alternately first, A B then B A, so machine drift cancels):

1. cold starts: spawn → healthy → store noop-1 → first result, per config, ``cold_reps`` times;
2. both long-running servers (full config) start; idle RSS;
3. memory: noop-1 at ``memory_concurrency`` up to each checkpoint, RSS after each;
4. per flow: store, warm up, then each concurrency cell ``rounds`` times; server CPU (the process tree)
   is read before and after every cell; results are pooled across rounds;
5. peak RSS (VmHWM) at the end.

A runtime that fails to start, dies, or cannot store or run a flow gets "n/a: <reason>" in the affected
cells; the other runtime is still measured.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from . import client, procstat
from .flows import WITH_COMPONENT_SERVER, load_flow
from .profiles import Profile
from .pyspy import profiling
from .results import Results, Value, na
from .servers import PORTS, RUNTIMES, Runtime, Server, StartError, running

__all__ = ["Bench"]

log = structlog.get_logger(__name__)

RUN_PATH = "/api/v1/runs"
CLI_TIMEOUT_S = 60.0
"""Bound of one ``stepflow-gateway run`` in the CLI cell."""
FLOW_PATH = "/api/v1/flows"
INPUT = [{"data": "bench"}]
COLD_PORT_OFFSET = 10
"""Cold starts use their own ports so a lingering long-running server can never answer for them."""
SETTLE_S = 1.0
"""Pause after start before reading idle RSS (children finish their own start-up)."""
CLIENT_BUSY = 0.9
"""A cell where the client used more than this share of its core may be client-bound: noted."""
MIB = 1024.0


def _short(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(slots=True)
class _Pool:
    """One (flow, concurrency, runtime) cell pooled over rounds."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed: float = 0.0
    cpu_s: float = 0.0
    own_cpu_s: float = 0.0
    sample: str = ""
    timed_out: bool = False


class Bench:
    """One harness run: owns the runtimes, the servers while they run, and the ``Results``."""

    def __init__(
        self,
        profile: Profile,
        runtimes: dict[str, Runtime],
        configs: dict[str, Path],
        results: Results,
        flows_dir: Path | None = None,
        py_spy: Path | None = None,
        guard_mib: float = 4096.0,
    ) -> None:
        self.p = profile
        self.runtimes = runtimes
        self.configs = configs
        self.res = results
        self.flows_dir = flows_dir
        self.py_spy = py_spy
        """Directory for py-spy profiles of our server, one per flow (``None``: no profiling)."""
        self.servers: dict[str, Server] = {}
        self.stacks: dict[str, AsyncExitStack] = {}
        """One exit stack per running long-lived server, so either can be restarted alone."""
        self.peaks: dict[str, tuple[int, int]] = {}
        """Largest (server, tree) VmHWM in KiB seen over every instance of each runtime."""
        self.restarts = 0
        self.p_guard_mib = guard_mib
        """RSS (MiB, process tree) above which both servers are restarted between cells."""
        self.down: dict[str, str] = {}
        """Runtimes that are not usable, with the reason."""
        self.client_busy: list[str] = []

    # -- helpers ---------------------------------------------------------------------------------------

    def _order(self, i: int) -> tuple[str, ...]:
        return RUNTIMES if i % 2 == 0 else tuple(reversed(RUNTIMES))

    def _usable(self, name: str) -> str | None:
        """``None`` if the runtime's server is up, else why not (and remember it)."""
        if name in self.down:
            return self.down[name]
        reason = self.servers[name].alive_reason()
        if reason:
            self.down[name] = _short(reason)
            self.res.notes.append(f"{name}: {reason}")
        return self.down.get(name)

    async def _store(self, port: int, flow: dict) -> str:
        body = await client.post_json(port, FLOW_PATH, {"flow": flow})
        fid = body.get("flowId")
        if not fid or body.get("stored") is False:
            diags = body.get("diagnostics", {}).get("diagnostics", [])
            fatal = [d.get("formatted", "") for d in diags if d.get("level") in ("fatal", "error")]
            raise client.HttpError(f"flow not stored: {'; '.join(fatal) or json.dumps(body)[:200]}")
        return fid

    @staticmethod
    def _run_body(fid: str) -> bytes:
        return json.dumps({"flowId": fid, "input": INPUT}).encode()

    # -- 1. cold start ---------------------------------------------------------------------------------

    async def cold_starts(self) -> None:
        flow = load_flow("noop-1", self.flows_dir)
        samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
        errors: dict[tuple[str, str], str] = {}
        i = 0
        for rep in range(self.p.cold_reps):
            for cfg in self.p.cold_configs:
                for name in self._order(i):
                    i += 1
                    key = (cfg, name)
                    rt = self.runtimes[name]
                    try:
                        async with running(
                            rt,
                            self.configs[cfg],
                            port=PORTS[name] + COLD_PORT_OFFSET,
                            tag=f"-cold-{cfg}-{rep}",
                        ) as srv:
                            fid = await self._store(srv.port, flow)
                            status, body = await client.request(
                                srv.port, "POST", RUN_PATH, self._run_body(fid)
                            )
                            first = time.perf_counter() - srv.spawned_at
                            if status != 200 or b'"completed"' not in body:
                                raise client.HttpError(f"first run failed: HTTP {status} {body[:150]!r}")
                        samples.setdefault(key, []).append((srv.ready_s, first))
                    except (StartError, client.HttpError, OSError, TimeoutError) as exc:
                        errors[key] = _short(str(exc))
                        self.res.notes.append(f"{name}, cold start with the {cfg} config: {exc}")
        for cfg in self.p.cold_configs:
            label = "builtin only" if cfg == "builtin" else f"{cfg} config"
            ready = self.res.row("cold start", f"spawn → healthy ({label})", "ms", "lower")
            first = self.res.row("cold start", f"spawn → first result ({label})", "ms", "lower")
            for name in RUNTIMES:
                got = samples.get((cfg, name))
                if got:
                    note = f"median of {len(got)}" if len(got) > 1 else ""
                    ready.values[name] = Value(statistics.median(s[0] for s in got) * 1e3, note)
                    first.values[name] = Value(statistics.median(s[1] for s in got) * 1e3, note)
                else:
                    reason = errors.get((cfg, name), "not measured")
                    ready.values[name] = first.values[name] = na(reason)

    async def cli_runs(self) -> None:
        """``stepflow-gateway run`` of noop-1 with the builtin config: process wall time, ``cold_reps``
        x 3 times (upstream 0.9.0 ships only its server, so that column is n/a)."""
        rt = self.runtimes["ours"]
        row = self.res.row("cli", "`run` of noop-1, builtin config, wall", "ms", "lower")
        row.values["upstream"] = na("0.9.0 ships no run command")
        flow_path = rt.logdir / "cli-noop-1.json"  # the harness's work directory
        flow_path.write_text(json.dumps(load_flow("noop-1", self.flows_dir)))
        argv = [
            str(rt.tools.gateway),
            "run",
            "--flow",
            str(flow_path),
            "--input-json",
            json.dumps(INPUT[0]),
            "--config",
            str(self.configs["builtin"]),
        ]
        if rt.server_cpu is not None and shutil.which("taskset"):
            argv = ["taskset", "-c", str(rt.server_cpu), *argv]
        walls: list[float] = []
        for _ in range(self.p.cold_reps * 3):
            t0 = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=rt.env()
            )
            try:
                out, err = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT_S)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                row.values["ours"] = na(f"run took over {CLI_TIMEOUT_S:g} s")
                return
            wall = time.perf_counter() - t0
            if proc.returncode != 0 or b'"success"' not in out:
                why = f"run exited {proc.returncode}: {(err or out)[-200:].decode(errors='replace')}"
                self.res.notes.append(f"ours, cli run: {why}")
                row.values["ours"] = na(_short(why))
                return
            walls.append(wall)
        note = f"median of {len(walls)}" if len(walls) > 1 else ""
        row.values["ours"] = Value(statistics.median(walls) * 1e3, note)

    # -- 2. long-running servers -----------------------------------------------------------------------

    async def _start(self, name: str) -> None:
        stack = AsyncExitStack()
        try:
            tag = f"-main{self.restarts}" if self.restarts else "-main"
            self.servers[name] = await stack.enter_async_context(
                running(self.runtimes[name], self.configs["full"], tag=tag)
            )
            self.stacks[name] = stack
        except StartError as exc:
            await stack.aclose()
            self.servers.pop(name, None)
            self.down[name] = _short(str(exc))
            self.res.notes.append(f"{name} did not start with the full config: {exc}")

    def _note_peak(self, name: str) -> None:
        srv = self.servers.get(name)
        if srv is None or srv.proc.poll() is not None:
            return
        m = procstat.memory(srv.pid)
        old = self.peaks.get(name, (0, 0))
        self.peaks[name] = (max(old[0], m.server_hwm), max(old[1], m.tree_hwm))

    async def stop_all(self) -> None:
        for name in list(self.stacks):
            self._note_peak(name)
            await self.stacks.pop(name).aclose()

    async def _guard(self, where: str) -> bool:
        """Restart both servers when either tree's RSS passed the guard (upstream keeps every run).

        Both restart, so neither carries history the other does not. Returns True after a restart.
        """
        big = {}
        for name, srv in self.servers.items():
            if name not in self.down and srv.proc.poll() is None:
                rss = procstat.memory(srv.pid).tree_rss / MIB
                if rss > self.p_guard_mib:
                    big[name] = rss
        if not big:
            return False
        self.restarts += 1
        what = ", ".join(f"{n} at {v:,.0f} MiB" for n, v in big.items())
        self.res.notes.append(
            f"both servers restarted before {where} ({what}; guard {self.p_guard_mib:,.0f} MiB)"
        )
        await self.stop_all()
        for name in RUNTIMES:
            if name not in self.down:
                await self._start(name)
        return True

    async def start_all(self) -> None:
        for name in RUNTIMES:
            await self._start(name)
        up = self.servers.get("upstream")
        if up is not None:
            try:
                status, body = await client.request(up.port, "GET", "/api/v1/health")
                self.res.meta["upstream version"] = str(json.loads(body).get("version", "?"))
            except (OSError, TimeoutError, ValueError):
                pass

    def idle_memory(self) -> None:
        rows = [
            self.res.row("memory", "RSS idle, server process", "MiB", "lower"),
            self.res.row("memory", "RSS idle, server + children", "MiB", "lower"),
        ]
        for name in RUNTIMES:
            why = self._usable(name) if name in self.servers else self.down.get(name, "not started")
            if why:
                for r in rows:
                    r.values[name] = na(why)
                continue
            m = procstat.memory(self.servers[name].pid)
            rows[0].values[name] = Value(m.server_rss / MIB)
            rows[1].values[name] = Value(m.tree_rss / MIB)

    # -- 3. memory growth ------------------------------------------------------------------------------

    async def memory_growth(self) -> None:
        flow = load_flow("noop-1", self.flows_dir)
        bodies: dict[str, bytes] = {}
        done: dict[str, int] = {}
        spent: dict[str, float] = {}
        for name in RUNTIMES:
            if self._usable_started(name):
                try:
                    bodies[name] = self._run_body(await self._store(self.servers[name].port, flow))
                    done[name], spent[name] = 0, 0.0
                except client.HttpError as exc:
                    self.down[name] = _short(str(exc))
        rows = {}
        for cp in self.p.memory_checkpoints:
            rows[cp] = self.res.row("memory", f"RSS after {cp:,} noop-1 runs, server process", "MiB", "lower")
        for i, cp in enumerate(self.p.memory_checkpoints):
            for name in self._order(i):
                row = rows[cp]
                if name not in bodies or self._usable_started(name) is False:
                    row.values[name] = na(self.down.get(name, "not started"))
                    continue
                budget = self.p.memory_seconds - spent[name]
                want = cp - done[name]
                if want > 0 and budget > 0:
                    r = await client.load(
                        self.servers[name].port,
                        RUN_PATH,
                        bodies[name],
                        concurrency=self.p.memory_concurrency,
                        count=want,
                        seconds=budget,
                    )
                    done[name] += r.runs
                    spent[name] += r.elapsed
                    if r.errors:
                        self.res.notes.append(f"{name}, memory cell: {r.errors} errors ({r.error_sample})")
                m = procstat.memory(self.servers[name].pid)
                note = "" if done[name] >= cp else f"only {done[name]:,} runs in {self.p.memory_seconds:g} s"
                row.values[name] = Value(m.server_rss / MIB, note)
        if len(self.p.memory_checkpoints) >= 2:
            first, last = rows[self.p.memory_checkpoints[0]], rows[self.p.memory_checkpoints[-1]]
            growth = self.res.row(
                "memory",
                f"RSS after {self.p.memory_checkpoints[-1]:,} ÷ after {self.p.memory_checkpoints[0]:,}",
                "×",
                "lower",
            )
            for name in RUNTIMES:
                a, b = first.values.get(name), last.values.get(name)
                if a and b and a.num and b.num is not None:
                    growth.values[name] = Value(b.num / a.num)
                else:
                    growth.values[name] = na((b or a or na("not measured")).note or "not measured")

    def _usable_started(self, name: str) -> bool:
        return name in self.servers and self._usable(name) is None

    def peak_memory(self) -> None:
        rows = [
            self.res.row("memory", "peak RSS (VmHWM), server process", "MiB", "lower"),
            self.res.row("memory", "peak RSS (VmHWM), server + live children", "MiB", "lower"),
        ]
        note = f"max over {self.restarts + 1} instances" if self.restarts else ""
        for name in RUNTIMES:
            self._note_peak(name)
            if name not in self.peaks:
                for r in rows:
                    r.values[name] = na(self.down.get(name, "not started"))
                continue
            server, tree = self.peaks[name]
            rows[0].values[name] = Value(server / MIB, note)
            rows[1].values[name] = Value(tree / MIB, note)

    # -- 4. flows --------------------------------------------------------------------------------------

    async def _prepare(self, flow_name: str, flow: dict, skip: dict[str, str]) -> dict[str, bytes]:
        """Store and warm up ``flow`` on each usable runtime; return the run request bodies.

        A runtime that cannot store or run it gets its reason in ``skip``.
        """
        bodies: dict[str, bytes] = {}
        for name in RUNTIMES:
            if name in skip:
                continue
            if not self._usable_started(name):
                skip[name] = self.down.get(name, "not started")
                continue
            port = self.servers[name].port
            try:
                bodies[name] = self._run_body(await self._store(port, flow))
            except client.HttpError as exc:
                skip[name] = _short(str(exc))
                self.res.notes.append(f"{name}, {flow_name}: {exc}")
                continue
            warm = await client.load(
                port,
                RUN_PATH,
                bodies[name],
                concurrency=min(8, max(self.p.concurrency)),
                count=self.p.warmup_count,
                seconds=self.p.warmup_seconds,
            )
            if warm.runs == 0:
                skip[name] = _short(f"warm-up failed: {warm.error_sample}")
                self.res.notes.append(f"{name}, {flow_name}: warm-up failed: {warm.error_sample}")
        return bodies

    async def flow_cells(self, flow_name: str) -> None:
        flow = load_flow(flow_name, self.flows_dir)
        skip: dict[str, str] = {}
        await self._guard(flow_name)
        bodies = await self._prepare(flow_name, flow, skip)
        pools: dict[tuple[int, str], _Pool] = {}
        i = 0
        async with profiling(self.py_spy, self.servers.get("ours"), flow_name):
            for _ in range(self.p.rounds):
                for c in self.p.concurrency:
                    if await self._guard(f"{flow_name} c={c}"):
                        bodies = await self._prepare(flow_name, flow, skip)
                    for name in self._order(i):
                        if name in skip:
                            continue
                        why = self._usable(name)
                        if why:
                            skip[name] = why
                            continue
                        await self._cell(
                            flow_name, name, c, bodies[name], pools.setdefault((c, name), _Pool())
                        )
                    i += 1
        self._flow_rows(flow_name, pools, skip)

    async def _cell(self, flow_name: str, name: str, c: int, body: bytes, pool: _Pool) -> None:
        srv = self.servers[name]
        cpu0, srv0 = procstat.cpu_seconds(srv.pid), procstat.process_cpu_seconds(srv.pid)
        own0, t0 = _own_cpu(), time.perf_counter()
        r = await client.load(
            srv.port, RUN_PATH, body, concurrency=c, count=self.p.cell_count, seconds=self.p.cell_seconds
        )
        wall = time.perf_counter() - t0
        pool.cpu_s += procstat.cpu_seconds(srv.pid) - cpu0
        pool.own_cpu_s += procstat.process_cpu_seconds(srv.pid) - srv0
        busy = (_own_cpu() - own0) / wall if wall > 0 else 0.0
        if busy > CLIENT_BUSY:
            self.client_busy.append(f"{flow_name} c={c} {name} ({busy:.0%})")
        pool.latencies.extend(r.latencies)
        pool.errors += r.errors
        pool.elapsed += r.elapsed
        pool.sample = pool.sample or r.error_sample
        pool.timed_out = pool.timed_out or r.timed_out
        log.debug(
            "cell",
            flow=flow_name,
            runtime=name,
            c=c,
            runs=r.runs,
            rps=round(r.runs_per_s),
            p50_ms=round(r.quantile(0.5) * 1e3, 2),
            max_ms=round(r.latencies[-1] * 1e3, 1) if r.runs else None,
        )

    def _flow_rows(self, flow_name: str, pools: dict[tuple[int, str], _Pool], skip: dict[str, str]) -> None:
        p50 = self.res.row(flow_name, "sequential latency p50", "ms", "lower")
        p99 = self.res.row(flow_name, "sequential latency p99", "ms", "lower")
        rps = {c: self.res.row(flow_name, f"runs/s c={c}", "runs/s", "higher") for c in self.p.concurrency}
        cpu = self.res.row(flow_name, "server CPU per run (all cells)", "ms", "lower")
        own = (
            self.res.row(flow_name, "of which the runtime's own process", "ms", "lower")
            if flow_name in WITH_COMPONENT_SERVER
            else None
        )
        for name in RUNTIMES:
            total_runs, total_cpu, total_own = 0, 0.0, 0.0
            for c in self.p.concurrency:
                pool = pools.get((c, name))
                if pool is None or not pool.latencies:
                    why = (
                        skip.get(name)
                        or _short(pool.sample if pool else "not measured")
                        or "no successful run"
                    )
                    rps[c].values[name] = na(why)
                    if c == 1:
                        p50.values[name] = p99.values[name] = na(why)
                    continue
                note = f"{pool.errors} errors" if pool.errors else ""
                if pool.timed_out:
                    note = (note + ", " if note else "") + "drain timed out"
                if pool.errors:
                    self.res.notes.append(
                        f"{name}, {flow_name} c={c}: {pool.errors} errors, e.g. {pool.sample}"
                    )
                lat = sorted(pool.latencies)
                rps[c].values[name] = Value(len(lat) / pool.elapsed, note)
                if c == 1:
                    n = len(lat)
                    p50.values[name] = Value(lat[n // 2] * 1e3, f"n={n}")
                    p99.values[name] = Value(lat[min(n - 1, int(0.99 * n))] * 1e3, f"n={n}")
                total_runs += len(lat)
                total_cpu += pool.cpu_s
                total_own += pool.own_cpu_s
            if total_runs:
                cpu.values[name] = Value(total_cpu / total_runs * 1e3, f"{total_runs:,} runs")
                if own is not None:
                    own.values[name] = Value(total_own / total_runs * 1e3, "component server excluded")
            else:
                cpu.values[name] = na(skip.get(name, "no successful run"))
                if own is not None:
                    own.values[name] = na(skip.get(name, "no successful run"))
        if 1 not in self.p.concurrency:
            self.res.rows.remove(p50)
            self.res.rows.remove(p99)

    # -- the whole run ---------------------------------------------------------------------------------

    async def run(self) -> Results:
        t0 = time.monotonic()
        await self.cold_starts()
        await self.cli_runs()
        try:
            await self.start_all()
            await asyncio.sleep(SETTLE_S)
            self.idle_memory()
            await self.memory_growth()
            for flow_name in self.p.flows:
                await self.flow_cells(flow_name)
            self.peak_memory()
        finally:
            await self.stop_all()
        if self.client_busy:
            self.res.notes.append(
                "the load client used >90% of its core in: "
                + "; ".join(self.client_busy)
                + " (throughput there may be client-bound)"
            )
        self.res.meta["harness wall time"] = f"{time.monotonic() - t0:.0f} s"
        return self.res


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system
