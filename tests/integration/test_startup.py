"""What a builtin-only ``stepflow-gateway run`` imports (issue 2: start-up under 250 ms wall).

Start-up time is mostly import time, and timings are flaky on a shared machine, so these tests pin
the *cause* instead: the heavy libraries a builtin run must not load. Each test runs the real CLI
in a fresh interpreter (``main()`` in process, so ``sys.modules`` can be read afterwards), checks
its JSON result, and asserts which top-level modules were imported. ``benchmarks/startup.py``
measures the time itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

_PROBE = textwrap.dedent(
    """
    import json, sys
    sys.argv = ["stepflow-gateway", *json.loads(sys.argv[1])]
    from stepflow_gateway.cli import main
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code or 0
    sys.stdout.flush()
    sys.stderr.write("\\n@@MODULES@@" + json.dumps({"code": code, "modules": sorted(sys.modules)}) + "\\n")
    """
)

HEAVY = (
    "pydantic",
    "pydantic_core",
    "jsonschema",
    "structlog",
    "mcp",
    "starlette",
    "uvicorn",
    "httpx2",
    "httpx",
    "httpcore",
    "rich",
    "referencing",
    "attrs",
    "importlib.metadata",
    "email",
)
"""Never needed by a builtin-only run of a flow whose schema is plain (or absent)."""


def _probe(args: list[str], cwd: Path) -> tuple[int, str, str, set[str]]:
    """Run the CLI in a fresh interpreter: (exit code, stdout, stderr, imported modules)."""
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    err, sep, tail = proc.stderr.rpartition("@@MODULES@@")
    assert sep, f"the probe did not finish (exit {proc.returncode}): {proc.stderr[-2000:]}"
    info = json.loads(tail)
    return info["code"], proc.stdout, err, set(info["modules"])


def _run(args: list[str], cwd: Path) -> tuple[dict, set[str], str]:
    """A successful run: (result JSON, imported modules, stderr)."""
    code, out, err, modules = _probe(args, cwd)
    assert code == 0, f"exit {code}: {err[-2000:]}"
    return json.loads(out), modules, err


def _loaded(modules: set[str], name: str) -> bool:
    return name in modules or any(m.startswith(name + ".") for m in modules)


def test_hello_with_a_plain_input_schema_loads_no_heavy_library(tmp_path: Path) -> None:
    result, modules, err = _run(
        ["run", "--flow", str(EXAMPLES / "hello.yaml"), "--input", str(EXAMPLES / "hello-input.json")],
        tmp_path,
    )
    assert result["outcome"] == "success"
    assert result["result"]["prompt"] == "Say hello to Ada."
    assert err.strip() == ""
    loaded = [name for name in HEAVY if _loaded(modules, name)]
    assert loaded == [], f"a builtin run imported {loaded}"
    assert "stepflow_gateway.config._pydantic" not in modules
    assert not any(
        m.startswith(
            (
                "stepflow_gateway.server",
                "stepflow_gateway.plugins.mcp",
                "stepflow_gateway.plugins.stepflow",
                "stepflow_gateway.protocol",
                "stepflow_gateway.sdk",
            )
        )
        for m in modules
    )


def test_schemaless_flow_with_inline_input(tmp_path: Path) -> None:
    flow = tmp_path / "echo.yaml"
    flow.write_text(
        "schema: https://stepflow.org/schemas/v1/flow.json\n"
        "steps:\n"
        "  - id: m\n"
        "    component: /builtin/create_messages\n"
        "    input: { user_prompt: { $input: q } }\n"
        "output: { $step: m, path: messages }\n",
        encoding="utf-8",
    )
    result, modules, _ = _run(["run", "--flow", str(flow), "--input-json", '{"q": "hi"}'], tmp_path)
    assert result == {"outcome": "success", "result": [{"role": "user", "content": "hi"}]}
    loaded = [name for name in HEAVY if _loaded(modules, name)]
    assert loaded == [], f"a builtin run imported {loaded}"


def test_invalid_input_still_gets_the_jsonschema_message(tmp_path: Path) -> None:
    """The plain-schema fast path only ever says "valid": a failure is jsonschema's verdict."""
    code, out, _, modules = _probe(
        ["run", "--flow", str(EXAMPLES / "hello.yaml"), "--input-json", '{"name": 5}'], tmp_path
    )
    assert code == 1
    result = json.loads(out)
    assert result["outcome"] == "failed" and result["error"]["code"] == 400
    assert "$.name" in result["error"]["message"]
    assert "5 is not of type 'string'" in result["error"]["message"]
    assert "jsonschema" in modules


def test_a_config_with_only_builtin_loads_no_pydantic(tmp_path: Path) -> None:
    (tmp_path / "stepflow-config.yml").write_text(
        "plugins:\n  builtin: { type: builtin }\n"
        "routes:\n  '/builtin/{*component}': [ { plugin: builtin } ]\n"
        "retry: { transportMaxRetries: 2, backoff: { type: constant, delayMs: 10 } }\n",
        encoding="utf-8",
    )
    result, modules, err = _run(
        [
            "run",
            "--flow",
            str(EXAMPLES / "hello.yaml"),
            "--input",
            str(EXAMPLES / "hello-input.json"),
            "--config",
            str(tmp_path / "stepflow-config.yml"),
        ],
        tmp_path,
    )
    assert result["outcome"] == "success"
    assert err.strip() == ""
    assert not _loaded(modules, "pydantic") and not _loaded(modules, "importlib.metadata")


@pytest.mark.parametrize("value", ['{"delayMs": "10"}', '{"delayMs": -1}'])
def test_config_values_needing_pydantic_still_work(tmp_path: Path, value: str) -> None:
    """A string number is coerced and a negative delay rejected exactly as pydantic does."""
    (tmp_path / "stepflow-config.yml").write_text(
        "plugins:\n  builtin: { type: builtin }\n"
        "routes:\n  '/builtin/{*component}': [ { plugin: builtin } ]\n"
        f"retry: {{ backoff: {{ type: constant, delayMs: {json.loads(value)['delayMs']!r} }} }}\n",
        encoding="utf-8",
    )
    code, out, err, modules = _probe(
        ["run", "--flow", str(EXAMPLES / "hello.yaml"), "--input", str(EXAMPLES / "hello-input.json")],
        tmp_path,
    )
    if '"10"' in value:
        assert code == 0 and json.loads(out)["outcome"] == "success"
    else:
        assert code == 2
        assert "$.retry.backoff.delayMs: Input should be greater than or equal to 0" in err
    assert "pydantic" in modules
