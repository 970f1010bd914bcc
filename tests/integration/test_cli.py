"""The ``stepflow-gateway`` command line, run as a real subprocess.

Checks the contract of README.md "CLI surface": stdout carries only the command's output (one JSON
document for ``run``, JSONL for ``--inputs``), everything else goes to stderr, exit codes are
0 (success) / 1 (a failed outcome or test) / 2 (invalid flow, config or usage), and a user never
sees a Python traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXE = str(Path(sys.executable).parent / "stepflow-gateway")
UPSTREAM = Path("/work/shared/conformance/upstream")
if not UPSTREAM.exists():  # CI clones main with shared/ beside it
    UPSTREAM = Path(__file__).resolve().parents[2].parent / "shared" / "conformance" / "upstream"

CONFIG = """\
plugins:
  builtin: { type: builtin }
  mock:
    type: mock
    components:
      /echo:
        behaviors:
          { v: 1 }: { outcome: success, result: one }
          { v: 2 }: { outcome: failed, error: { code: 8, message: two is bad } }
          { v: 3 }: { outcome: success, result: 3.0 }
routes:
  "/builtin/{*component}": [ { plugin: builtin } ]
  "/mock/{*component}": [ { plugin: mock } ]
"""

OK_FLOW = """\
schema: https://stepflow.org/schemas/v1/flow.json
name: ok
description: echo through the mock
steps:
  - id: s
    component: /mock/echo
    input: { v: { $input: v } }
output: { r: { $step: s } }
"""

FLOWS = {
    "ok.yaml": OK_FLOW,
    "forward.yaml": """\
name: fwd
description: d
steps:
  - id: a
    component: /mock/echo
    input: {x: {$step: b}}
  - id: b
    component: /mock/echo
output: {$step: a}
""",
    "route_miss.yaml": """\
name: miss
description: d
steps:
  - id: lost
    component: /nowhere/echo
output: {$step: lost}
""",
    "malformed.yaml": "name: bad\nsteps: [\n",
    "bad_step_ref.yaml": """\
name: b
steps:
  - id: a
    component: /mock/echo
    input: {$step: {step: x}}
""",
    "vars.yaml": """\
name: vars
description: d
schemas:
  properties:
    variables:
      type: object
      properties:
        greeting: { type: string, default: hello }
        n: { type: integer }
steps: []
output: { g: { $variable: greeting }, n: { $variable: n } }
""",
    "warnings.yaml": """\
schema: https://stepflow.org/schemas/v1/flow.json
inputSchema: {}
steps: []
output: {$input: $}
""",
    "input_schema.yaml": """\
name: s
description: d
schemas:
  properties:
    input:
      type: object
      properties: { n: { type: integer, default: 5 } }
steps: []
output: {$input: n}
""",
    "skipped.yaml": """\
name: sk
description: d
steps:
  - id: s
    component: /mock/echo
    skipIf: true
output: {$step: s}
""",
}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    (root / "stepflow-config.yml").write_text(CONFIG, encoding="utf-8")
    for name, text in FLOWS.items():
        (root / name).write_text(text, encoding="utf-8")
    return root


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})}
    full_env.pop("STEPFLOW_DEBUG", None)
    proc = subprocess.run([EXE, *args], cwd=cwd, capture_output=True, text=True, timeout=60, env=full_env)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout, proc.stdout
    return proc


def one_json(proc: subprocess.CompletedProcess[str]) -> object:
    """stdout must be exactly one JSON document on one line."""
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0])


def error_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stderr.splitlines() if "error" in line]


# -- run ---------------------------------------------------------------------------------------------
def test_run_success_prints_one_json_document(work: Path) -> None:
    proc = cli("run", "--flow", "ok.yaml", "--input-json", '{"v": 1}', cwd=work)
    assert proc.returncode == 0, proc.stderr
    assert one_json(proc) == {"outcome": "success", "result": {"r": "one"}}


def test_run_keeps_float_kind(work: Path) -> None:
    proc = cli("run", "--flow", "ok.yaml", "--input-yaml", "v: 3", cwd=work)
    assert proc.returncode == 0
    assert '"r": 3.0' in proc.stdout or '"r":3.0' in proc.stdout


def test_run_failed_outcome_exits_1(work: Path) -> None:
    proc = cli("run", "--flow", "ok.yaml", "--input-json", '{"v": 2}', cwd=work)
    assert proc.returncode == 1
    assert one_json(proc) == {"outcome": "failed", "error": {"code": 8, "message": "two is bad"}}


def test_run_input_validation_failure_exits_1_with_json(work: Path) -> None:
    proc = cli("run", "--flow", "input_schema.yaml", "--input-json", '{"n": "x"}', cwd=work)
    assert proc.returncode == 1
    result = one_json(proc)
    assert result["error"]["code"] == 400  # type: ignore[index]
    assert result["error"]["message"] == "Input validation failed at $.n: 'x' is not of type 'integer'"  # type: ignore[index]
    ok = cli("run", "--flow", "input_schema.yaml", "--input-json", "{}", cwd=work)
    assert ok.returncode == 0 and one_json(ok) == {"outcome": "success", "result": 5}


def test_run_skipped_outcome_exits_0(work: Path) -> None:
    proc = cli("run", "--flow", "skipped.yaml", cwd=work)
    assert proc.returncode == 0
    assert one_json(proc) == {"outcome": "skipped", "reason": "dependency s was skipped"}


def test_run_input_file(work: Path) -> None:
    (work / "input.yaml").write_text("v: 1\n", encoding="utf-8")
    proc = cli("run", "--flow", "ok.yaml", "--input", "input.yaml", cwd=work)
    assert proc.returncode == 0 and one_json(proc) == {"outcome": "success", "result": {"r": "one"}}


def test_run_warnings_go_to_stderr_only(work: Path) -> None:
    proc = cli("run", "--flow", "warnings.yaml", "--input-json", "[1]", cwd=work)
    assert proc.returncode == 0
    assert one_json(proc) == {"outcome": "success", "result": [1]}
    assert "$.inputSchema" in proc.stderr and "schemas.properties.input" in proc.stderr


def test_run_malformed_yaml_exits_2(work: Path) -> None:
    proc = cli("run", "--flow", "malformed.yaml", cwd=work)
    assert proc.returncode == 2 and proc.stdout == ""
    [line] = error_lines(proc)
    assert "malformed.yaml" in line and "line" in line


def test_run_load_error_names_file_step_and_path(work: Path) -> None:
    proc = cli("run", "--flow", "bad_step_ref.yaml", cwd=work)
    assert proc.returncode == 2 and proc.stdout == ""
    [line] = error_lines(proc)
    assert "bad_step_ref.yaml" in line and "step 'a'" in line and "$.steps[0].input.$step" in line


def test_run_forward_reference_exits_2(work: Path) -> None:
    proc = cli("run", "--flow", "forward.yaml", cwd=work)
    assert proc.returncode == 2 and proc.stdout == ""
    diag = next(line for line in proc.stderr.splitlines() if "undefinedStepReference" in line)
    assert "forward.yaml" in diag and "$.steps[0].input" in diag and "'a'" in diag and "'b'" in diag


def test_run_route_miss_exits_2(work: Path) -> None:
    proc = cli("run", "--flow", "route_miss.yaml", cwd=work)
    assert proc.returncode == 2 and proc.stdout == ""
    diag = next(line for line in proc.stderr.splitlines() if "invalidComponent" in line)
    assert "route_miss.yaml" in diag and "$.steps[0].component" in diag and "'lost'" in diag
    assert "/nowhere/echo" in diag


def test_run_missing_flow_and_bad_flags_exit_2(work: Path) -> None:
    missing = cli("run", "--flow", "absent.yaml", cwd=work)
    assert missing.returncode == 2 and "absent.yaml" in missing.stderr and missing.stdout == ""
    bad_json = cli("run", "--flow", "ok.yaml", "--input-json", "{v", cwd=work)
    assert bad_json.returncode == 2 and "--input-json" in bad_json.stderr
    both = cli("run", "--flow", "ok.yaml", "--input-json", "1", "--input-yaml", "2", cwd=work)
    assert both.returncode == 2
    usage = cli("run", "--flow", "ok.yaml", "--max-concurrent", "0", cwd=work)
    assert usage.returncode == 2


def test_run_batch_jsonl_in_input_order(work: Path) -> None:
    lines = ['{"v": 3}', '{"v": 2}', '{"v": 1}', '{"v": 1}']
    (work / "inputs.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = cli("run", "--flow", "ok.yaml", "--inputs", "inputs.jsonl", "--max-concurrent", "2", cwd=work)
    assert proc.returncode == 1  # one item failed
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert results == [
        {"outcome": "success", "result": {"r": 3.0}},
        {"outcome": "failed", "error": {"code": 8, "message": "two is bad"}},
        {"outcome": "success", "result": {"r": "one"}},
        {"outcome": "success", "result": {"r": "one"}},
    ]
    out = work / "results.jsonl"
    to_file = cli("run", "--flow", "ok.yaml", "--inputs", "inputs.jsonl", "--output", str(out), cwd=work)
    assert to_file.returncode == 1 and to_file.stdout == ""
    assert [json.loads(line) for line in out.read_text().splitlines()] == results


def test_run_batch_blank_line_is_an_error(work: Path) -> None:
    (work / "blank.jsonl").write_text('{"v": 1}\n\n{"v": 1}\n', encoding="utf-8")
    proc = cli("run", "--flow", "ok.yaml", "--inputs", "blank.jsonl", cwd=work)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "blank.jsonl" in proc.stderr and "line 2" in proc.stderr


def test_run_variables(work: Path) -> None:
    default = cli("run", "--flow", "vars.yaml", cwd=work)
    assert one_json(default) == {"outcome": "success", "result": {"g": "hello", "n": 0}}
    given = cli("run", "--flow", "vars.yaml", "--variables-json", '{"greeting": "hi", "n": 3}', cwd=work)
    assert given.returncode == 0 and one_json(given) == {"outcome": "success", "result": {"g": "hi", "n": 3}}
    env = cli("run", "--flow", "vars.yaml", "--env-variables", cwd=work, env={"STEPFLOW_VAR_N": "7"})
    assert one_json(env) == {"outcome": "success", "result": {"g": "hello", "n": 7}}
    invalid = cli("run", "--flow", "vars.yaml", "--variables-json", '{"n": "x"}', cwd=work)
    assert invalid.returncode == 2 and invalid.stdout == ""
    assert "Variable 'n'" in invalid.stderr and "integer" in invalid.stderr


def test_run_overrides(work: Path) -> None:
    patch = '{"s": {"value": {"input": {"v": 2}}}}'
    proc = cli("run", "--flow", "ok.yaml", "--input-json", '{"v": 1}', "--overrides-json", patch, cwd=work)
    assert proc.returncode == 1
    assert one_json(proc) == {"outcome": "failed", "error": {"code": 8, "message": "two is bad"}}
    # several sources apply in order: the last one wins
    layered = cli(
        "run",
        "--flow",
        "ok.yaml",
        "--input-json",
        '{"v": 1}',
        "--overrides-json",
        patch,
        "--overrides-yaml",
        "s: {value: {input: {v: 1}}}",
        cwd=work,
    )
    assert layered.returncode == 0 and one_json(layered) == {"outcome": "success", "result": {"r": "one"}}
    unknown = cli("run", "--flow", "ok.yaml", "--overrides-json", '{"nope": {"value": {}}}', cwd=work)
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert "unknown step 'nope'" in unknown.stderr


def test_run_config_errors_exit_2_without_traceback(work: Path) -> None:
    (work / "bad_type.yml").write_text(
        'plugins:\n  x: { type: nosuchtype }\nroutes:\n  "/x/{*c}": [ { plugin: x } ]\n', encoding="utf-8"
    )
    proc = cli("run", "--flow", "ok.yaml", "--config", "bad_type.yml", cwd=work)
    assert proc.returncode == 2 and proc.stdout == ""
    [line] = error_lines(proc)
    assert "nosuchtype" in line and "$.plugins.x.type" in line
    missing = cli("run", "--flow", "ok.yaml", "--config", "absent.yml", cwd=work)
    assert missing.returncode == 2 and "absent.yml" in missing.stderr


# -- validate -----------------------------------------------------------------------------------------
def test_validate_exit_codes_and_output(work: Path) -> None:
    ok = cli("validate", "--flow", "ok.yaml", cwd=work)
    assert ok.returncode == 0 and ok.stdout == ""
    assert "0 error(s)" in ok.stderr
    fwd = cli("validate", "--flow", "forward.yaml", cwd=work)
    assert fwd.returncode == 1
    assert "$.steps[0].input" in fwd.stderr and "undefinedStepReference" in fwd.stderr
    warn = cli("validate", "--flow", "warnings.yaml", cwd=work)
    assert warn.returncode == 0 and "missingFlowName" in warn.stderr and "unknownField" in warn.stderr
    bad = cli("validate", "--flow", "malformed.yaml", cwd=work)
    assert bad.returncode == 2 and "malformed.yaml" in bad.stderr


def test_validate_json_format(work: Path) -> None:
    proc = cli("validate", "--flow", "route_miss.yaml", "--format", "json", cwd=work)
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["numError"] == 1 and report["numFatal"] == 0
    [diag] = report["diagnostics"]
    assert diag["kind"] == "invalidComponent" and diag["code"] == 2500 and diag["level"] == "error"
    assert diag["path"] == "$.steps[0].component"


# -- list-components / schema ---------------------------------------------------------------------------
def test_list_components_json(work: Path) -> None:
    proc = cli("list-components", "--format", "json", cwd=work)
    assert proc.returncode == 0, proc.stderr
    comps = {c["component"]: c for c in json.loads(proc.stdout)["components"]}
    assert comps["/mock/echo"]["plugin"] == "mock"
    assert comps["/builtin/eval"]["plugin"] == "builtin"
    assert {
        f"/builtin/{n}"
        for n in ("put_blob", "get_blob", "eval", "map", "iterate", "load_file", "create_messages", "openai")
    } <= set(comps)
    assert "input_schema" in comps["/builtin/eval"]
    no_schemas = json.loads(cli("list-components", "--format", "json", "--no-schemas", cwd=work).stdout)
    assert all("input_schema" not in c for c in no_schemas["components"])


def test_schema_is_a_valid_json_schema_that_accepts_flows(work: Path) -> None:
    import jsonschema
    import yaml

    proc = cli("schema", cwd=work)
    assert proc.returncode == 0
    schema = json.loads(proc.stdout)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema)
    assert list(validator.iter_errors(yaml.safe_load(OK_FLOW))) == []


# -- test ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mock_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mock")
    shutil.copytree(UPSTREAM / "tests" / "mock", root / "mock")
    return root


def test_test_command_passes_on_upstream_mock_flows(mock_tree: Path) -> None:
    proc = cli("test", "mock", cwd=mock_tree)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "=== Test Summary ===" in proc.stdout
    assert "Failed: 0" in proc.stdout and "Files errored: 0" in proc.stdout
    assert "Running Test Case" in proc.stdout


def test_test_command_exit_1_on_failing_case_and_missing_file(mock_tree: Path) -> None:
    broken = mock_tree / "broken"
    broken.mkdir(exist_ok=True)
    shutil.copy(mock_tree / "mock" / "stepflow-config.yml", broken / "stepflow-config.yml")
    text = (mock_tree / "mock" / "basic.yaml").read_text(encoding="utf-8")
    assert "output: b" in text or "result:" in text
    (broken / "basic.yaml").write_text(
        text.replace("outcome: success", "outcome: failed", 1), encoding="utf-8"
    )
    proc = cli("test", "broken", cwd=mock_tree)
    assert proc.returncode == 1
    assert "Failed: 0" not in proc.stdout
    only_passing = cli("test", "mock/basic.yaml", "--case", "nonexistent-case-name", cwd=mock_tree)
    assert only_passing.returncode == 0 and "Total test cases: 0" in only_passing.stdout
    missing = cli("test", "does-not-exist.yaml", cwd=mock_tree)
    assert missing.returncode == 1 and "Missing file: does-not-exist.yaml" in missing.stdout


def test_test_command_errored_file_exits_1(mock_tree: Path) -> None:
    errored = mock_tree / "errored"
    errored.mkdir(exist_ok=True)
    (errored / "f.yaml").write_text(
        "schema: https://stepflow.org/schemas/v1/flow.json\nsteps:\n  - id: a\n    component: /x\n"
        "    onError: {action: explode}\ntest:\n  cases:\n    - {name: c, input: {}}\n",
        encoding="utf-8",
    )
    proc = cli("test", "errored", cwd=mock_tree)
    assert proc.returncode == 1
    assert "Files errored: 1" in proc.stdout and "$.steps[0].onError.action" in proc.stdout


# -- help ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ([], ["run", "test", "validate", "list-components", "schema", "serve"]),
        (
            ["run"],
            [
                "--flow",
                "--inputs",
                "--input-json",
                "--variables-json",
                "--overrides-json",
                "--max-concurrent",
            ],
        ),
        (["test"], ["--case", "--update", "--diff", "--config"]),
        (["validate"], ["--flow", "--config"]),
        (["list-components"], ["--format", "--config"]),
        (["schema"], ["Usage"]),
        (["serve"], ["--config", "--port", "--host"]),
        (["plugins", "list"], ["Usage"]),
    ],
)
def test_help(work: Path, command: list[str], expected: list[str]) -> None:
    proc = cli(*command, "--help", cwd=work)
    assert proc.returncode == 0, proc.stderr
    for word in expected:
        assert word in proc.stdout, (word, proc.stdout)
