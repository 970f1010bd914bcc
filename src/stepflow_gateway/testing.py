"""The embedded-test runner (flow-format.md §14): discovery, config resolution, servers, cases, summary.

Output goes through a ``write`` callable (the CLI passes stdout); the runner returns a summary whose
``exit_code`` is 1 when any case failed, errored, or any flow file failed to load.

It drives a :class:`~stepflow_gateway.gateway.Gateway` per flow file, so it sits above the gateway
(beside the CLI, which calls it); result normalisation and matching, which need no gateway, are in
``engine.testing_match``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from .engine.testing_match import match_flow_result, normalize_result
from .errors import GatewayError
from .flow.model import FLOW_SCHEMA_URL

__all__ = ["TestSummary", "discover", "run_tests"]


@dataclass(slots=True)
class TestSummary:
    files_tested: int = 0
    files_skipped: int = 0
    files_errored: int = 0
    total: int = 0
    passed: int = 0
    failed: int = 0
    execution_errors: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if (self.failed or self.execution_errors or self.files_errored) else 0


def discover(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """Flow files to consider; directories give ``*.yaml``/``*.yml``; missing paths are reported."""
    files: list[Path] = []
    missing: list[str] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(x for x in p.rglob("*") if x.suffix in (".yaml", ".yml") and x.is_file()))
        elif p.is_file():
            files.append(p)
        else:
            missing.append(str(p))
    return files, missing


def _free_port(lo: int, hi: int) -> int:
    for port in range(lo, hi + 1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise GatewayError(f"no free port in {lo}-{hi}")


def _with_port(value: Any, port: int) -> str:
    return str(value).replace("{port}", str(port))


def _opt(spec: dict[str, Any], camel: str, snake: str, default: Any) -> Any:
    if camel in spec:
        return spec[camel]
    return spec.get(snake, default)


class _Servers:
    """Processes of ``test.servers``: started before the cases, stopped after."""

    def __init__(self, specs: dict[str, Any], flow_dir: Path) -> None:
        self.specs = specs
        self.flow_dir = flow_dir
        self.procs: list[tuple[subprocess.Popen[bytes], float]] = []
        self.placeholders: dict[str, str] = {}

    async def start(self) -> None:
        for name, spec in self.specs.items():
            lo, hi = _opt(spec, "portRange", "port_range", [18000, 19000])
            port = _free_port(int(lo), int(hi))
            url = f"http://127.0.0.1:{port}"
            args = [_with_port(a, port) for a in spec.get("args", [])]
            env = {**os.environ, **{k: _with_port(v, port) for k, v in (spec.get("env") or {}).items()}}
            wd = _opt(spec, "workingDirectory", "working_directory", None)
            cwd = (self.flow_dir / wd) if wd else self.flow_dir
            cmd = spec["command"]
            if cmd in ("python", "python3"):
                cmd = sys.executable
            # Spawning is quick and nothing else runs on the loop yet (the cases start after every
            # server is up); stop() manages these processes synchronously.
            proc = subprocess.Popen(  # noqa: ASYNC220
                [cmd, *args],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            shutdown = float(_opt(spec, "shutdownTimeoutMs", "shutdown_timeout_ms", 5000)) / 1000
            self.procs.append((proc, shutdown))
            self.placeholders[f"{{{name}.url}}"] = url
            self.placeholders[f"{{{name}.port}}"] = str(port)
            startup = float(_opt(spec, "startupTimeoutMs", "startup_timeout_ms", 10000)) / 1000
            await self._wait_ready(proc, port, spec, startup, name)

    async def _wait_ready(
        self, proc: subprocess.Popen[bytes], port: int, spec: dict[str, Any], startup: float, name: str
    ) -> None:
        hc = _opt(spec, "healthCheck", "health_check", None)
        deadline = time.monotonic() + startup
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise GatewayError(f"test server '{name}' exited with code {proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    pass
                if not hc:
                    return
                import httpx2

                async with httpx2.AsyncClient(timeout=2) as client:
                    r = await client.get(f"http://127.0.0.1:{port}{hc.get('path', '/health')}")
                    if r.status_code < 500:
                        return
            except OSError:
                pass
            except Exception:
                pass
            await anyio.sleep(0.05)
        raise GatewayError(f"test server '{name}' did not become ready within {startup:g} s")

    def substitute(self, value: Any) -> Any:
        if isinstance(value, str):
            for k, v in self.placeholders.items():
                value = value.replace(k, v)
            return value
        if isinstance(value, dict):
            return {k: self.substitute(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.substitute(v) for v in value]
        return value

    def stop(self) -> None:
        for proc, grace in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)


async def run_tests(
    paths: list[Path],
    *,
    config: Path | None = None,
    cases: list[str] | None = None,
    update: bool = False,
    diff: bool = False,
    write: Callable[[str], None] = print,
) -> TestSummary:
    from .yaml_loader import load_yaml_file

    summary = TestSummary()
    files, missing = discover(paths)
    for m in missing:
        write(f"Missing file: {m}")
        summary.files_errored += 1
    for path in files:
        try:
            doc = load_yaml_file(path).value
        except Exception:
            summary.files_skipped += 1
            continue
        if not isinstance(doc, dict) or doc.get("schema") != FLOW_SCHEMA_URL:
            summary.files_skipped += 1
            continue
        test = doc.get("test") if isinstance(doc.get("test"), dict) else None
        all_cases = (test or {}).get("cases") or []
        selected = [c for c in all_cases if isinstance(c, dict) and (not cases or c.get("name") in cases)]
        if not selected:
            write(f"{path}: skipped (no test cases)")
            summary.files_skipped += 1
            continue
        try:
            await _run_file(path, doc, test or {}, selected, config, summary, update, diff, write)
        except Exception as exc:
            # A config or plugin-start failure (raised from a task group, so possibly wrapped in an
            # ExceptionGroup) makes this file errored; the other files still run.
            error = _gateway_error(exc)
            if error is None:
                raise
            write(f"{path}: error: {error}")
            summary.files_errored += 1
    write("")
    write("=== Test Summary ===")
    write(f"Files tested: {summary.files_tested}")
    write(f"Files skipped: {summary.files_skipped}")
    write(f"Files errored: {summary.files_errored}")
    write(f"Total test cases: {summary.total}")
    write(f"Passed: {summary.passed}")
    write(f"Failed: {summary.failed}")
    write(f"Execution errors: {summary.execution_errors}")
    return summary


async def _run_file(
    path: Path,
    doc: dict[str, Any],
    test: dict[str, Any],
    selected: list[dict[str, Any]],
    config: Path | None,
    summary: TestSummary,
    update: bool,
    diff: bool,
    write: Callable[[str], None],
) -> None:
    from .config.load import find_test_config, load_config, parse_config
    from .flow.load import load_flow
    from .gateway import Gateway

    loaded = load_flow(path)  # FlowLoadError → errored file
    flow_dir = Path(await anyio.Path(path).resolve()).parent
    servers = _Servers(test.get("servers") or {}, flow_dir)
    try:
        await servers.start()
        inline = test.get("config", test.get("stepflow_config"))
        if config is not None:
            cfg = load_config(config, default_working_dir=Path.cwd())
        elif isinstance(inline, dict):
            cfg = parse_config(
                servers.substitute(inline), source=path, working_dir=flow_dir, json_root="$.test.config"
            )
        else:
            cfg = load_config(find_test_config(flow_dir, Path.cwd()), default_working_dir=Path.cwd())
        passed = 0
        async with Gateway(cfg.config, config_warnings=cfg.warnings) as gw:
            summary.files_tested += 1  # only once its plugins started; otherwise the file errored
            for case in selected:
                name = case.get("name", "<unnamed>")
                write("----------")
                write(f"Running Test Case {name}")
                summary.total += 1
                try:
                    result = await gw.run(loaded.flow, case.get("input"))
                except GatewayError as exc:
                    write(f"  execution error: {exc}")
                    summary.execution_errors += 1
                    summary.failures.append(f"{path}::{name}: {exc}")
                    continue
                actual = normalize_result(result.to_json())
                expected = case.get("output")
                if expected is None:
                    write(f"  no expected output; actual: {actual}")
                    summary.failed += 1
                    summary.failures.append(f"{path}::{name}: no expected output")
                    if update:
                        case["output"] = result.to_json()
                    continue
                problem = match_flow_result(normalize_result(expected), actual)
                if problem is None:
                    passed += 1
                    summary.passed += 1
                else:
                    write(f"  FAILED: {problem}")
                    if diff:
                        _write_diff(expected, actual, write)
                    summary.failed += 1
                    summary.failures.append(f"{path}::{name}: {problem}")
                    if update:
                        case["output"] = result.to_json()
        write(f"{path}: {passed}/{len(selected)} passed")
        if update:
            import yaml

            text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
            await anyio.Path(path).write_text(text, encoding="utf-8")
    finally:
        servers.stop()


def _gateway_error(exc: BaseException) -> GatewayError | None:
    """``exc`` itself, or the first ``GatewayError`` inside (nested) exception groups."""
    stack = [exc]
    while stack:
        e = stack.pop(0)
        if isinstance(e, GatewayError):
            return e
        if isinstance(e, BaseExceptionGroup):
            stack.extend(e.exceptions)
    return None


def _write_diff(expected: Any, actual: Any, write: Callable[[str], None]) -> None:
    import difflib

    import yaml

    a = yaml.safe_dump(normalize_result(expected), sort_keys=True).splitlines()
    b = yaml.safe_dump(actual, sort_keys=True).splitlines()
    for line in difflib.unified_diff(a, b, "expected", "actual", lineterm=""):
        write("  " + line)
