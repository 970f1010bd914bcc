"""Regression: a config or plugin-start error raised inside the plugin set's task group reached the
CLI as ``ExceptionGroup`` ("internal error: unhandled errors in a TaskGroup", exit 1), and made
``test`` abort every remaining file with no summary.

Fixed in ``cli/render.py`` (unwrap the group to its ``GatewayError``) and ``testing.py``
(the file counts as errored; the other files still run).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stepflow_gateway.testing import run_tests

pytestmark = pytest.mark.anyio

EXE = str(Path(sys.executable).parent / "stepflow-gateway")
TAG = "https://stepflow.org/schemas/v1/flow.json"
BAD_TYPE = 'plugins:\n  x: { type: nosuchtype }\nroutes:\n  "/x/{*c}": [ { plugin: x } ]\n'
BAD_COMMAND = (
    "plugins:\n  x: { type: stepflow, transport: stdio, command: /nonexistent/stepflow-cmd }\n"
    'routes:\n  "/x/{*c}": [ { plugin: x } ]\n'
)


def _flow() -> str:
    return (
        f"schema: {TAG}\nname: f\nsteps: []\noutput: {{$input: v}}\n"
        "test:\n  cases:\n    - name: c\n      input: {v: 1}\n      output: {outcome: success, result: 1}\n"
    )


@pytest.mark.parametrize(
    ("config", "code", "needle"), [(BAD_TYPE, 2, "nosuchtype"), (BAD_COMMAND, 1, "/nonexistent/stepflow-cmd")]
)
def test_cli_reports_the_wrapped_error(tmp_path: Path, config: str, code: int, needle: str) -> None:
    (tmp_path / "cfg.yml").write_text(config, encoding="utf-8")
    (tmp_path / "f.yaml").write_text(_flow(), encoding="utf-8")
    proc = subprocess.run(
        [EXE, "run", "--flow", "f.yaml", "--config", "cfg.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "STEPFLOW_DEBUG"},
    )
    assert proc.returncode == code
    assert (
        "TaskGroup" not in proc.stderr
        and "Traceback" not in proc.stderr
        and "internal error" not in proc.stderr
    )
    assert needle in proc.stderr and proc.stdout == ""


async def test_test_runner_counts_the_file_as_errored_and_continues(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "stepflow-config.yml").write_text(BAD_TYPE, encoding="utf-8")
    (broken / "f.yaml").write_text(_flow(), encoding="utf-8")
    fine = tmp_path / "fine"
    fine.mkdir()
    (fine / "f.yaml").write_text(_flow(), encoding="utf-8")
    lines: list[str] = []
    summary = await run_tests([broken / "f.yaml", fine / "f.yaml"], write=lines.append)
    text = "\n".join(lines)
    assert summary.files_errored == 1 and summary.files_tested == 1 and summary.passed == 1, text
    assert summary.exit_code == 1
    assert "nosuchtype" in text and "=== Test Summary ===" in text
