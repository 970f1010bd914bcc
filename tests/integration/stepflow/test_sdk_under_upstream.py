"""A component server written with our SDK (``plugins/sfg_text``) gives the same results under the
upstream Rust ``stepflow-server`` 0.9.0 as under our runtime.

The server runs as a 0.9-style self-launching HTTP worker (``python -m sfg_text --http`` prints
``{"port": N}``) under both runtimes, from one config file in the 0.9.0 format (config.md §8.3):
absolute ``command``, the worker's whole environment in ``env`` (upstream gives children nothing
else, not even ``PATH``), no ``transport`` key. The flow uses three sfg_text components plus the two
that call back into the runtime for blobs (``/store`` → ``blobs/put``, ``/load`` → ``blobs/get``, SSE
callbacks under upstream), and the builtin ``get_blob`` reading what the SDK stored.

Upstream binds 0.0.0.0, so it runs only inside a private network namespace (``unshare -n`` as root,
``unshare -rn`` otherwise) holding nothing but loopback: this module re-executes itself there
(``--inside``), starts upstream, posts the flow and the runs over REST and prints the answers as
JSON. Our side runs the same flow file with ``Gateway.run`` in the test process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path.insert(0, str(REPO / "tests"))  # ``peers``

import peers  # noqa: E402

UPSTREAM_PORT = 7840
START_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 60.0
NAMESPACE_RUN_TIMEOUT_S = 150
OUR_RUN_TIMEOUT_S = 90

FLOW: dict[str, Any] = {
    "schema": "https://stepflow.org/schemas/v1/flow.json",
    "name": "sfg-text-under-upstream",
    "steps": [
        {
            "id": "shout",
            "component": "/text/transform",
            "input": {"text": {"$input": "text"}, "mode": {"$input": "mode"}},
        },
        {"id": "stats", "component": "/text/stats", "input": {"text": {"$input": "text"}}},
        {
            "id": "stored",
            "component": "/text/store",
            "input": {"text": {"$step": "shout", "path": "text"}},
        },
        {
            "id": "loaded",
            "component": "/text/load",
            "input": {"blob_id": {"$step": "stored", "path": "blob_id"}},
        },
        {
            "id": "raw",
            "component": "/builtin/get_blob",
            "input": {"blob_id": {"$step": "stored", "path": "blob_id"}},
        },
    ],
    "output": {
        "shouted": {"$step": "shout"},
        "stats": {"$step": "stats"},
        "stored_words": {"$step": "stored", "path": "words"},
        "blob_id": {"$step": "stored", "path": "blob_id"},
        "roundtrip": {"$step": "loaded", "path": "text"},
        "raw": {"$step": "raw", "path": "data"},
    },
}

INPUTS: list[Any] = [
    {"text": "the cat and the hat", "mode": "upper"},
    {"text": "Übermäßig große Grüße\nzweite Zeile — ünïcödé", "mode": "reverse"},
    {"text": "", "mode": "title"},
    {"text": "x", "mode": "bogus"},  # the SDK rejects the input: the step fails with its stack
]


def _config() -> dict[str, Any]:
    """The 0.9.0-style config both runtimes load (absolute paths only; the env is all the child gets)."""
    return {
        "plugins": {
            "builtin": {"type": "builtin"},
            "text": {
                "type": "stepflow",
                "command": sys.executable,
                "args": ["-m", "sfg_text", "--http"],
                "env": {"PYTHONPATH": str(REPO / "plugins"), "PYTHONDONTWRITEBYTECODE": "1"},
            },
        },
        "routes": {
            "/text/{*component}": [{"plugin": "text"}],
            "/builtin/{*component}": [{"plugin": "builtin"}],
        },
        "stateStore": {"type": "inMemory"},
    }


# -- the part that runs inside the namespace ----------------------------------------------------


def _http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:  # noqa: S310
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode("utf-8", "replace")


def _wait_healthy(base: str, proc: subprocess.Popen[bytes], logs: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"upstream exited with {proc.returncode}; log: {_tail(logs)}")
        try:
            with urllib.request.urlopen(f"{base}/api/v1/health", timeout=1) as r:  # noqa: S310
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"upstream not healthy within {START_TIMEOUT_S:g} s; log: {_tail(logs)}")


def _tail(logs: Path) -> str:
    texts = [p.read_text(errors="replace")[-1500:] for p in sorted(logs.glob("*")) if p.is_file()]
    return " | ".join(texts) or "(empty)"


def run_inside(config_path: Path, flow_path: Path) -> dict[str, Any]:
    """Start upstream on loopback in this (private) namespace, store the flow, run every input."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
    work = Path(tempfile.mkdtemp(prefix="sdk-upstream-"))
    logs = work / "logs"
    logs.mkdir()
    proc = subprocess.Popen(
        [
            str(peers.upstream_server_binary()),
            "--port",
            str(UPSTREAM_PORT),
            "--config",
            str(config_path),
            "--log-destination",
            "file",
            "--log-file",
            str(logs),
        ],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{UPSTREAM_PORT}"
        _wait_healthy(base, proc, logs)
        api = base + "/api/v1"
        flow = json.loads(flow_path.read_text())
        status, stored = _http("POST", api + "/flows", {"flow": flow})
        if status != 200 or not isinstance(stored, dict) or "flowId" not in stored:
            raise RuntimeError(f"POST /flows answered {status}: {stored}")
        runs = []
        for value in INPUTS:
            status, run = _http("POST", api + "/runs", {"flowId": stored["flowId"], "input": [value]})
            runs.append({"status": status, "body": run})
        return {"flowId": stored["flowId"], "runs": runs, "log": _tail(logs)}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        shutil.rmtree(work, ignore_errors=True)


# -- the test ------------------------------------------------------------------------------------


def _namespace_prefix() -> list[str] | None:
    """``unshare -n`` (root) or ``unshare -rn``, whichever works here; None when neither does."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    flags = (["-n"], ["-rn"]) if os.geteuid() == 0 else (["-rn"], ["-n"])
    for f in flags:
        try:
            ok = subprocess.run([unshare, *f, "true"], capture_output=True, timeout=30).returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = False
        if ok:
            return [unshare, *f]
    return None


@pytest.mark.peers
@pytest.mark.timeout(NAMESPACE_RUN_TIMEOUT_S + OUR_RUN_TIMEOUT_S + 30)
def test_sfg_text_worker_gives_equal_results_under_upstream_and_ours(tmp_path: Path) -> None:
    peers.require(peers.upstream_server_binary(), why="upstream stepflow-server 0.9.0")
    prefix = _namespace_prefix()
    if prefix is None:
        pytest.skip(
            "cannot create a private network namespace (unshare -n / unshare -rn); upstream binds "
            "0.0.0.0 and must not run outside one"
        )
    config_path = tmp_path / "stepflow-config.yml"
    config_path.write_text(yaml.safe_dump(_config(), sort_keys=False))
    flow_path = tmp_path / "flow.json"
    flow_path.write_text(json.dumps(FLOW))

    proc = subprocess.run(
        [*prefix, sys.executable, __file__, "--inside", str(config_path), str(flow_path)],
        capture_output=True,
        text=True,
        timeout=NAMESPACE_RUN_TIMEOUT_S,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, f"upstream side failed: {proc.stderr[-3000:]}"
    upstream = json.loads(proc.stdout)

    ours = anyio.run(_run_ours, config_path, flow_path)

    assert len(upstream["runs"]) == len(ours) == len(INPUTS)
    for value, up, mine in zip(INPUTS, upstream["runs"], ours, strict=True):
        assert up["status"] == 200, (value, up, upstream["log"])
        expected_status = "completed" if mine["outcome"] == "success" else "failed"
        assert up["body"]["status"] == expected_status, (value, up, upstream["log"])
        assert _without_backtraces(up["body"]["result"]) == mine, (value, up["body"]["result"], mine)
    # The results are what the components compute (not merely equal between two broken runtimes).
    first = ours[0]
    assert first["outcome"] == "success", first
    assert first["result"]["shouted"] == {"text": "THE CAT AND THE HAT", "mode": "upper"}
    assert first["result"]["stats"]["words"] == 5
    assert first["result"]["stats"]["top_words"] == [["the", 2], ["cat", 1], ["and", 1]]
    assert first["result"]["roundtrip"] == "THE CAT AND THE HAT"
    assert first["result"]["raw"] == {"text": "THE CAT AND THE HAT"}
    assert len(first["result"]["blob_id"]) == 64
    failed = ours[-1]
    assert failed["outcome"] == "failed", failed
    assert failed["error"]["data"]["stack"][-1]["error"].startswith(
        "component server error(-32003): Component execution failed: invalid input"
    ), failed


def _without_backtraces(result: Any) -> Any:
    """Upstream adds a Rust ``backtrace`` to each failure stack entry; the gateway never does."""
    if isinstance(result, dict):
        return {k: _without_backtraces(v) for k, v in result.items() if k != "backtrace"}
    if isinstance(result, list):
        return [_without_backtraces(v) for v in result]
    return result


async def _run_ours(config_path: Path, flow_path: Path) -> list[Any]:
    from stepflow_gateway.flow.load import load_flow
    from stepflow_gateway.gateway import Gateway

    results = []
    with anyio.fail_after(OUR_RUN_TIMEOUT_S):
        async with Gateway.from_config(config_path) as gw:
            flow = load_flow(flow_path)
            for value in INPUTS:
                results.append((await gw.run(flow, value)).to_json())
    return results


if __name__ == "__main__":  # the upstream side, inside the private network namespace
    if len(sys.argv) != 4 or sys.argv[1] != "--inside":
        sys.exit(f"usage: unshare -rn {sys.argv[0]} --inside CONFIG FLOW")
    try:
        report = run_inside(Path(sys.argv[2]), Path(sys.argv[3]))
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        sys.exit(f"upstream side: {exc}")
    sys.stdout.write(json.dumps(report) + "\n")
