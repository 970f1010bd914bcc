"""Send the same REST requests to stepflow-gateway and to upstream stepflow-server 0.9.0; report differences.

    .venv/bin/python benchmarks/rest_compare.py            # both servers in a private network namespace
    .venv/bin/python benchmarks/rest_compare.py --json     # the report as JSON on stdout
    .venv/bin/python benchmarks/rest_compare.py --urls http://127.0.0.1:7840 http://127.0.0.1:7841

Without ``--urls`` the script re-executes itself under ``unshare -rn`` (upstream binds 0.0.0.0, so
it must only run in a namespace that holds nothing but loopback; peers.md §4), brings ``lo`` up,
starts upstream on 7840 and ``stepflow-gateway serve`` on 7841 with the same builtin-only config
and an in-memory store, and drives both.

For every builtin-only upstream conformance flow (SOURCE.md class A, builtin plugin) it posts the
flow (without its ``test``/``examples`` sections, whose presence makes flow ids differ by design)
and runs each test case's input, then compares flow ids, HTTP statuses, run status and the
FlowResult. It also compares a few error statuses (unknown flow, malformed JSON, non-array input).
Exit status 0 when everything is equal, 1 otherwise, 2 when a server cannot be started.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2
import yaml

REPO = Path(__file__).resolve().parent.parent
CONFORMANCE = Path(os.environ.get("STEPFLOW_CONFORMANCE", "/work/shared/conformance/upstream"))
PEERS = Path(os.environ.get("PEERS") or REPO / ".peers")
FLOWS = [
    "tests/basic.yaml",
    "tests/builtins/blob_test.yaml",
    "tests/builtins/map_test.yaml",
    "tests/builtins/nested_eval.yaml",
    "tests/empty/empty_flow.yaml",
    "examples/eval/simple-eval.yaml",
    "examples/eval/test-builtins.yaml",
]
CONFIG = """\
plugins:
  builtin:
    type: builtin
routes:
  "/builtin/{*component}":
    - plugin: builtin
  "/{*component}":
    - plugin: builtin
stateStore:
  type: inMemory
"""
UPSTREAM_PORT, OURS_PORT = 7840, 7841
START_TIMEOUT_S = 30.0
REQUEST_TIMEOUT_S = 120.0


def upstream_binary() -> Path | None:
    env = os.environ.get("STEPFLOW_SERVER")
    if env:
        return Path(env)
    found = sorted(PEERS.glob("orch090/lib/python3*/site-packages/stepflow_orchestrator/bin/stepflow-server"))
    return found[-1] if found else None


def load_cases() -> list[tuple[str, dict[str, Any], list[tuple[str, Any]]]]:
    out = []
    for rel in FLOWS:
        doc = yaml.safe_load((CONFORMANCE / rel).read_text())
        cases = [
            (c.get("name", f"case{i}"), c.get("input"))
            for i, c in enumerate((doc.get("test") or {}).get("cases", []))
        ]
        flow = {k: v for k, v in doc.items() if k not in ("test", "examples")}
        out.append((rel, flow, cases))
    return out


def _json(r: httpx2.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return r.text


def drive(base: str) -> dict[str, Any]:
    """All requests against one server; the answers, keyed for comparison."""
    api = base.rstrip("/") + "/api/v1"
    out: dict[str, Any] = {}
    with httpx2.Client(base_url=api, timeout=REQUEST_TIMEOUT_S) as c:
        for rel, flow, cases in load_cases():
            stored = c.post("/flows", json={"flow": flow})
            body = _json(stored)
            fid = body.get("flowId") if isinstance(body, dict) else None
            out[f"{rel} store"] = {
                "status": stored.status_code,
                "flowId": fid,
                "stored": body.get("stored") if isinstance(body, dict) else None,
            }
            for name, value in cases:
                r = c.post("/runs", json={"flowId": fid, "input": [value]})
                rb = _json(r)
                out[f"{rel} run {name}"] = {
                    "status": r.status_code,
                    "runStatus": rb.get("status") if isinstance(rb, dict) else None,
                    "result": rb.get("result") if isinstance(rb, dict) else rb,
                }
            if cases:
                r = c.post("/runs", json={"flowId": fid, "input": [v for _, v in cases]})
                rb = _json(r)
                items = (
                    _json(c.get(f"/runs/{rb['runId']}/items"))
                    if isinstance(rb, dict) and "runId" in rb
                    else None
                )
                out[f"{rel} batch"] = {
                    "status": r.status_code,
                    "runStatus": rb.get("status") if isinstance(rb, dict) else None,
                    "results": [i.get("result") for i in items["items"]]
                    if isinstance(items, dict)
                    else items,
                }
        out["error unknown flow"] = {
            "status": c.post("/runs", json={"flowId": "1" * 64, "input": [{}]}).status_code
        }
        out["error malformed json"] = {
            "status": c.post(
                "/flows", content=b"{nope", headers={"content-type": "application/json"}
            ).status_code
        }
        out["error non-array input"] = {
            "status": c.post("/runs", json={"flowId": "1" * 64, "input": {}}).status_code
        }
        out["error unknown run"] = {"status": c.get("/runs/00000000-0000-0000-0000-000000000000").status_code}
    return out


def compare(upstream: dict[str, Any], ours: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for key in upstream.keys() | ours.keys():
        a, b = upstream.get(key), ours.get(key)
        rows.append({"request": key, "equal": a == b, "upstream": a, "ours": b})
    rows.sort(key=lambda r: r["request"])
    return rows


def wait_healthy(base: str, proc: subprocess.Popen[bytes] | None) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{base}: server exited with {proc.returncode}")
        try:
            if httpx2.get(f"{base}/api/v1/health", timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{base}: not healthy within {START_TIMEOUT_S} s")


def inside_namespace() -> dict[str, Any]:
    """Start both servers on loopback in this (private) namespace, compare, stop them."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
    binary = upstream_binary()
    if binary is None or not binary.exists():
        raise RuntimeError("upstream stepflow-server not found; run scripts/setup.sh")
    work = Path(tempfile.mkdtemp(prefix="rest-compare-"))
    cfg = work / "stepflow-config.yml"
    cfg.write_text(CONFIG)
    logs = work / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        up = subprocess.Popen(
            [
                str(binary),
                "--port",
                str(UPSTREAM_PORT),
                "--config",
                str(cfg),
                "--log-destination",
                "file",
                "--log-file",
                str(logs),
            ],
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(up)
        ours = subprocess.Popen(
            [
                str(REPO / ".venv" / "bin" / "stepflow-gateway"),
                "serve",
                "--config",
                str(cfg),
                "--port",
                str(OURS_PORT),
            ],
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=open(logs / "gateway.log", "wb"),
        )
        procs.append(ours)
        wait_healthy(f"http://127.0.0.1:{UPSTREAM_PORT}", up)
        wait_healthy(f"http://127.0.0.1:{OURS_PORT}", ours)
        rows = compare(drive(f"http://127.0.0.1:{UPSTREAM_PORT}"), drive(f"http://127.0.0.1:{OURS_PORT}"))
        return {"rows": rows, "equal": all(r["equal"] for r in rows)}
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=5)
        shutil.rmtree(work, ignore_errors=True)


def render(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=2, default=str))
        return
    for r in report["rows"]:
        mark = "same" if r["equal"] else "DIFF"
        print(f"{mark}  {r['request']}")
        if not r["equal"]:
            print(f"      upstream: {json.dumps(r['upstream'], default=str)[:400]}")
            print(f"      ours:     {json.dumps(r['ours'], default=str)[:400]}")
    same = sum(1 for r in report["rows"] if r["equal"])
    print(f"{same}/{len(report['rows'])} requests gave equal answers")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--urls", nargs=2, metavar=("UPSTREAM", "OURS"), help="compare two running servers")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    try:
        if a.urls:
            rows = compare(drive(a.urls[0]), drive(a.urls[1]))
            report = {"rows": rows, "equal": all(r["equal"] for r in rows)}
        elif a.inside:
            report = inside_namespace()
        else:
            cmd = ["unshare", "-rn", sys.executable, str(Path(__file__).resolve()), "--inside", "--json"]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if proc.returncode not in (0, 1):
                sys.stderr.write(proc.stderr)
                return 2
            report = json.loads(proc.stdout)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"rest_compare: {exc}", file=sys.stderr)
        return 2
    render(report, a.json)
    return 0 if report["equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
