"""A state store that goes wrong under a real server: a corrupt file, a full disk.

Clear errors that name the file; the process stays up; nothing that was journaled is lost, and
what was queued while the disk was full is written once there is room again. The full disk is a
real, tiny tmpfs (this needs root, as CI has; elsewhere the test skips).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from stepflow_gateway.core.journal import STEP_FINISHED, JournalEvent
from stepflow_gateway.core.result import FlowResult
from stepflow_gateway.errors import StateStoreError
from stepflow_gateway.state.base import RunFilter, RunRecord
from stepflow_gateway.state.sqlite import SqliteStore

pytestmark = pytest.mark.anyio

CLI = [str(Path(sys.executable).parent / "stepflow-gateway")]


def _run(run_id: str) -> RunRecord:
    return RunRecord(run_id, "f", "n", "running", "2026-01-01T00:00:00.000000Z", [{"pad": "x" * 500}])


async def test_a_corrupt_database_is_one_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    db.write_bytes(b"this is not a database, it was overwritten by something else\n" * 100)
    with pytest.raises(StateStoreError) as info:
        async with SqliteStore.from_url(f"sqlite:{db}"):
            pass
    message = str(info.value)
    assert str(db) in message and "not a database" in message


def test_serve_on_a_corrupt_database_says_so_in_one_line(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    db.write_bytes(b"this is not a database, it was overwritten by something else\n" * 100)
    config = tmp_path / "plugins.yml"
    config.write_text(
        "plugins:\n  builtin: {type: builtin}\nroutes:\n  /builtin/{*component}: [{plugin: builtin}]\n"
        f'stateStore: {{type: sqlite, databaseUrl: "sqlite:{db}"}}\n'
    )
    done = subprocess.run(
        [*CLI, "serve", "--config", str(config), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode != 0
    assert str(db) in done.stderr and "not a database" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 2 MiB tmpfs mounted at ``tmp_path/disk`` (root only), unmounted afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        if os.environ.get("CI"):
            pytest.fail("the full-disk test needs root and mount(8) in CI")
        pytest.skip("needs root to mount a tiny tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], check=True, timeout=30)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False, timeout=30)


async def test_a_full_disk_keeps_writes_queued_until_there_is_room(tiny_disk: Path) -> None:
    db = tiny_disk / "state.db"
    filler = tiny_disk / "filler"
    with anyio.fail_after(60):
        async with SqliteStore.from_url(f"sqlite:{db}?mode=rwc") as store:
            await store.create_run(_run("before"))
            await store.flush()
            # fill the disk to the last block, then queue more than fits
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
            try:
                for _ in range(1024):  # 4 MiB at most: more than the disk holds
                    os.write(fd, b"\0" * 4096)
            except OSError:
                pass
            finally:
                os.close(fd)
            ids = [f"queued-{i}" for i in range(50)]
            for rid in ids:
                await store.create_run(_run(rid))
                result = FlowResult.success({"blob": "y" * 1000})
                store.append([JournalEvent(1, rid, rid, STEP_FINISHED, 0, "s", 1, result, 0.0)])
            with pytest.raises(StateStoreError) as info:
                await store.flush()
            assert str(db) in str(info.value) and "full" in str(info.value)
            assert store.pending_writes > 0
            # the store still answers reads, from what was committed
            assert [r.run_id for r in await store.list_runs(RunFilter())] == ["before"]
            # room again: everything that was queued is written, in order, nothing lost
            filler.unlink()
            await store.flush()
            assert store.pending_writes == 0
            listed = {r.run_id for r in await store.list_runs(RunFilter())}
            assert listed == {"before", *ids}
            events = await store.read_journal("queued-49")
            assert [e.data["result"]["blob"] for e in events] == ["y" * 1000]
