#!/usr/bin/env bash
# scripts/setup.sh: one idempotent command that makes a fresh Debian machine ready to develop and
# test stepflow-gateway.
#
#   scripts/setup.sh              system packages (if missing), .venv, and the real peers in .peers/
#   scripts/setup.sh --no-peers   system packages (if missing) and .venv only
#
# What it does (each part is skipped when already done, so a re-run takes seconds):
#   1. apt-get installs what is missing of: python3 + python3-venv, nodejs, npm, git, curl,
#      util-linux (unshare, runuser), iproute2 (ip), postgresql (initdb/pg_ctl for the Postgres
#      state store tests; found under /usr/lib/postgresql/<ver>/bin) and nats-server.
#      apt-get runs only when something is missing.
#   2. .venv with the project installed editable plus the dev extras (pip install -e '.[dev]').
#      Re-done only when pyproject.toml changed (hash kept in .venv/.setup-pyproject).
#   3. The peers of the spec's peers.md, one virtualenv each, under .peers/ (git-ignored):
#      sf07 (stepflow-py[http]==0.7.0), sf092 (stepflow-py[http]==0.9.2),
#      orch090 (stepflow-orchestrator==0.9.0, binary made executable), orch013
#      (stepflow-orchestrator==0.13.0, the durable-runs anchor of benchmarks/journal.py), mcp-time
#      (mcp-server-time==2026.10.19), npm (server-everything, -filesystem, -memory @2026.8.31),
#      plus .peers/loopback.cjs and .peers/run-upstream.sh.
#      A peer is skipped when .peers/.installed-<name> holds the same spec, or when an existing
#      install (e.g. one made by hand) already has the pinned versions.
# Caches: pip in .peers/cache/pip, npm in .peers/cache/npm.
# Progress goes to stderr; the exit status is non-zero if anything failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PEERS="$ROOT/.peers"
WITH_PEERS=1

for arg in "$@"; do
  case "$arg" in
    --no-peers) WITH_PEERS=0 ;;
    -h | --help)
      sed -n '2,24p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
      exit 0
      ;;
    *)
      echo "setup.sh: unknown option '$arg' (try --help)" >&2
      exit 2
      ;;
  esac
done

say() { printf 'setup: %s\n' "$*" >&2; }
die() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }

mkdir -p "$PEERS/cache/pip" "$PEERS/cache/npm"
export PIP_CACHE_DIR="$PEERS/cache/pip"
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_NO_INPUT=1
export npm_config_cache="$PEERS/cache/npm"
export npm_config_audit=false
export npm_config_fund=false
export npm_config_update_notifier=false

# --- 1. system packages ---------------------------------------------------------------------
missing=()
if ! command -v python3 >/dev/null 2>&1; then
  missing+=(python3 python3-venv)
elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v git >/dev/null 2>&1 || missing+=(git)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
# Debian keeps the server binaries off PATH, under /usr/lib/postgresql/<ver>/bin.
have_pg_bin() {
  command -v "$1" >/dev/null 2>&1 && return 0
  compgen -G "/usr/lib/postgresql/*/bin/$1" >/dev/null
}
{ have_pg_bin initdb && have_pg_bin pg_ctl && have_pg_bin postgres; } || missing+=(postgresql)
command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)

if ((${#missing[@]})); then
  if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
  elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo)
  else
    die "missing system packages (${missing[*]}); run as root or install them: apt-get install ${missing[*]}"
  fi
  say "installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # The tests start throwaway PostgreSQL servers of their own: don't let the package create and
  # start a system cluster on port 5432 (an existing createcluster.conf is left alone).
  if [[ " ${missing[*]} " == *" postgresql "* ]] && [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    "${SUDO[@]}" mkdir -p /etc/postgresql-common
    printf 'create_main_cluster = false\n' | "${SUDO[@]}" tee /etc/postgresql-common/createcluster.conf >/dev/null
  fi
  "${SUDO[@]}" apt-get update -qq >&2
  # confold: keep a conffile written above (createcluster.conf) without asking.
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" >&2
else
  say "system packages: present"
fi

python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || die "python3 >= 3.11 is required (found $(python3 --version 2>&1))"
node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$node_major" -lt 20 ]; then
  say "warning: node >= 20 is needed by the npm MCP peers (found $(node --version 2>/dev/null || echo none))"
fi

# --- 2. the project's virtualenv ---------------------------------------------------------------
venv_ok() { [ -x "$1/bin/python" ] && "$1/bin/python" -c 'pass' >/dev/null 2>&1; }

VENV="$ROOT/.venv"
if ! venv_ok "$VENV"; then
  say "creating .venv"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
fi
want_hash="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
have_hash="$(cat "$VENV/.setup-pyproject" 2>/dev/null || true)"
if [ "$want_hash" = "$have_hash" ] && "$VENV/bin/python" -c 'import stepflow_gateway, pytest' >/dev/null 2>&1; then
  say ".venv: up to date"
else
  say ".venv: pip install -e '.[dev]'"
  "$VENV/bin/python" -m pip install -q -e "$ROOT[dev]" >&2
  printf '%s\n' "$want_hash" >"$VENV/.setup-pyproject"
fi
# An editable install compiles nothing: byte-compile the package now (as a wheel install would), so
# the first commands start as fast as later ones, even where PYTHONDONTWRITEBYTECODE is set.
env -u PYTHONDONTWRITEBYTECODE "$VENV/bin/python" -m compileall -q "$ROOT/src/stepflow_gateway" >/dev/null

if [ "$WITH_PEERS" -eq 0 ]; then
  say "done (--no-peers)"
  exit 0
fi

# --- 3. peers ----------------------------------------------------------------------------------
mkdir -p "$PEERS"

marker_ok() { [ "$(cat "$PEERS/.installed-$1" 2>/dev/null || true)" = "$2" ]; }
mark() { printf '%s\n' "$2" >"$PEERS/.installed-$1"; }

# py_versions_ok VENV "dist==ver" ...: every distribution is installed at exactly that version.
py_versions_ok() {
  local venv="$1"
  shift
  venv_ok "$venv" || return 1
  "$venv/bin/python" - "$@" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import PackageNotFoundError, version

for spec in sys.argv[1:]:
    name, want = spec.split("==")
    name = name.split("[")[0]
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
}

# py_peer NAME "requirement" ...: one virtualenv per peer, pinned requirements.
py_peer() {
  local name="$1"
  shift
  local venv="$PEERS/$name" spec="$*"
  if marker_ok "$name" "$spec" && venv_ok "$venv"; then
    say "peer $name: installed ($spec)"
    return 0
  fi
  if py_versions_ok "$venv" "$@"; then
    say "peer $name: found existing install ($spec)"
    mark "$name" "$spec"
    return 0
  fi
  say "peer $name: installing $spec"
  venv_ok "$venv" || { rm -rf "$venv"; python3 -m venv "$venv"; }
  "$venv/bin/python" -m pip install -q "$@" >&2
  py_versions_ok "$venv" "$@" || die "peer $name: $spec did not install as pinned"
  mark "$name" "$spec"
}

py_peer sf07 "stepflow-py[http]==0.7.0"
py_peer sf092 "stepflow-py[http]==0.9.2"
py_peer orch090 "stepflow-orchestrator==0.9.0"
py_peer orch013 "stepflow-orchestrator==0.13.0"
py_peer mcp-time "mcp-server-time==2026.10.19"

server_bin="$("$PEERS/orch090/bin/python" -c \
  'import pathlib, stepflow_orchestrator as m; print(pathlib.Path(m.__file__).parent / "bin" / "stepflow-server")')"
[ -f "$server_bin" ] || die "peer orch090: binary not found at $server_bin"
[ -x "$server_bin" ] || chmod +x "$server_bin"
# upstream 0.13 (benchmarks/journal.py): binds every interface too; run it only in a private netns
server013="$("$PEERS/orch013/bin/python" -c \
  'import pathlib, stepflow_orchestrator as m; print(pathlib.Path(m.__file__).parent / "bin" / "stepflow-server")')"
[ -f "$server013" ] || die "peer orch013: binary not found at $server013"
[ -x "$server013" ] || chmod +x "$server013"

# npm MCP servers: one local install, launched with node directly.
NPM_VERSION="2026.8.31"
NPM_PKGS=(server-everything server-filesystem server-memory)
npm_spec="$(printf '@modelcontextprotocol/%s@'"$NPM_VERSION"' ' "${NPM_PKGS[@]}")"
npm_spec="${npm_spec% }"
npm_versions_ok() {
  local p v
  for p in "${NPM_PKGS[@]}"; do
    v="$(node -p "require('$PEERS/npm/node_modules/@modelcontextprotocol/$p/package.json').version" 2>/dev/null || true)"
    [ "$v" = "$NPM_VERSION" ] || return 1
  done
}
if marker_ok npm "$npm_spec" && npm_versions_ok; then
  say "peer npm: installed ($npm_spec)"
elif npm_versions_ok; then
  say "peer npm: found existing install ($npm_spec)"
  mark npm "$npm_spec"
else
  say "peer npm: installing $npm_spec"
  mkdir -p "$PEERS/npm"
  [ -f "$PEERS/npm/package.json" ] || printf '{"name":"stepflow-gateway-peers","private":true}\n' >"$PEERS/npm/package.json"
  # shellcheck disable=SC2086
  (cd "$PEERS/npm" && npm install --silent --save-exact $npm_spec >&2)
  npm_versions_ok || die "peer npm: $npm_spec did not install as pinned"
  mark npm "$npm_spec"
fi

# .peers/loopback.cjs (peers.md §5.6): make host-less listen() calls bind 127.0.0.1 only.
cat >"$PEERS/loopback.cjs.tmp" <<'JS'
// Preload for node servers that call listen(port) without a host: bind 127.0.0.1 instead of
// every interface. Use: NODE_OPTIONS="--require $PEERS/loopback.cjs".
const net = require("net");
const originalListen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const head = args[0];
  const isPort = typeof head === "number" || (typeof head === "string" && /^\d+$/.test(head));
  if (isPort) {
    const callback = args.find((a) => typeof a === "function");
    return originalListen.call(this, { port: Number(head), host: "127.0.0.1" }, callback);
  }
  if (head && typeof head === "object" && !head.path && !head.host) {
    args[0] = Object.assign({}, head, { host: "127.0.0.1" });
  }
  return originalListen.apply(this, args);
};
JS
mv "$PEERS/loopback.cjs.tmp" "$PEERS/loopback.cjs"

# .peers/run-upstream.sh (peers.md §4): upstream stepflow-server inside a private network
# namespace, plus one client command run in the same namespace.
cat >"$PEERS/run-upstream.sh.tmp" <<'SH'
#!/bin/sh
# usage: unshare -rn .peers/run-upstream.sh CONFIG.yml CLIENT_CMD [ARGS...]   (as root: unshare -n)
# Starts upstream stepflow-server 0.9.0 on 127.0.0.1:7840 inside the namespace (it binds 0.0.0.0,
# so it must never run outside one), waits for /api/v1/health, runs CLIENT_CMD, stops the server.
set -eu
PEERS="${PEERS:-$(cd "$(dirname "$0")" && pwd)}"
if [ -z "${STEPFLOW_SERVER:-}" ]; then
  STEPFLOW_SERVER="$(ls "$PEERS"/orch090/lib/python3*/site-packages/stepflow_orchestrator/bin/stepflow-server 2>/dev/null | head -n 1)"
fi
[ -x "${STEPFLOW_SERVER:-}" ] || { echo "run-upstream.sh: stepflow-server not found; run scripts/setup.sh" >&2; exit 1; }
[ "$#" -ge 2 ] || { echo "usage: $0 CONFIG.yml CLIENT_CMD [ARGS...]" >&2; exit 2; }
ip link set lo up
mkdir -p "$PEERS/upstream-logs"
"$STEPFLOW_SERVER" --port 7840 --config "$1" --log-destination file \
  --log-file "$PEERS/upstream-logs" >/dev/null &
SRV=$!
trap 'kill "$SRV" 2>/dev/null; wait "$SRV" 2>/dev/null || true' EXIT
n=0
until curl -fsS http://127.0.0.1:7840/api/v1/health >/dev/null 2>&1; do
  n=$((n + 1))
  [ "$n" -le 100 ] || { echo "run-upstream.sh: server did not start (see $PEERS/upstream-logs)" >&2; exit 1; }
  sleep 0.1
done
shift
"$@"
SH
chmod +x "$PEERS/run-upstream.sh.tmp"
mv "$PEERS/run-upstream.sh.tmp" "$PEERS/run-upstream.sh"

say "done: peers in $PEERS"
