"""The side-by-side benchmark's smoke mode (``benchmarks/smoke.sh``) runs and reports both runtimes.

It starts the real upstream stepflow-server 0.9.0 and our ``serve`` in a private network namespace and
drives them with the real load client; the test asserts only that a table with both runtimes' columns
came out (never speed).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ for ``peers``

import peers  # noqa: E402

pytestmark = pytest.mark.peers

SMOKE = peers.REPO / "benchmarks" / "smoke.sh"
SMOKE_TIMEOUT_S = 240  # about 20 s normally; both servers start twice (cold start, then the load cells)


def _namespaces_available() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    for flags in (["-n"], ["-rn"]):
        if subprocess.run([unshare, *flags, "true"], capture_output=True, timeout=30).returncode == 0:
            return True
    return False


@pytest.mark.timeout(SMOKE_TIMEOUT_S + 30)
def test_smoke_produces_a_side_by_side_table(tmp_path: Path) -> None:
    peers.require(peers.upstream_server_binary(), why="upstream stepflow-server 0.9.0")
    peers.require(peers.sf092_python(), why="stepflow-py 0.9.2")
    peers.require(
        peers.node_modules() / "@modelcontextprotocol" / "server-everything", why="server-everything"
    )
    if not _namespaces_available():
        pytest.skip("cannot create a network namespace (unshare -n / -rn); upstream must not run outside one")
    out = tmp_path / "smoke.md"

    proc = subprocess.run([str(SMOKE), str(out)], capture_output=True, text=True, timeout=SMOKE_TIMEOUT_S)

    assert proc.returncode == 0, proc.stderr[-2000:]
    report = out.read_text()
    header = "| flow | metric | ours | upstream | ours/upstream |"
    assert header in report, report[:2000]
    noop_rows = [ln for ln in report.splitlines() if ln.startswith("| **noop-1** |")]
    assert noop_rows, report
    cells = [c.strip() for c in noop_rows[0].strip("|").split("|")]
    assert len(cells) == 5, noop_rows[0]  # flow, metric, ours, upstream, ratio: both runtimes have a column
    assert cells[2] and cells[3], noop_rows[0]
