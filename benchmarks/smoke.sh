#!/bin/sh
# Seconds-long smoke run of the side-by-side harness (CI): both runtimes, three flows, tiny counts.
# It checks that the harness, both servers and the report work; it never asserts speed.
# usage: benchmarks/smoke.sh [OUTPUT.md]   (default: print the report on stdout)
set -eu
HERE="$(cd "$(dirname "$0")" && pwd)"
PY="${STEPFLOW_BENCH_PYTHON:-$HERE/../.venv/bin/python}"
if [ "$#" -ge 1 ]; then
  exec "$PY" "$HERE/harness.py" --smoke --output "$1"
fi
exec "$PY" "$HERE/harness.py" --smoke
