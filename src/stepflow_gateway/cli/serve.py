"""``stepflow-gateway serve`` (REST + ``/mcp`` with uvicorn) and ``submit`` (a client of a running server).

``serve`` builds the app (``server.create_app``) and runs uvicorn on ``--host``/``--port``.
Without a ``stateStore`` in the config, runs are kept in ``<--data-dir>/state.db`` (SQLite; default
``./.stepflow/``, or ``<workingDirectory>/.stepflow-gateway/`` when a ``state.db`` is already
there); the startup lines on stderr name the store. SIGTERM/SIGINT stop accepting connections and
runs; requests and runs in flight get ``--drain-timeout`` seconds (``STEPFLOW_GATEWAY_SHUTDOWN_GRACE``,
default 30), then runs still going are stopped (left in the journal to resume at the next start
with a durable store, cancelled otherwise), plugins (and their child processes) are closed, and the
process exits 0. A second signal ends the wait at once.

``submit`` stores a flow on a server (``POST /flows``), runs it (``POST /runs``) and prints the
result like ``run``: one FlowResult JSON on stdout (JSONL for ``--inputs``), exit 1 if any item
failed, 2 for an invalid flow or usage, 3 when the server cannot be reached.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from . import app
from ._values import read_jsonl, read_value
from .render import EXIT_FAILED, EXIT_INVALID, err, fail, print_config_warnings, write_json

EXIT_UNREACHABLE = 3
SUBMIT_TIMEOUT_S = 3600.0
"""``POST /runs`` blocks until the run ends; allow long runs (the stepflow-py client allows 300 s)."""


class _StartupFailureFilter(logging.Filter):
    """uvicorn logs a lifespan startup failure as a traceback; ``serve`` prints one line instead."""

    def __init__(self, failed: list[BaseException]) -> None:
        super().__init__()
        self.failed = failed

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.failed


def _root_cause(exc: BaseException) -> BaseException:
    """The first domain error inside (nested) exception groups, else ``exc``."""
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            found = _root_cause(sub)
            if not isinstance(found, BaseExceptionGroup):
                return found
    return exc


@app.command("serve")
def serve_command(
    config: Annotated[
        Path | None,
        typer.Option("--config", envvar="STEPFLOW_CONFIG", help="Config file (stepflow-config.yml format)."),
    ] = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to bind (loopback unless told otherwise).")
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option("--port", envvar="STEPFLOW_PORT", min=0, max=65535, help="TCP port (0: any free port)."),
    ] = 7840,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            envvar="STEPFLOW_GATEWAY_DATA_DIR",
            help="Directory of the default SQLite store (state.db) [default: ./.stepflow].",
            show_default=False,
        ),
    ] = None,
    drain_timeout: Annotated[
        float | None,
        typer.Option(
            "--drain-timeout",
            envvar="STEPFLOW_GATEWAY_SHUTDOWN_GRACE",
            min=0,
            help="Seconds in-flight runs get after SIGTERM before they are stopped [default: 30].",
            show_default=False,
        ),
    ] = None,
    log_level: Annotated[str | None, typer.Option("--log-level")] = None,
) -> None:
    """Serve the REST API (/api/v1, upstream 0.9.0 compatible) and stored flows as MCP tools (/mcp)."""
    import uvicorn

    from ..gateway import Gateway
    from ..logging import configure
    from ..server import ServerSettings, create_app
    from ..server.protocol import protocol_class

    configure(log_level or "INFO")
    try:
        gw = Gateway.from_config(config, mode="serve")
    except Exception as exc:
        fail(exc)
    print_config_warnings(gw.config_warnings)
    gw.data_dir = _data_dir(data_dir, gw.config.working_directory)
    settings = ServerSettings.from_env(host=host, port=port)
    if drain_timeout is not None:  # the flag (or STEPFLOW_GATEWAY_SHUTDOWN_GRACE, which typer reads)
        settings.shutdown_grace_s = drain_timeout
    asgi = create_app(gw, settings)
    startup_error: list[BaseException] = []
    original_lifespan = asgi.router.lifespan_context

    def lifespan(a: Any) -> Any:
        cm = original_lifespan(a)

        class _Guard:
            async def __aenter__(self) -> Any:
                try:
                    return await cm.__aenter__()
                except BaseException as exc:
                    startup_error.append(exc)
                    raise

            async def __aexit__(self, *exc: Any) -> Any:
                return await cm.__aexit__(*exc)

        return _Guard()

    asgi.router.lifespan_context = lifespan
    logging.getLogger("uvicorn.error").addFilter(_StartupFailureFilter(startup_error))

    loop: list[asyncio.AbstractEventLoop] = []

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            runtime = getattr(asgi.state, "runtime", None)
            if not hasattr(asgi.state, "shutdown_requested_at"):
                asgi.state.shutdown_requested_at = time.monotonic()
                if runtime is not None:  # no new runs; runs stopped from now on resume at the next start
                    runtime.gw.stopping = True
                err(
                    f"stepflow-gateway: shutting down (drain timeout {settings.shutdown_grace_s:g} s; "
                    "a second signal stops at once)"
                )
            else:  # a second signal: no more waiting, neither for connections nor for runs
                err("stepflow-gateway: stopping now")
                self.force_exit = True
                if runtime is not None and loop:
                    loop[0].call_soon_threadsafe(runtime.end_grace)
            super().handle_exit(sig, frame)
            # uvicorn re-raises the signal after shutting down (exit status -15); a graceful
            # stop is a success, so exit 0 instead.
            self._captured_signals.clear()

        async def shutdown(self, sockets: Any = None) -> None:
            await super().shutdown(sockets=sockets)
            if self.force_exit:  # uvicorn then skips the lifespan; ours stops runs and plugins, at once
                await self.lifespan.shutdown()

    uv_config = uvicorn.Config(
        asgi,
        host=host,
        port=port,
        lifespan="on",
        http=protocol_class(asgi),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_s)),
        log_config=None,
        server_header=False,
    )
    server = _Server(uv_config)

    # Announce the bound address on stderr (port 0 picks one); stdout stays clean.
    original_startup = server.startup

    async def startup(sockets: Any = None) -> None:
        loop.append(asyncio.get_running_loop())
        await original_startup(sockets=sockets)
        runtime = getattr(asgi.state, "runtime", None)
        if runtime is not None:
            store = runtime.gw.store.describe()
            err(f"stepflow-gateway: state in {store.get('path') or 'memory'} ({store.get('type')})")
        for s in server.servers:
            for sock in s.sockets:
                h, p = sock.getsockname()[:2]
                err(f"stepflow-gateway: serving http://{h}:{p}/api/v1 and http://{h}:{p}/mcp")

    server.startup = startup  # type: ignore[method-assign]
    try:
        server.run()
    except SystemExit:  # uvicorn exits 3 when the lifespan fails to start
        if not startup_error:
            raise
    if startup_error:
        fail(_root_cause(startup_error[0]))
    if not server.started:
        err("error: the server did not start (see the log above)")
        raise typer.Exit(EXIT_FAILED)


def _data_dir(given: Path | None, working_directory: Path) -> Path:
    """``--data-dir``; else ``<workingDirectory>/.stepflow-gateway`` if it has a ``state.db`` (the
    default before ``--data-dir``), else ``./.stepflow``. Created when the store opens there."""
    if given is not None:
        return given.absolute()
    legacy = Path(working_directory) / ".stepflow-gateway"
    if (legacy / "state.db").is_file():
        return legacy.absolute()
    return Path.cwd() / ".stepflow"


@app.command("submit")
def submit_command(
    flow: Annotated[Path, typer.Option("--flow", help="Flow file (YAML or JSON).")],
    url: Annotated[str, typer.Option("--url", help="Server base URL.")] = "http://127.0.0.1:7840",
    input: Annotated[Path | None, typer.Option("--input", help="Input file (JSON or YAML).")] = None,
    input_json: Annotated[str | None, typer.Option("--input-json", help="Input as JSON text.")] = None,
    input_yaml: Annotated[str | None, typer.Option("--input-yaml", help="Input as YAML text.")] = None,
    inputs: Annotated[
        Path | None, typer.Option("--inputs", help="JSONL file: one input per line (batch).")
    ] = None,
    variables: Annotated[Path | None, typer.Option("--variables", help="Variables file.")] = None,
    variables_json: Annotated[str | None, typer.Option("--variables-json")] = None,
    variables_yaml: Annotated[str | None, typer.Option("--variables-yaml")] = None,
    overrides: Annotated[Path | None, typer.Option("--overrides", help="Overrides file.")] = None,
    overrides_json: Annotated[str | None, typer.Option("--overrides-json")] = None,
    overrides_yaml: Annotated[str | None, typer.Option("--overrides-yaml")] = None,
    max_concurrent: Annotated[
        int | None, typer.Option("--max-concurrent", min=1, help="Cap on step tasks in flight.")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key", envvar="STEPFLOW_GATEWAY_API_KEY", help="API key of the server.", show_default=False
        ),
    ] = None,
) -> None:
    """Send a flow and its input to a running server; print the result like `run` (exit 1 if failed)."""
    from ..errors import FlowError
    from ..yaml_loader import load_yaml_file

    try:
        flow_value = load_yaml_file(flow).value
        if inputs is not None:
            if any(v is not None for v in (input, input_json, input_yaml)):
                raise FlowError("give either --inputs or one of --input/--input-json/--input-yaml")
            items, batch = read_jsonl(inputs), True
        else:
            items, batch = [read_value(input, input_json, input_yaml, what="input")], False
        var_value = read_value(variables, variables_json, variables_yaml, what="variables")
        if var_value is not None and not isinstance(var_value, dict):
            raise FlowError("variables must be an object")
        ov_value = read_value(overrides, overrides_json, overrides_yaml, what="overrides")
    except Exception as exc:
        fail(exc)
    code = _submit(url, api_key, flow, flow_value, items, batch, var_value, ov_value, max_concurrent)
    raise typer.Exit(code)


def _submit(
    url: str,
    api_key: str | None,
    flow_path: Path,
    flow_value: Any,
    items: list[Any],
    batch: bool,
    variables: Any,
    overrides: Any,
    max_concurrent: int | None,
) -> int:
    import httpx2

    base = url.rstrip("/")
    if not base.endswith("/api/v1"):
        base += "/api/v1"
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with httpx2.Client(
            base_url=base, headers=headers, timeout=httpx2.Timeout(30.0, read=SUBMIT_TIMEOUT_S)
        ) as c:
            stored = _call(c.post("/flows", json={"flow": flow_value}), "storing the flow")
            for d in stored.get("diagnostics", {}).get("diagnostics", []):
                err(f"{flow_path}: {d.get('level')}: {d.get('path')}: {d.get('formatted')} [{d.get('kind')}]")
            if not stored.get("stored"):
                err(f"error: {flow_path}: the server did not store the flow (fatal diagnostics)")
                return EXIT_INVALID
            body: dict[str, Any] = {"flowId": stored["flowId"], "input": items}
            if variables is not None:
                body["variables"] = variables
            if overrides is not None:
                body["overrides"] = overrides
            if max_concurrent is not None:
                body["maxConcurrency"] = max_concurrent
            run = _call(c.post("/runs", json=body), "running the flow")
            if batch or "result" not in run:
                listed = _call(c.get(f"/runs/{run['runId']}/items"), "reading the run's items")
                results = [i.get("result") for i in listed.get("items", [])]
            else:
                results = [run["result"]]
    except httpx2.TransportError as exc:
        err(f"error: cannot reach the server at {url}: {exc}")
        return EXIT_UNREACHABLE
    except _ServerError as exc:
        err(f"error: {exc}")
        return EXIT_INVALID if 400 <= exc.status < 500 else EXIT_FAILED
    err(f"run {run['runId']}: {run.get('status')}")
    for r in results if batch else results[:1]:
        write_json(r)
    failed = any(not isinstance(r, dict) or r.get("outcome") == "failed" for r in results)
    return EXIT_FAILED if failed or run.get("status") != "completed" else 0


class _ServerError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _call(response: Any, doing: str) -> Any:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400:
        message = body.get("message") if isinstance(body, dict) else response.text.strip()
        raise _ServerError(response.status_code, f"{doing}: HTTP {response.status_code}: {message}")
    return body
