"""Upstream's own test flows (shared/conformance/upstream) run through `stepflow-gateway test`.

Class A needs only builtins and the mock plugin; class B needs the official stepflow-py 0.7.0 `/udf`
server over stdio, which replaces upstream's `uv --project ../../sdks/python run stepflow_py` command.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import peers
import pytest

from stepflow_gateway.testing import run_tests

pytestmark = pytest.mark.anyio

UPSTREAM = Path(__file__).resolve().parents[3] / "shared" / "conformance" / "upstream"
if not UPSTREAM.exists():  # CI clones main with shared/ beside it
    UPSTREAM = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "upstream"
UPSTREAM_HEAD = UPSTREAM.parent / "upstream-head"
"""Upstream's data at a newer commit (817917a7): string error codes, prefix routes, retry."""

CLASS_A = [
    "tests/basic.yaml",
    "tests/builtins/blob_test.yaml",
    "tests/builtins/map_test.yaml",
    "tests/builtins/nested_eval.yaml",
    "tests/empty/empty_flow.yaml",
    "tests/mock/basic.yaml",
    "tests/mock/error_fail.yaml",
    "tests/mock/error_use_default.yaml",
    "tests/mock/error_use_default_value.yaml",
    "tests/mock/lazy_evaluation.yaml",
    "tests/sql-state/simple_workflow.yaml",
]
# Builtin-only flows whose config also starts the python plugin (upstream starts it eagerly).
CLASS_A_STAR = [
    "examples/eval/simple-eval.yaml",
    "examples/eval/test-builtins.yaml",
    "examples/file-loading/test-load.yaml",
]
CLASS_B = [
    "tests/python/blob_integration.yaml",
    "tests/python/blob_simple.yaml",
    "tests/python/error_handling.yaml",
    "tests/python/restart_functionality.yaml",
    "tests/python/udf_function.yaml",
    "tests/python/udf_simple.yaml",
    "tests/python/udf_text_processing.yaml",
    "examples/basic/workflow.yaml",
    "examples/eval/math-eval.yaml",
]
PARSE_ONLY = ["tests/no_tests.yaml", "tests/mcp/basic_mcp.yaml"]

_UV_COMMAND = re.compile(r"command:\s*uv\s*\n(\s*)args:\s*\[[^\]]*stepflow_py[^\]]*\]")


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the upstream data with the python plugin command pointed at stepflow-py 0.7.0."""
    root = tmp_path_factory.mktemp("upstream")
    shutil.copytree(UPSTREAM, root, dirs_exist_ok=True)
    stepflow_py = str(peers.sf07_stepflow_py())
    for cfg in root.rglob("stepflow-config.yml"):
        text = cfg.read_text()
        new = _UV_COMMAND.sub(lambda m: f"command: {stepflow_py}\n{m.group(1)}args: []", text)
        cfg.write_text(new)
    return root


async def _run(tree: Path, rel: str) -> tuple[object, list[str]]:
    lines: list[str] = []
    summary = await run_tests([tree / rel], write=lines.append)
    return summary, lines


@pytest.mark.parametrize("rel", CLASS_A)
async def test_class_a(tree: Path, rel: str) -> None:
    summary, lines = await _run(tree, rel)
    assert summary.total > 0, lines
    assert summary.failed == 0 and summary.execution_errors == 0 and summary.files_errored == 0, "\n".join(
        lines
    )
    assert summary.passed == summary.total


@pytest.mark.parametrize("rel", CLASS_A_STAR + CLASS_B)
async def test_class_b(tree: Path, rel: str) -> None:
    peers.require(
        peers.sf07_stepflow_py(), why="class-B conformance flows need the stepflow-py 0.7.0 /udf server"
    )
    summary, lines = await _run(tree, rel)
    assert summary.total > 0, lines
    assert summary.failed == 0 and summary.execution_errors == 0 and summary.files_errored == 0, "\n".join(
        lines
    )
    assert summary.passed == summary.total


@pytest.mark.parametrize("rel", PARSE_ONLY)
async def test_parse_only_flows_are_skipped(tree: Path, rel: str) -> None:
    summary, lines = await _run(tree, rel)
    assert summary.files_skipped == 1 and summary.total == 0 and summary.exit_code == 0, lines


async def test_missing_path_is_an_error(tree: Path) -> None:
    summary, lines = await _run(tree, "does/not/exist.yaml")
    assert summary.exit_code == 1
    assert "Missing file: " in lines[0]


async def test_upstream_head_mock_suite() -> None:
    """``tests/mock`` at upstream HEAD: ``code: COMPONENT_FAILED`` (upstream #773), the ``"/mock"``
    prefix route and ``onError: {action: retry, maxRetries: 2}`` (default backoff: about 2 s)."""
    summary, lines = await _run(UPSTREAM_HEAD, "tests/mock")
    assert summary.files_errored == 0 and summary.failed == 0 and summary.execution_errors == 0, "\n".join(
        lines
    )
    assert summary.total == 2 and summary.passed == 2, "\n".join(lines)
