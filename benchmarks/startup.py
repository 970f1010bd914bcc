"""Start-up time of ``stepflow-gateway run``: median wall time of N bounded runs (issue 2: <= 250 ms).

    .venv/bin/python benchmarks/startup.py                       # examples/hello.yaml, 10 runs
    .venv/bin/python benchmarks/startup.py --runs 20 --flow examples/branching.yaml \\
        --input examples/branching-input.json
    .venv/bin/python benchmarks/startup.py --src /tmp/old/src    # another checkout, for before/after
    .venv/bin/python benchmarks/startup.py --no-bytecode         # compile every module every run

Each run is a fresh ``python -c 'from stepflow_gateway.cli import main; main()' run ...`` process with
a timeout. By default the bytecode cache goes to a private directory (``PYTHONPYCACHEPREFIX``) and one
untimed warm-up run fills it, which is what an installed package sees; ``--no-bytecode`` measures
the compile-everything case (``PYTHONDONTWRITEBYTECODE=1`` without a cache). Reported: median, min
and max wall time, median CPU time (user + sys) — less sensitive than wall time to a busy shared
machine — and the number of modules one run imports (``-X importtime``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CODE = "from stepflow_gateway.cli import main; main()"


def _env(src: Path | None, cache: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONPYCACHEPREFIX", None)
    if cache is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env["PYTHONPYCACHEPREFIX"] = cache
    if src is not None:
        env["PYTHONPATH"] = str(src) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _one(cmd: list[str], env: dict[str, str], timeout: float) -> tuple[float, float]:
    """(wall s, cpu s) of one run; raises if it fails or overruns."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = start + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            proc.wait()
            raise SystemExit(f"a run took longer than {timeout:g} s: {' '.join(cmd)}")
        time.sleep(0.0005)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"run failed (exit {proc.returncode}): {err.strip()[:2000]}")
    return wall, usage.ru_utime + usage.ru_stime


def _count_imports(cmd: list[str], env: dict[str, str], timeout: float) -> int:
    out = subprocess.run(
        [cmd[0], "-X", "importtime", *cmd[1:]],
        env=env,
        cwd=ROOT,
        capture_output=True,
        timeout=timeout,
        check=True,
    )
    return sum(
        1
        for line in out.stderr.decode(errors="replace").splitlines()
        if line.startswith("import time:") and "|" in line and "imported package" not in line
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--flow", default="examples/hello.yaml")
    ap.add_argument("--input", default="examples/hello-input.json")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--src", type=Path, help="import stepflow_gateway from this directory instead")
    ap.add_argument("--no-bytecode", action="store_true", help="no bytecode cache: compile every run")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds allowed per run")
    args = ap.parse_args()

    cmd = [args.python, "-c", CODE, "run", "--flow", args.flow]
    if args.input:
        cmd += ["--input", args.input]
    with tempfile.TemporaryDirectory(prefix="stepflow-startup-") as cache_dir:
        env = _env(args.src, None if args.no_bytecode else cache_dir)
        _one(cmd, env, args.timeout)  # warm-up: fills the bytecode cache and the OS page cache
        samples = [_one(cmd, env, args.timeout) for _ in range(args.runs)]
        imports = _count_imports(cmd, env, args.timeout)
    walls = sorted(w for w, _ in samples)
    cpus = [c for _, c in samples]
    print(
        f"stepflow-gateway run --flow {args.flow}"
        + (f" (src {args.src})" if args.src else "")
        + (" [no bytecode cache]" if args.no_bytecode else "")
    )
    print(
        f"  runs {args.runs}: median {statistics.median(walls) * 1000:.0f} ms wall "
        f"(min {walls[0] * 1000:.0f}, max {walls[-1] * 1000:.0f}), "
        f"median cpu {statistics.median(cpus) * 1000:.0f} ms, {imports} modules imported"
    )


if __name__ == "__main__":
    main()
