"""Throwaway PostgreSQL servers for the tests (pytest fixtures; loaded by ``tests/conftest.py``).

``PgServer`` runs a private cluster: ``initdb`` into a temporary directory, ``pg_ctl start`` on
127.0.0.1 and a free port, its unix socket inside that directory; ``stop`` is ``pg_ctl stop -m
immediate`` (like a crash: recovery runs at the next start), ``start`` brings it back on the same
port. As root the server runs as the ``postgres`` user (``runuser``), which owns the directory.
Every wait is bounded.

Fixtures:

* ``pg_server`` (session): one server for the whole run, stopped and removed at the end.
* ``pg_url`` (session): ``postgresql://stepflow@127.0.0.1:<port>/stepflow_test`` on it.
* ``pg_database`` (function): the URL of a fresh empty database, dropped after the test.

A missing ``initdb``/``pg_ctl``/``postgres`` or psycopg fails the test in CI (``CI=true``) and
skips it locally, naming ``scripts/setup.sh`` (like ``peers.require``). A server that is there
but will not start always fails.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["PgServer", "find_pg_bin", "pg_database", "pg_server", "pg_url", "require_postgres"]

USER = "stepflow"
"""The cluster's superuser (trust authentication, loopback only)."""
DATABASE = "stepflow_test"
TIMEOUT = 60.0
"""Bound on every command and wait here, in seconds."""

_names = itertools.count(1)


def find_pg_bin() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``: on ``PATH``, else Debian's
    ``/usr/lib/postgresql/<version>/bin`` (highest version), else ``None``."""
    candidates: list[Path] = []
    found = shutil.which("pg_ctl")
    if found:
        candidates.append(Path(found).resolve().parent)

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.parent.name
        return tuple(int(p) for p in name.split(".") if p.isdigit())

    candidates += [
        Path(p).parent for p in sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=version)
    ][::-1]
    for directory in candidates:
        if all(os.access(directory / exe, os.X_OK) for exe in ("initdb", "pg_ctl", "postgres")):
            return directory
    return None


def _unavailable(message: str) -> None:
    message = f"{message}; run scripts/setup.sh to install it"
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def require_postgres() -> Path:
    """The PostgreSQL bin directory, or fail (CI) / skip (locally) the calling test."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        _unavailable(f"psycopg 3 with its pool is not installed ({exc}; pip install -e '.[dev]')")
    bin_dir = find_pg_bin()
    if bin_dir is None:
        _unavailable(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found (Debian package postgresql)"
        )
        raise AssertionError("unreachable")
    return bin_dir


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgServer:
    """One private PostgreSQL cluster. ``start()``/``stop()`` may be called again (same port)."""

    def __init__(self, bin_dir: Path, *, port: int | None = None) -> None:
        self.bin_dir = bin_dir
        self.host = "127.0.0.1"
        self.port = port or _free_port()
        self.user = USER
        self.root = Path(tempfile.mkdtemp(prefix="stepflow-pg-"))  # short: the socket path is limited
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as: list[str] = []
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root: the Debian package's 'postgres' user owns it all.
            runuser = shutil.which("runuser")
            if runuser is None:
                raise RuntimeError("running as root needs 'runuser' (util-linux) to start PostgreSQL")
            shutil.chown(self.root, "postgres", "postgres")
            self._as = [runuser, "-u", "postgres", "--"]
        self.running = False

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def _run(self, *argv: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*self._as, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if proc.returncode != 0:
            output = proc.stderr.strip() or proc.stdout.strip()
            raise RuntimeError(
                f"{Path(argv[0]).name} failed ({proc.returncode}): {output}"
                f"\n--- server log ---\n{self._log_tail()}"
            )
        return proc

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return "(no log)"

    def init(self) -> None:
        self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",  # the cluster is thrown away; the server itself runs with fsync on
        )

    def start(self) -> None:
        """Start (or restart) the server and wait until it accepts connections."""
        options = f"-c listen_addresses={self.host} -p {self.port} -k {self.root} -c max_connections=60"
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            str(int(TIMEOUT)),
            "start",
            timeout=TIMEOUT + 10,
        )
        self.running = True
        deadline = time.monotonic() + TIMEOUT
        while True:  # pg_ctl -w waited for the socket; make sure TCP answers too
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"PostgreSQL did not listen on port {self.port}\n{self._log_tail()}"
                    ) from None
                time.sleep(0.05)

    def stop(self) -> None:
        """``pg_ctl stop -m immediate``; the postmaster is killed if that does not work in time."""
        if not self.running:
            return
        self.running = False
        try:
            self._run(
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                "immediate",
                "-w",
                "-t",
                "30",
                "stop",
            )
        except (RuntimeError, subprocess.TimeoutExpired):
            self._kill_postmaster()

    def _kill_postmaster(self) -> None:
        try:
            pid = int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # databases -----------------------------------------------------------------------------
    def _admin(self) -> Any:
        import psycopg

        return psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=10)

    def create_database(self, name: str) -> str:
        from psycopg import sql

        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        from psycopg import sql

        with self._admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def __enter__(self) -> PgServer:
        try:
            self.init()
            self.start()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL server for the whole session (see the module doc)."""
    bin_dir = require_postgres()
    with PgServer(bin_dir) as server:
        yield server


@pytest.fixture(scope="session")
def pg_url(pg_server: PgServer) -> str:
    """``postgresql://stepflow@127.0.0.1:<port>/stepflow_test`` (shared by the session's tests)."""
    return pg_server.create_database(DATABASE)


@pytest.fixture
def pg_database(pg_server: PgServer) -> Iterator[str]:
    """The URL of a fresh, empty database of its own, dropped after the test."""
    name = f"t{os.getpid()}_{next(_names)}"
    url = pg_server.create_database(name)
    try:
        yield url
    finally:
        if pg_server.running:
            pg_server.drop_database(name)
