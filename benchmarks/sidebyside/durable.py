"""Durable runs (issue 12): what the execution journal costs, and how fast interrupted runs resume.

``benchmarks/journal.py`` drives this module inside the harness's private network namespace, with
its servers, pinning, load client and ``/proc`` CPU readings. The *variants* are one runtime with
one state store each, all running at the same time on the servers' core:

* ``ours-sqlite``, ``ours-memory`` (``stateStore: {type: inMemory}``), ``ours-postgres``;
* ``up013-sqlite``, ``up013-memory`` (upstream 0.13, ``storageConfig``), ``up013-postgres``.

The Postgres variants exist when a PostgreSQL server can be started (``PgCluster``: the project's
``tests/postgres.py`` and, for ours, ``state/postgres.py``); otherwise their columns say why not.
Upstream 0.13 is optional (``.peers/orch013``).

Measurements (every loop bounded in count and time, ``DurableProfile``):

1. **sequential**: noop-1 and chain-100 at c=1 (and the profile's other concurrencies), runs
   alternating variant order per round; server CPU per run from ``/proc`` (tree and own process),
   p50/p99 latency.
2. **sleep**: on a fresh server per variant, ``sleep_runs`` runs of one sleep step submitted with
   ``wait: false``; the time from the first submission until none is running (polled), and server CPU.
   The step is ``/sleep`` when the runtime has that builtin (upstream HEAD's), else ``/slow/sleep`` on
   ``configs/sleep_server.py`` (this project's SDK, over stdio).
3. **recovery** (durable ``ours-*`` variants): ``recovery_runs`` runs of a step sleeping
   ``recovery_sleep_s`` on ``configs/sleep_server.py``, which appends a line per execution start to a
   file; once every step has started the server and its component server get SIGKILL; the server
   is restarted on the same store, and the time from its startup line on stderr to the first and
   to the last resumed step start is read from that file. Then SIGTERM, and the time to exit.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import structlog

from . import client, procstat
from .flows import load_flow
from .pyspy import profiling
from .results import Results, Value, na
from .servers import BENCH, REPO, Runtime, Server, StartError, Tools, running

__all__ = [
    "DURABLE_PROFILES",
    "VARIANTS",
    "Durable",
    "DurableProfile",
    "PgCluster",
    "Variant",
]

log = structlog.get_logger(__name__)

RUN_PATH = "/api/v1/runs"
FLOW_PATH = "/api/v1/flows"
INPUT = {"data": "bench"}
POLL_S = 0.02
"""Polling interval of "are runs still running?" and of the start-line file."""
DRAIN_S = 60.0
"""How long sleeping runs may take past their sleep before the cell gives up."""
STOP_TIMEOUT_S = 30.0
READY_MARK = "serving http://"
"""Our ``serve`` prints ``stepflow-gateway: serving http://HOST:PORT/api/v1 ...`` on stderr when ready."""
SLEEP_SERVER = BENCH / "configs" / "sleep_server.py"


# -- profiles ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DurableProfile:
    """Counts and bounds of one ``journal.py`` run."""

    name: str
    rounds: int
    """Sequential cells: each (flow, concurrency, variant) this many times, variant order rotating."""
    concurrency: tuple[int, ...]
    cell_count: int
    cell_seconds: float
    warmup_count: int
    warmup_seconds: float
    sleep_runs: int
    sleep_ms: int
    submit_concurrency: int
    recovery_runs: int
    recovery_sleep_s: int
    recovery_wait_s: float
    """Bound on waiting for all steps to start (before the kill, and again after the restart)."""


DURABLE_PROFILES = {
    "smoke": DurableProfile("smoke", 1, (1,), 50, 1.0, 5, 1.0, 50, 200, 8, 50, 60, 30.0),
    "quick": DurableProfile("quick", 1, (1, 8), 10000, 2.0, 30, 1.0, 1000, 1000, 32, 1000, 60, 60.0),
    "full": DurableProfile("full", 3, (1, 8), 50000, 3.0, 100, 2.0, 1000, 1000, 32, 1000, 60, 90.0),
}


# -- variants ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Variant:
    """One runtime with one state store."""

    name: str
    label: str
    """Column heading in the report."""
    kind: str
    """"ours" or "upstream" (0.13)."""
    store: str
    """"sqlite", "memory" or "postgres"."""
    port: int

    @property
    def durable(self) -> bool:
        return self.store != "memory"


VARIANTS = (
    Variant("ours-sqlite", "ours SQLite", "ours", "sqlite", 7851),
    Variant("ours-memory", "ours inMemory", "ours", "memory", 7852),
    Variant("ours-postgres", "ours Postgres", "ours", "postgres", 7853),
    Variant("up013-sqlite", "0.13 SQLite", "upstream", "sqlite", 7854),
    Variant("up013-memory", "0.13 inMemory", "upstream", "memory", 7855),
    Variant("up013-postgres", "0.13 Postgres", "upstream", "postgres", 7856),
)


class PgCluster:
    """A throwaway PostgreSQL server for the Postgres variants, from the project's test fixture.

    ``available()`` says why there is none: ``tests/postgres.py`` (``PgServer``) missing, the server
    binaries or psycopg missing, or (for ours) no ``state/postgres.py`` in the source tree."""

    def __init__(self) -> None:
        self.server: Any = None
        self.why_not = ""
        self.ours_why_not = ""
        self._n = 0

    def start(self) -> None:
        fixture = REPO / "tests" / "postgres.py"
        if not fixture.exists():
            self.why_not = "tests/postgres.py (the throwaway-server fixture) is not on this branch"
            return
        import stepflow_gateway

        if not (Path(stepflow_gateway.__file__).parent / "state" / "postgres.py").exists():
            self.ours_why_not = "state/postgres.py is not on this branch"
        sys.path.insert(0, str(REPO))
        try:
            import psycopg  # noqa: F401
            from tests.postgres import PgServer, find_pg_bin  # type: ignore[import-not-found]

            bin_dir = find_pg_bin()
            if bin_dir is None:
                self.why_not = "PostgreSQL server binaries not found (scripts/setup.sh installs them)"
                return
            server = PgServer(bin_dir)
            server.__enter__()
            self.server = server
        except Exception as exc:  # a missing module, initdb or start failure: the columns say why
            self.why_not = f"cannot start PostgreSQL: {' '.join(str(exc).split())[:160]}"

    def database(self, tag: str) -> str:
        """A fresh database's URL."""
        self._n += 1
        return self.server.create_database(f"bench_{tag.replace('-', '_')}_{self._n}")

    def version(self) -> str:
        if self.server is None:
            return "not started"
        try:
            import psycopg

            with psycopg.connect(self.server.url("postgres"), connect_timeout=10) as conn:
                row = conn.execute("SHOW server_version").fetchone()
            return f"PostgreSQL {row[0] if row else '?'} (throwaway cluster, tests/postgres.py)"
        except Exception as exc:
            return f"? ({exc})"

    def cpu_seconds(self) -> float:
        """CPU of the PostgreSQL server so far: the postmaster, its backends and reaped children."""
        if self.server is None:
            return 0.0
        try:
            pid = int((self.server.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0.0
        return procstat.cpu_seconds(pid)

    def stop(self) -> None:
        if self.server is not None:
            self.server.__exit__(None, None, None)
            self.server = None


# -- configs and flows ---------------------------------------------------------------------------------


def _store_section(v: Variant, url: str | None) -> dict[str, Any]:
    if v.store == "memory":
        return {"type": "inMemory"}
    assert url is not None
    return {"type": v.store, "databaseUrl": url}


def write_config(v: Variant, path: Path, url: str | None, *, slow: bool, sleep_log: Path | None) -> Path:
    """The variant's config (JSON, which YAML readers read too): builtins on ``/{component}``, and with
    ``slow`` the sleep component server on ``/slow/{component}`` (ours only)."""
    if v.kind == "ours":
        plugins: dict[str, Any] = {"builtin": {"type": "builtin"}}
        routes: dict[str, Any] = {"/{component}": [{"plugin": "builtin"}]}
        if slow:
            env = {"SLEEP_LOG": str(sleep_log or "")}
            if os.environ.get("PYTHONPATH"):
                env["PYTHONPATH"] = os.environ["PYTHONPATH"]
            plugins["slow"] = {
                "type": "stepflow",
                "transport": "stdio",
                "command": sys.executable,
                "args": [str(SLEEP_SERVER)],
                "env": env,
            }
            routes = {"/slow/{component}": [{"plugin": "slow"}], **routes}
        cfg: dict[str, Any] = {
            "plugins": plugins,
            "routes": routes,
            "stateStore": _store_section(v, url),
            # the default resumes at most 100 runs at start-up; this benchmark resumes them all
            "recovery": {"maxStartupRecovery": 100000},
        }
    else:  # upstream 0.13: a prefix route "/" mounts the builtins as /<name>
        cfg = {
            "plugins": {"builtin": {"type": "builtin"}},
            "routes": {"/": [{"plugin": "builtin"}]},
            "storageConfig": _store_section(v, url),
        }
    path.write_text(json.dumps(cfg, indent=1) + "\n")
    return path


def sleep_flow(component: str) -> dict[str, Any]:
    return {
        "name": "Durable - sleep",
        "description": "1 step sleeping input.duration_ms",
        "steps": [
            {"id": "sleep", "component": component, "input": {"duration_ms": {"$input": "duration_ms"}}}
        ],
        "output": {"$step": "sleep"},
    }


def _ok_marker(v: Variant) -> bytes:
    """What a completed synchronous run's answer contains (0.13 answers numeric statuses)."""
    return b'"completed"' if v.kind == "ours" else b'"status":2'


def _status(v: Variant, status: str) -> str:
    if v.kind == "ours":
        return status
    return {"running": "1", "completed": "2"}[status]


def _body(fid: str, item: Any, *, wait: bool) -> bytes:
    return json.dumps({"flowId": fid, "input": [item], "wait": wait}).encode()


def _short(text: str, limit: int = 90) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(slots=True)
class _Pool:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    cpu_s: float = 0.0
    own_s: float = 0.0
    db_s: float = 0.0
    """CPU of the PostgreSQL server (Postgres variants; another process tree than the server's)."""
    elapsed: float = 0.0
    sample: str = ""


# -- the benchmark -------------------------------------------------------------------------------------


class Durable:
    """One ``journal.py`` run: the variants' servers, the cells, and the ``Results``."""

    def __init__(
        self,
        profile: DurableProfile,
        tools: Tools,
        server_cpu: int | None,
        workdir: Path,
        results: Results,
        *,
        variants: tuple[Variant, ...] = VARIANTS,
        pg: PgCluster | None = None,
        py_spy: Path | None = None,
    ) -> None:
        self.p = profile
        self.tools = tools
        self.workdir = workdir
        self.res = results
        self.pg = pg
        self.py_spy = py_spy
        self.variants: list[Variant] = []
        self.down: dict[str, str] = {}
        """Variants that cannot run, with the reason (their cells say "n/a: reason")."""
        for v in variants:
            why = self._why_not(v)
            if why:
                self.down[v.name] = why
            self.variants.append(v)
        self.runtimes = {
            v.name: Runtime(
                v.name,
                v.port,
                tools,
                server_cpu,
                workdir,
                kind=v.kind,
                binary=tools.upstream013_server if v.kind == "upstream" else None,
            )
            for v in self.variants
        }
        self.servers: dict[str, Server] = {}
        self.sleep_component = "/sleep"
        self._n = 0

    def _why_not(self, v: Variant) -> str:
        if v.kind == "upstream" and (
            self.tools.upstream013_server is None or not self.tools.upstream013_server.exists()
        ):
            return "upstream 0.13 not installed (scripts/setup.sh: .peers/orch013)"
        if v.store == "postgres":
            if v.kind == "upstream":
                # its log: "PostgreSQL support was not compiled in. Rebuild with the `postgres` feature"
                return "the 0.13 wheel is built without PostgreSQL support"
            if self.pg is None or self.pg.server is None:
                return (self.pg.why_not if self.pg else "") or "no PostgreSQL server"
            if v.kind == "ours" and self.pg.ours_why_not:
                return self.pg.ours_why_not
        return ""

    def live(self) -> list[Variant]:
        return [v for v in self.variants if v.name not in self.down]

    def _order(self, i: int) -> list[Variant]:
        vs = self.live()
        if not vs:
            return vs
        k = i % len(vs)
        return vs[k:] + vs[:k]

    def _url(self, v: Variant, tag: str) -> str | None:
        if v.store == "memory":
            return None
        if v.store == "sqlite":
            return f"sqlite:{self.workdir / f'{v.name}{tag}.db'}?mode=rwc"
        assert self.pg is not None
        return self.pg.database(f"{v.name}{tag}")

    def _config(self, v: Variant, tag: str, *, slow: bool = False, sleep_log: Path | None = None) -> Path:
        return write_config(
            v, self.workdir / f"{v.name}{tag}.yml", self._url(v, tag), slow=slow, sleep_log=sleep_log
        )

    def _db_cpu(self, v: Variant) -> float:
        return self.pg.cpu_seconds() if v.store == "postgres" and self.pg is not None else 0.0

    async def _store(self, port: int, flow: dict[str, Any]) -> str:
        body = await client.post_json(port, FLOW_PATH, {"flow": flow})
        fid = body.get("flowId")
        if not fid or body.get("stored") is False:
            raise client.HttpError(f"flow not stored: {json.dumps(body)[:200]}")
        return str(fid)

    def _fail(self, v: Variant, where: str, exc: BaseException | str) -> None:
        reason = _short(str(exc))
        self.res.notes.append(f"{v.label}, {where}: {exc}")
        log.warning("variant failed", variant=v.name, where=where, reason=reason)

    # -- 1. sequential cells -------------------------------------------------------------------------

    async def sequential(self) -> None:
        flows = {"noop-1": load_flow("noop-1"), "chain-100": load_flow("chain-100")}
        pools: dict[tuple[str, int, str], _Pool] = {}
        failed: dict[str, str] = {}
        async with AsyncExitStack() as stack:
            fids: dict[tuple[str, str], str] = {}
            for v in self.live():
                try:
                    srv = await stack.enter_async_context(
                        running(self.runtimes[v.name], self._config(v, "-seq"), tag="-seq")
                    )
                    self.servers[v.name] = srv
                    for fname, flow in flows.items():
                        fids[(v.name, fname)] = fid = await self._store(srv.port, flow)
                        body = _body(fid, INPUT, wait=True)
                        w = await client.load(
                            srv.port,
                            RUN_PATH,
                            body,
                            concurrency=1,
                            count=self.p.warmup_count,
                            seconds=self.p.warmup_seconds,
                            ok_marker=_ok_marker(v),
                        )
                        if not w.runs:
                            raise client.HttpError(f"{fname} warm-up: no run completed ({w.error_sample})")
                except (StartError, client.HttpError, OSError, TimeoutError) as exc:
                    failed[v.name] = _short(str(exc))
                    self._fail(v, "sequential cells", exc)
            i = 0
            for rnd in range(self.p.rounds):
                for fname in flows:
                    for c in self.p.concurrency:
                        for v in self._order(i):
                            i += 1
                            if v.name in failed:
                                continue
                            pool = pools.setdefault((fname, c, v.name), _Pool())
                            profiled = self.py_spy if (rnd == 0 and c == 1 and v.kind == "ours") else None
                            async with profiling(profiled, self.servers[v.name], f"{v.name}-{fname}"):
                                await self._cell(v, _body(fids[(v.name, fname)], INPUT, wait=True), c, pool)
            sizes = self._file_sizes(failed)
            self.servers.clear()
        self._sequential_rows(pools, failed)
        self._file_rows(sizes)

    async def _cell(self, v: Variant, body: bytes, c: int, pool: _Pool) -> None:
        srv = self.servers[v.name]
        db0 = self._db_cpu(v)
        cpu0, own0 = procstat.cpu_seconds(srv.pid), procstat.process_cpu_seconds(srv.pid)
        r = await client.load(
            srv.port,
            RUN_PATH,
            body,
            concurrency=c,
            count=self.p.cell_count,
            seconds=self.p.cell_seconds,
            ok_marker=_ok_marker(v),
        )
        pool.cpu_s += procstat.cpu_seconds(srv.pid) - cpu0
        pool.own_s += procstat.process_cpu_seconds(srv.pid) - own0
        pool.db_s += self._db_cpu(v) - db0
        pool.latencies.extend(r.latencies)
        pool.errors += r.errors
        pool.elapsed += r.elapsed
        pool.sample = pool.sample or r.error_sample
        log.debug("cell", variant=v.name, c=c, runs=r.runs, p50_ms=round(r.quantile(0.5) * 1e3, 3))

    def _file_sizes(self, failed: dict[str, str]) -> dict[str, tuple[Value, Value]]:
        """(database, WAL) sizes of the SQLite variants while their servers still run (the WAL is
        removed at a clean close)."""
        out = {}
        for v in self.variants:
            why = self.down.get(v.name) or failed.get(v.name)
            if not why and v.store != "sqlite":
                why = "not SQLite"
            if why:
                out[v.name] = (na(why), na(why))
                continue
            base = self.workdir / f"{v.name}-seq.db"
            pair = []
            for path in (base, base.with_name(base.name + "-wal")):
                try:
                    pair.append(Value(path.stat().st_size / 2**20))
                except OSError:
                    pair.append(Value(0.0, "no file"))
            out[v.name] = (pair[0], pair[1])
        return out

    def _file_rows(self, sizes: dict[str, tuple[Value, Value]]) -> None:
        sec = "SQLite files after the sequential cells"
        db = self.res.row(sec, "database file", "MiB", "lower")
        wal = self.res.row(sec, "WAL file (-wal)", "MiB", "lower")
        for name, (d, w) in sizes.items():
            db.values[name], wal.values[name] = d, w

    def _sequential_rows(self, pools: dict[tuple[str, int, str], _Pool], failed: dict[str, str]) -> None:
        for fname, steps in (("noop-1", 1), ("chain-100", 100)):
            for c in self.p.concurrency:
                sec = f"{fname} c={c}"
                rows = {
                    "p50": self.res.row(sec, "latency p50", "ms", "lower"),
                    "p99": self.res.row(sec, "latency p99", "ms", "lower"),
                    "rps": self.res.row(sec, "runs/s", "runs/s", "higher"),
                    "cpu": self.res.row(sec, "server CPU per run", "ms", "lower"),
                    "db": self.res.row(sec, "server + PostgreSQL server CPU per run", "ms", "lower"),
                }
                if steps > 1:
                    rows["step"] = self.res.row(sec, "server CPU per step", "µs", "lower")
                for v in self.variants:
                    why = self.down.get(v.name) or failed.get(v.name)
                    pool = pools.get((fname, c, v.name))
                    if not why and (pool is None or not pool.latencies):
                        why = _short(pool.sample if pool else "") or "no successful run"
                    if why:
                        for r in rows.values():
                            r.values[v.name] = na(why)
                        continue
                    assert pool is not None
                    lat = sorted(pool.latencies)
                    n = len(lat)
                    note = f"{pool.errors} errors" if pool.errors else ""
                    if pool.errors:
                        self.res.notes.append(f"{v.label}, {sec}: {pool.errors} errors, e.g. {pool.sample}")
                    rows["p50"].values[v.name] = Value(lat[n // 2] * 1e3, f"n={n}")
                    rows["p99"].values[v.name] = Value(lat[min(n - 1, int(0.99 * n))] * 1e3)
                    rows["rps"].values[v.name] = Value(n / pool.elapsed if pool.elapsed else 0.0, note)
                    rows["cpu"].values[v.name] = Value(pool.cpu_s / n * 1e3, f"{n:,} runs")
                    rows["db"].values[v.name] = Value(
                        (pool.cpu_s + pool.db_s) / n * 1e3,
                        "PostgreSQL processes added" if v.store == "postgres" else "",
                    )
                    if "step" in rows:
                        rows["step"].values[v.name] = Value(pool.cpu_s / n / steps * 1e6)

    # -- 2. many sleeping runs -----------------------------------------------------------------------

    async def _has_builtin_sleep(self) -> bool:
        """Whether our builtins include ``/sleep`` (upstream HEAD's), tried on a throwaway server."""
        v = next((v for v in self.live() if v.kind == "ours"), None)
        if v is None:
            return True
        probe = replace(v, name=f"{v.name}-probe", store="memory")
        try:
            async with running(self.runtimes[v.name], self._config(probe, "-probe"), tag="-probe") as srv:
                fid = await self._store(srv.port, sleep_flow("/sleep"))
                status, body = await client.request(
                    srv.port, "POST", RUN_PATH, _body(fid, {"duration_ms": 1}, wait=True)
                )
                return status == 200 and _ok_marker(v) in body
        except (StartError, client.HttpError, OSError, TimeoutError) as exc:
            log.info("no builtin /sleep in ours", reason=_short(str(exc)))
            return False

    async def sleeping(self) -> None:
        n, ms = self.p.sleep_runs, self.p.sleep_ms
        ours_builtin = await self._has_builtin_sleep()
        self.res.meta["sleep step"] = (
            "`/sleep` builtin in every runtime"
            if ours_builtin
            else "ours: `/slow/sleep` on configs/sleep_server.py over stdio (no `/sleep` builtin on this "
            "branch; its CPU is in the tree figure); upstream 0.13: its `/sleep` builtin"
        )
        sec = f"{n:,} × sleep {ms} ms"
        rows = {
            "submit": self.res.row(
                sec, f"submit {n:,} runs (wait: false, c={self.p.submit_concurrency})", "s", "lower"
            ),
            "done": self.res.row(sec, "first submission → none running", "s", "lower"),
            "over": self.res.row(sec, "of which past the sleep", "s", "lower"),
            "cpu": self.res.row(sec, "server CPU, whole cell (tree)", "s", "lower"),
            "per": self.res.row(sec, "server CPU per run (tree)", "ms", "lower"),
            "own": self.res.row(sec, "server CPU per run (runtime's own process)", "ms", "lower"),
            "db": self.res.row(sec, "server + PostgreSQL server CPU per run", "ms", "lower"),
        }
        if ours_builtin:  # no component server anywhere: the tree is the process
            self.res.rows.remove(rows.pop("own"))
        for v in self.variants:
            why = self.down.get(v.name)
            if why:
                for r in rows.values():
                    r.values[v.name] = na(why)
                continue
            slow = v.kind == "ours" and not ours_builtin
            component = "/slow/sleep" if slow else "/sleep"
            try:
                got = await self._sleep_cell(v, component, slow)
            except (StartError, client.HttpError, OSError, TimeoutError) as exc:
                self._fail(v, "sleep cell", exc)
                for r in rows.values():
                    r.values[v.name] = na(_short(str(exc)))
                continue
            submit_s, done_s, cpu_s, own_s, db_s, completed = got
            note = "" if completed == n else f"{completed:,} of {n:,} completed"
            rows["submit"].values[v.name] = Value(submit_s)
            rows["done"].values[v.name] = Value(done_s, note)
            rows["over"].values[v.name] = Value(done_s - ms / 1000)
            rows["cpu"].values[v.name] = Value(cpu_s)
            rows["per"].values[v.name] = Value(cpu_s / n * 1e3)
            if "own" in rows:
                rows["own"].values[v.name] = Value(own_s / n * 1e3)
            rows["db"].values[v.name] = Value(
                (cpu_s + db_s) / n * 1e3,
                "PostgreSQL processes added" if v.store == "postgres" else "",
            )

    async def _sleep_cell(
        self, v: Variant, component: str, slow: bool
    ) -> tuple[float, float, float, float, float, int]:
        n, ms = self.p.sleep_runs, self.p.sleep_ms
        cfg = self._config(v, "-sleep", slow=slow)
        async with running(self.runtimes[v.name], cfg, tag="-sleep") as srv:
            fid = await self._store(srv.port, sleep_flow(component))
            warm = await client.load(
                srv.port, RUN_PATH, _body(fid, {"duration_ms": 1}, wait=True), concurrency=1, count=3,
                seconds=5.0, ok_marker=_ok_marker(v),
            )  # fmt: skip
            if not warm.runs:
                raise client.HttpError(f"sleep run failed: {warm.error_sample}")
            running_q = f"{RUN_PATH}?status={_status(v, 'running')}&limit=1"
            db0 = self._db_cpu(v)
            cpu0, own0 = procstat.cpu_seconds(srv.pid), procstat.process_cpu_seconds(srv.pid)
            t0 = time.perf_counter()
            sub = await client.load(
                srv.port,
                RUN_PATH,
                _body(fid, {"duration_ms": ms}, wait=False),
                concurrency=self.p.submit_concurrency,
                count=n,
                seconds=60.0,
                ok_marker=b'"runId"',
            )
            submit_s = time.perf_counter() - t0
            if sub.runs < n:
                raise client.HttpError(f"only {sub.runs} of {n} submitted: {sub.error_sample}")
            deadline = time.monotonic() + ms / 1000 + DRAIN_S
            while True:
                status, body = await client.request(srv.port, "GET", running_q)
                if status == 200 and not json.loads(body).get("runs"):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"runs still running {DRAIN_S:g} s after their sleep")
                await asyncio.sleep(POLL_S)
            done_s = time.perf_counter() - t0
            cpu_s = procstat.cpu_seconds(srv.pid) - cpu0
            own_s = procstat.process_cpu_seconds(srv.pid) - own0
            db_s = self._db_cpu(v) - db0
            q = f"{RUN_PATH}?status={_status(v, 'completed')}&limit={2 * n + 100}"
            status, body = await client.request(srv.port, "GET", q)
            completed = len(json.loads(body).get("runs", [])) - warm.runs if status == 200 else -1
        return submit_s, done_s, cpu_s, own_s, db_s, completed

    # -- 3. recovery ---------------------------------------------------------------------------------

    async def recovery(self) -> None:
        n = self.p.recovery_runs
        sec = f"recovery of {n:,} runs"
        rows = {
            "before": self.res.row(sec, f"submit {n:,} runs → all steps started", "s", "lower"),
            "ready": self.res.row(sec, "restart: spawn → startup line on stderr", "s", "lower"),
            "first": self.res.row(sec, "startup line → first resumed step starts", "s", "lower"),
            "all": self.res.row(sec, f"startup line → all {n:,} resumed steps started", "s", "lower"),
            "count": self.res.row(sec, "steps started again after the restart", "runs", "higher"),
            "cpu": self.res.row(sec, "server CPU, spawn → all resumed (tree)", "s", "lower"),
            "db": self.res.row(sec, "PostgreSQL server CPU, spawn → all resumed", "s", "lower"),
            "stop": self.res.row(sec, "SIGTERM → exit (runs left to resume)", "s", "lower"),
        }
        for v in self.variants:
            why = self.down.get(v.name)
            if not why and v.kind != "ours":
                why = "not measured (a builtin sleep cannot report its start)"
            if not why and not v.durable:
                why = "in-memory store: nothing to resume"
            if why:
                for r in rows.values():
                    r.values[v.name] = na(why)
                continue
            try:
                got = await self._recovery_cell(v)
            except (StartError, client.HttpError, OSError, TimeoutError) as exc:
                self._fail(v, "recovery", exc)
                for r in rows.values():
                    r.values[v.name] = na(_short(str(exc)))
                continue
            for key, value in got.items():
                rows[key].values[v.name] = value

    async def _recovery_cell(self, v: Variant) -> dict[str, Value]:
        n = self.p.recovery_runs
        starts = self.workdir / f"{v.name}-starts.txt"
        starts.write_text("")
        cfg = self._config(v, "-recovery", slow=True, sleep_log=starts)
        rt = self.runtimes[v.name]
        out: dict[str, Value] = {}
        async with running(rt, cfg, tag="-recovery") as srv:
            fid = await self._store(srv.port, sleep_flow("/slow/sleep"))
            t0 = time.time()
            sub = await client.load(
                srv.port,
                RUN_PATH,
                _body(fid, {"duration_ms": self.p.recovery_sleep_s * 1000}, wait=False),
                concurrency=self.p.submit_concurrency,
                count=n,
                seconds=60.0,
                ok_marker=b'"runId"',
            )
            if sub.runs < n:
                raise client.HttpError(f"only {sub.runs} of {n} submitted: {sub.error_sample}")
            got = await _wait_starts(starts, n, after=0.0, limit_s=self.p.recovery_wait_s)
            if len(got) < n:
                raise TimeoutError(f"only {len(got)} of {n} steps started in {self.p.recovery_wait_s:g} s")
            out["before"] = Value(got[n - 1][0] - t0)
            old = set(procstat.tree_pids(srv.pid))
            for pid in old:  # a crash: the server and its component server
                with _gone():
                    os.kill(pid, signal.SIGKILL)
            await asyncio.to_thread(srv.proc.wait, STOP_TIMEOUT_S)
        await asyncio.sleep(0.2)
        spawn, db0 = time.time(), self._db_cpu(v)
        async with running(rt, cfg, tag="-recovery-restart", capture_stderr=True) as srv:
            assert srv.lines is not None
            again = await _wait_starts(starts, n, after=spawn, limit_s=self.p.recovery_wait_s)
            cpu = procstat.cpu_seconds(srv.pid)
            out["db"] = Value(self._db_cpu(v) - db0) if v.store == "postgres" else na("in-process store")
            ready = next((t for t, line in srv.lines if READY_MARK in line), None)
            if ready is None:
                raise StartError("no startup line on stderr")
            out["ready"] = Value(ready - spawn)
            out["count"] = Value(float(len(again)), "" if len(again) >= n else f"of {n:,}")
            if again:
                out["first"] = Value(
                    again[0][0] - ready, "negative: before the line" if again[0][0] < ready else ""
                )
                out["all"] = Value(again[-1][0] - ready, f"{len(again):,} steps")
                attempts = sorted({a for _t, a in again})
                if attempts != [2]:
                    self.res.notes.append(f"{v.label}, recovery: resumed steps' attempts {attempts}")
            else:
                out["first"] = out["all"] = na(f"no step started again in {self.p.recovery_wait_s:g} s")
            out["cpu"] = Value(cpu, "since spawn")
            t_stop = time.perf_counter()
            srv.proc.send_signal(signal.SIGTERM)
            try:
                code = await asyncio.to_thread(srv.proc.wait, STOP_TIMEOUT_S)
                out["stop"] = Value(time.perf_counter() - t_stop, f"exit {code}")
            except Exception:
                out["stop"] = na(f"did not exit within {STOP_TIMEOUT_S:g} s")
        return out

    # -- the whole run -------------------------------------------------------------------------------

    async def run(self, skip: set[str] | frozenset[str] = frozenset()) -> Results:
        """Every part not in ``skip`` ("sequential", "sleep", "recovery"), in that order."""
        t0 = time.monotonic()
        if "sequential" not in skip:
            await self.sequential()
        if "sleep" not in skip:
            await self.sleeping()
        if "recovery" not in skip:
            await self.recovery()
        self.res.meta["wall time"] = f"{time.monotonic() - t0:.0f} s"
        return self.res


@contextmanager
def _gone() -> Iterator[None]:
    try:
        yield
    except (ProcessLookupError, PermissionError):
        pass


async def _wait_starts(path: Path, n: int, *, after: float, limit_s: float) -> list[tuple[float, int]]:
    """Poll the start-line file until ``n`` starts later than ``after`` are there (or ``limit_s``).

    Returns ``(time, attempt)`` of those starts, in time order."""
    deadline = time.monotonic() + limit_s
    while True:
        got = []
        text = await asyncio.to_thread(path.read_text)
        for line in text.splitlines():
            parts = line.split()
            if len(parts) >= 4 and float(parts[0]) > after:
                got.append((float(parts[0]), int(parts[3]) if parts[3].isdigit() else 0))
        if len(got) >= n or time.monotonic() > deadline:
            got.sort()
            return got
        await asyncio.sleep(POLL_S)
