"""Every builtin-only example under examples/ runs as the README says, and its test cases pass."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GATEWAY = REPO / ".venv" / "bin" / "stepflow-gateway"
BUILTIN_EXAMPLES = ["hello", "blobs-and-map", "branching"]


@pytest.mark.parametrize("name", BUILTIN_EXAMPLES)
def test_example_runs(name: str) -> None:
    proc = subprocess.run(
        [str(GATEWAY), "run", "--flow", f"examples/{name}.yaml", "--input", f"examples/{name}-input.json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["outcome"] == "success"


def test_example_cases_pass() -> None:
    proc = subprocess.run(
        [str(GATEWAY), "test", "examples/hello.yaml", "examples/branching.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Passed: 3" in proc.stdout and "Failed: 0" in proc.stdout
