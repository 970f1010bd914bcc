"""Owns child processes of stepflow plugins: command lookup, the minimal environment, spawning in a
new process group that dies with the gateway (``plugins/_process.py``), stderr capture into
structlog, and the bounded shutdown (protocol.md §6, §8).

:func:`open_child` is used by both the stdio shape (stdin/stdout are the JSON-RPC pipes) and the
self-launching HTTP worker (stdin is ``/dev/null``; stdout carries the ``{"port": N}`` line).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import structlog
from anyio.abc import Process

from ...errors import PluginStartError
from ...protocol.framing import LineChannel
from .._process import open_process, release_group

__all__ = ["BASE_ENV_KEYS", "Child", "child_env", "open_child", "resolve_command"]

log = structlog.get_logger(__name__)

BASE_ENV_KEYS = ("HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER")
"""Taken from the gateway's environment under the configured ``env`` (config.md §2.1)."""

STDERR_TAIL = 100
"""stderr lines kept to report when a child crashes (protocol.md §6)."""


def child_env(environ: Mapping[str, str], configured: Mapping[str, str]) -> dict[str, str]:
    """The configured ``env`` on top of the minimal base; configured keys win."""
    env = {k: environ[k] for k in BASE_ENV_KEYS if k in environ}
    env.update(configured)
    return env


def resolve_command(command: str, working_directory: Path, path: str | None) -> str:
    """Find ``command`` on ``path``, then relative to ``working_directory``.

    Raises:
        PluginStartError: neither place has it.
    """
    if os.sep in command or (os.altsep and os.altsep in command):
        candidate = Path(command)
        if not candidate.is_absolute():
            candidate = working_directory / candidate
        if candidate.exists():
            return str(candidate)
        raise PluginStartError(f"command '{command}' not found (looked for {candidate})")
    found = shutil.which(command, path=path)
    if found:
        return found
    candidate = working_directory / command
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    raise PluginStartError(f"command '{command}' not found on PATH or in {working_directory}")


@dataclass(slots=True, eq=False)
class Child:
    """A running child process and its pipes."""

    process: Process
    argv: list[str]
    stdout: LineChannel
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=STDERR_TAIL))
    exited: anyio.Event = field(default_factory=anyio.Event)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def describe_exit(self) -> str:
        code = self.process.returncode
        tail = " | ".join(list(self.stderr_tail)[-5:])
        what = f"exited with status {code}" if code is not None else "closed its output"
        return f"{what}" + (f"; last stderr: {tail}" if tail else "")


@asynccontextmanager
async def open_child(
    argv: list[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    plugin: str,
    stdin_pipe: bool,
    line_limit: int | None = None,
    grace: float = 2.0,
) -> AsyncIterator[Child]:
    """Spawn ``argv`` in its own process group; on exit stop it without leaving orphans.

    Raises:
        PluginStartError: the process could not be spawned.
    """
    bound = log.bind(plugin=plugin)
    async with anyio.create_task_group() as tg:
        try:
            # Own process group (shutdown reaches grandchildren too), killed with the gateway.
            process = await open_process(
                argv,
                stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=str(cwd),
                env=env,
            )
        except OSError as exc:
            raise PluginStartError(f"cannot start '{' '.join(argv)}': {exc}", plugin=plugin) from exc
        # No await between the spawn and this try: a cancellation there would orphan the child.
        try:
            assert process.stdout is not None and process.stderr is not None
            child = Child(
                process,
                argv,
                LineChannel(process.stdout, process.stdin, max_line=line_limit, name=plugin),
            )
            tg.start_soon(_drain_stderr, process, child.stderr_tail, bound)
            tg.start_soon(_watch_exit, child, bound)
            bound.debug("child started", pid=process.pid, argv=argv)
            yield child
        finally:
            with anyio.CancelScope(shield=True):
                await _stop(process, grace, bound)
            tg.cancel_scope.cancel()


async def _drain_stderr(process: Process, tail: deque[str], bound: Any) -> None:
    assert process.stderr is not None
    channel = LineChannel(process.stderr, None)
    try:
        while True:
            raw = await channel.receive_line()
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                tail.append(line)
                bound.debug("child stderr", line=line)
    except (anyio.EndOfStream, OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass


async def _watch_exit(child: Child, bound: Any) -> None:
    try:
        await child.process.wait()
    finally:
        child.exited.set()


async def _stop(process: Process, grace: float, bound: Any) -> None:
    """Close stdin, wait; SIGTERM the group, wait; SIGKILL the group (protocol.md §6)."""
    if process.stdin is not None:
        # stdio servers exit on EOF (stepflow-py: "Empty line received. Exiting"); workers have no
        # stdin and go straight to SIGTERM (protocol.md §8).
        try:
            await process.stdin.aclose()
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        if process.returncode is None:
            with anyio.move_on_after(grace):
                await process.wait()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if process.returncode is not None:
            break
        _signal_group(process, sig)
        with anyio.move_on_after(grace if sig == signal.SIGTERM else 5.0):
            await process.wait()
    else:
        if process.returncode is None:
            bound.warning("child did not exit after SIGKILL", pid=process.pid)
    # Reap the rest of the group (a wrapper such as `uv run` may leave its python behind).
    _signal_group(process, signal.SIGKILL)
    release_group(process.pid)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            try:
                await stream.aclose()
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass
    bound.debug("child stopped", pid=process.pid, returncode=process.returncode)


def _signal_group(process: Process, sig: int) -> None:
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
