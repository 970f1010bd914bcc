"""Owns what keeps the gateway's child processes from outliving it, even after ``kill -9``.

Every child the plugins spawn (StepFlow stdio servers and self-launching HTTP workers, MCP stdio
servers) gets two guards:

* **parent-death signal** (Linux): the child runs ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` between
  fork and exec (:func:`child_preexec`), so the kernel kills it the moment the gateway dies. The
  signal survives ``exec`` (not of set-uid binaries). It fires when the *thread* that forked exits:
  spawns happen on the event-loop thread (asyncio calls ``Popen`` there), which lives as long as
  the children it owns; the trio backend forks from worker threads, so there no signal is set.
* **reaper** (POSIX): the child is its own process group, and the group is registered with one
  small watchdog process per gateway (:func:`guard_group`). The watchdog reads our registrations
  from a pipe; when the gateway dies, however it dies, the pipe ends and the watchdog SIGKILLs
  every group still registered. This reaches grandchildren the parent-death signal cannot:
  ``node`` under ``npx`` or ``sh -c``, the python under ``uv run``. A group is released
  (:func:`release_group`) once its plugin has stopped it. The watchdog is detached (double fork),
  so it never shows among the gateway's children, and it ignores terminal signals (own session).

Limits: a descendant that leaves the group (``setsid``) escapes the reaper; a process forked from
the gateway without ``exec`` keeps the pipe open until it exits (the fork hook closes its copy).

:func:`open_process` is ``anyio.open_process`` with both guards (asyncio; other backends get the
reaper only). The MCP stdio transport spawns through ``loop.subprocess_exec`` and uses
:func:`child_preexec` and :func:`guard_group` itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

import anyio
import anyio.lowlevel
import structlog
from anyio.abc import ByteReceiveStream, ByteSendStream, Process

from ..protocol.framing import StreamReaderReceive

__all__ = ["child_preexec", "guard_group", "open_process", "reaper_pid", "release_group"]

log = structlog.get_logger(__name__)

_PR_SET_PDEATHSIG = 1
_SIGKILL = int(getattr(signal, "SIGKILL", 9))


def _load_prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_PRCTL = _load_prctl()


def child_preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child die with the gateway (Linux); ``None`` elsewhere.

    Call it on the thread that will fork (the event-loop thread): the signal fires when that
    thread exits. The function runs in the forked child and only calls ``prctl`` and
    ``getppid``; if the gateway already died between fork and ``prctl``, the child kills itself.
    """
    prctl = _PRCTL
    if prctl is None:
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os.kill(os.getpid(), _SIGKILL)

    return preexec


# -- the reaper ----------------------------------------------------------------------------------

_REAPER_SCRIPT = r"""
import os, signal, sys
if os.fork():
    os._exit(0)
os.write(1, b"%d\n" % os.getpid())
os.close(1)
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
groups = set()
rest = b""
while True:
    try:
        data = os.read(0, 65536)
    except OSError:
        break
    if not data:
        break
    *lines, rest = (rest + data).split(b"\n")
    for line in lines:
        try:
            pgid = int(line[1:])
        except ValueError:
            continue
        if line[:1] == b"+":
            groups.add(pgid)
        elif line[:1] == b"-":
            groups.discard(pgid)
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""
"""Reads ``+<pgid>`` / ``-<pgid>`` lines on stdin; at end of input SIGKILLs what is registered."""

_REAPER_START_TIMEOUT_S = 10.0


class _Reaper:
    """The gateway side of the watchdog: the pipe, the registered groups, restarts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._pid: int | None = None
        self._groups: set[int] = set()
        self._disabled = os.name != "posix" or not sys.executable

    def guard(self, pgid: int) -> None:
        if self._disabled:
            return
        with self._lock:
            self._groups.add(pgid)
            self._send(f"+{pgid}\n".encode())

    def release(self, pgid: int) -> None:
        if self._disabled:
            return
        with self._lock:
            if pgid in self._groups:
                self._groups.discard(pgid)
                self._send(f"-{pgid}\n".encode())

    @property
    def pid(self) -> int | None:
        return self._pid

    def _send(self, line: bytes) -> None:
        for _ in range(2):
            if self._fd is None and not self._start():
                return
            assert self._fd is not None
            try:
                os.write(self._fd, line)  # below PIPE_BUF: all or nothing
                return
            except BlockingIOError:
                log.warning("process reaper is not reading; registration dropped", line=line.decode().strip())
                return
            except OSError:
                # The watchdog is gone (killed?): start a new one with what is registered now.
                log.warning("process reaper went away; restarting it")
                self._close()
                line = b"".join(f"+{g}\n".encode() for g in sorted(self._groups))
                if not line:
                    return

    def _start(self) -> bool:
        read_fd, write_fd = os.pipe()
        try:
            # The intermediate forks the watchdog and exits at once; waiting for it (one python
            # start, tens of ms, once per gateway) leaves no zombie and no child of ours behind.
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-I",
                    "-S",
                    "-c",
                    _REAPER_SCRIPT,
                    "stepflow-gateway-reaper",
                    str(os.getpid()),
                ],
                stdin=read_fd,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                cwd="/",
                start_new_session=True,
            )
            try:
                proc.wait(timeout=_REAPER_START_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise OSError("the reaper did not detach") from None
            finally:
                assert proc.stdout is not None
                with proc.stdout:
                    # The watchdog writes its pid first thing (EOF if it died).
                    announced = proc.stdout.readline() if proc.returncode == 0 else b""
            if not announced.strip().isdigit():
                raise OSError(f"the reaper did not start (status {proc.returncode})")
        except OSError as exc:
            os.close(read_fd)
            os.close(write_fd)
            log.warning(
                "cannot start the process reaper; children may outlive a crashed gateway", error=str(exc)
            )
            self._disabled = True
            return False
        os.close(read_fd)
        os.set_blocking(write_fd, False)
        self._fd = write_fd
        self._pid = int(announced)
        log.debug("process reaper started", pid=self._pid)
        return True

    def _close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = None
        self._pid = None

    def forget(self) -> None:
        """In a forked child: drop the parent's pipe (the parent still guards its groups)."""
        self._lock = threading.Lock()
        self._close()
        self._groups = set()


_REAPER = _Reaper()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_REAPER.forget)


def guard_group(pgid: int) -> None:
    """Have process group ``pgid`` SIGKILLed if the gateway dies before :func:`release_group`.

    Starts the watchdog on first use (synchronously, once). Never raises.
    """
    _REAPER.guard(pgid)


def release_group(pgid: int) -> None:
    """The group ``pgid`` has been stopped: forget it (a no-op for unknown groups)."""
    _REAPER.release(pgid)


def reaper_pid() -> int | None:
    """The watchdog's pid once started, else ``None``."""
    return _REAPER.pid


# -- spawning ------------------------------------------------------------------------------------


def on_asyncio() -> bool:
    """Whether an asyncio loop runs this task."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def open_process(
    argv: Sequence[str],
    *,
    stdin: int | IO[Any] | None,
    stdout: int | IO[Any] | None,
    stderr: int | IO[Any] | None,
    cwd: str | None,
    env: Mapping[str, str],
) -> Process:
    """``anyio.open_process(argv, start_new_session=True, ...)`` with the parent-death signal
    (asyncio) and the process group guarded by the reaper. Call :func:`release_group` with the pid
    once the group has been stopped.

    Raises:
        OSError: the process could not be spawned.
    """
    process: Process
    if on_asyncio():
        raw = await asyncio.create_subprocess_exec(
            *argv,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
            preexec_fn=child_preexec(),
        )
        process = _AsyncioProcess(raw)
    else:
        process = await anyio.open_process(
            list(argv),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            cwd=cwd,
            env=dict(env),
            start_new_session=True,
        )
    guard_group(process.pid)
    return process


class _Send(ByteSendStream):
    __slots__ = ("_writer", "_closed")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._closed = False

    async def send(self, item: bytes) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if self._writer.is_closing():
            raise anyio.BrokenResourceError
        try:
            self._writer.write(item)
            await self._writer.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise anyio.BrokenResourceError from exc

    async def aclose(self) -> None:
        self._closed = True
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


class _AsyncioProcess(Process):
    """An ``asyncio.subprocess.Process`` behind anyio's ``Process`` interface."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self._process = process
        self._stdin = _Send(process.stdin) if process.stdin is not None else None
        self._stdout = StreamReaderReceive(process.stdout) if process.stdout is not None else None
        self._stderr = StreamReaderReceive(process.stderr) if process.stderr is not None else None

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            for stream in (self._stdin, self._stdout, self._stderr):
                if stream is not None:
                    await stream.aclose()
        await self.wait()

    async def wait(self) -> int:
        return await self._process.wait()

    def terminate(self) -> None:
        self._process.terminate()

    def kill(self) -> None:
        self._process.kill()

    def send_signal(self, sig: signal.Signals) -> None:
        self._process.send_signal(sig)

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    @property
    def stdin(self) -> ByteSendStream | None:
        return self._stdin

    @property
    def stdout(self) -> ByteReceiveStream | None:
        return self._stdout

    @property
    def stderr(self) -> ByteReceiveStream | None:
        return self._stderr
