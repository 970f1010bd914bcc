"""Black-box crash tests of durable runs: SIGKILL ``serve`` at chosen moments, restart it, check.

Like upstream's ``tests/recovery`` (sequential_delay, parallel_delay, subflow_delay with a
``/test/delay`` component): the component server ``delay_server.py`` records every execution's
start and end in a file; a real ``stepflow-gateway serve`` subprocess with a real store file runs
the flows; the test watches the record file, SIGKILLs the server at the moment it wants, starts a
new server on the same config and working directory, waits for the runs and checks the results
and, from the record file and the journal at each kill, what ran how often
(``recovery_support.check_executions``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from recovery_support import (
    TRANSPORTS,
    Kill,
    Record,
    Store,
    assert_no_orphans,
    check_executions,
    crash,
    delay,
    ended,
    gateway_config,
    kill_leftovers,
    sequential_flow,
    sequential_result,
    started,
    store_flow,
    submit,
    success,
    wait_durable,
    wait_runs,
)

DATA = {"order": 42, "tags": ["a", "b"]}


@pytest.fixture
def record(tmp_path: Path):
    rec = Record(tmp_path / "record.jsonl")
    yield rec
    kill_leftovers(rec)


def run_key(run_id: str, label: str) -> tuple[str, str]:
    return (run_id, label)


# --- kill points in one sequential run -------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_kill_during_a_step(start_server, store: Store, record: Record, tmp_path: Path, transport: str) -> None:
    """SIGKILL while s2 runs: s1 is not called again, s2 runs once more (attempt 2), s3 once."""
    config = gateway_config(store, record.path, transport)
    server = start_server(config)
    fid = store_flow(server, sequential_flow([0.2, 3.0, 0.2]))
    rid = submit(server, fid, [{"data": DATA}])
    record.wait_for(started("s2"), "s2 to start", server=server)
    kill = crash(server, record, store)
    # s2 was called, so s1's result had been made durable first (the barrier before every call)
    assert (rid, "s1") in kill.durable or transport == "mcp" and (None, "s1") in {
        (None, k[1]) for k in kill.durable
    }, f"s1 finished before s2 started but its result was not journaled: {kill.durable}"

    again = start_server(config, workdir=tmp_path)
    runs = wait_runs(again, [rid])
    assert runs[rid] == {"status": "completed", "results": [success(sequential_result(3, DATA))]}

    label_only = transport == "mcp" and not any(ln.idem for ln in record.lines())
    ex = check_executions(
        record, [kill], {run_key(rid, s) for s in ("s1", "s2", "s3")}, label_only=label_only
    )
    k = (None, "s2") if label_only else (rid, "s2")
    assert ex.count(k) == 2, f"s2 interrupted once: expected 2 executions\n{record.dump()}"
    if transport != "mcp":
        assert ex.attempts(k) == [1, 2]
    else:
        idems = {ln.idem for ln in ex.starts[k]}
        if idems != {None}:  # the gateway sends an idempotency key: the same for both tries
            assert len(idems) == 1 and None not in idems, idems
            assert idems.pop().endswith("/0/s2")
    assert_no_orphans([kill])
