#!/usr/bin/env bash
# Conformance: the official Python DAP client (instructure-dap-client 2.3.1) against our DAP sandbox.
#
# Creates a virtualenv, installs the client from PyPI, starts the sandbox binary, runs
# `dap list`, `dap schema`, `dap snapshot`, `dap incremental`, then `dap initdb`, a sandbox mutation
# and `dap syncdb` into a throwaway PostgreSQL, and compares each replicated table with the
# sandbox's expected content. Exits non-zero on any failure or difference.
#
# Needs: python3 with venv, PostgreSQL server binaries (/usr/lib/postgresql/*/bin), cargo.
# Environment: DAP_VENV (default target/conformance-venv), KEEP=1 keeps the work directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

venv=${DAP_VENV:-$root/target/conformance-venv}
work=$(mktemp -d /tmp/dap-conformance.XXXXXX)
sandbox_pid=""
pg_bin=""
pg_data="$work/pg"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  [ -n "$sandbox_pid" ] && kill "$sandbox_pid" 2>/dev/null || true
  [ -n "$pg_bin" ] && [ -d "$pg_data" ] && as_pg "$pg_bin/pg_ctl" -D "$pg_data" -m immediate stop >/dev/null 2>&1 || true
  [ "${KEEP:-0}" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT
say() { printf '[conformance] %s\n' "$*"; }

say "virtualenv $venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check "instructure-dap-client[postgresql]==2.3.1"
dap() { (cd "$work" && "$venv/bin/dap" --no-tracking --non-interactive --loglevel warning "$@"); }

say "building and starting the sandbox"
cargo build -q -p sandbox
# Jobs complete on creation (pacing 0,0): the official client polls every 5 s otherwise.
"$root/target/debug/sandbox" --services dap --dap-pacing 0 0 >"$work/sandbox.json" 2>"$work/sandbox.log" &
sandbox_pid=$!
for _ in $(seq 100); do [ -s "$work/sandbox.json" ] && break; sleep 0.1; done
[ -s "$work/sandbox.json" ] || { say "sandbox did not start"; cat "$work/sandbox.log"; exit 1; }
base=$("$venv/bin/python" -c 'import json,sys;print(json.load(open(sys.argv[1]))["dap"]["base_url"])' "$work/sandbox.json")
export DAP_API_URL=$base
export DAP_CLIENT_ID=$("$venv/bin/python" -c 'import json,sys;print(json.load(open(sys.argv[1]))["dap"]["credentials"]["client_id"])' "$work/sandbox.json")
export DAP_CLIENT_SECRET=$("$venv/bin/python" -c 'import json,sys;print(json.load(open(sys.argv[1]))["dap"]["credentials"]["client_secret"])' "$work/sandbox.json")

say "dap list"
tables=$(dap list --namespace canvas)
echo "$tables" | grep -qx users || { say "users missing from: $tables"; exit 1; }

say "dap schema"
dap schema --namespace canvas --table users --output-directory out
ls "$work"/out/users_schema_version_*.json >/dev/null

say "dap snapshot (jsonl, tsv, csv)"
for f in jsonl tsv csv; do
  dap snapshot --namespace canvas --table users --format "$f" --output-directory "out/snap-$f"
  ls "$work/out/snap-$f"/job_*/*."$f".gz >/dev/null
done

say "dap incremental"
dap incremental --namespace canvas --table users --format tsv --since 2024-01-01T00:00:00Z --output-directory out/incr
ls "$work"/out/incr/job_*/*.tsv.gz >/dev/null

say "starting a throwaway PostgreSQL"
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
[ -x "$pg_bin/initdb" ] || { say "no PostgreSQL server binaries found"; exit 1; }
mkdir -p "$pg_data" "$work/sock"
[ "$(id -u)" = 0 ] && chown -R postgres "$work" && chmod 755 "$work"
as_pg "$pg_bin/initdb" -D "$pg_data" -U postgres -A trust >/dev/null
port=$("$venv/bin/python" -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
as_pg "$pg_bin/pg_ctl" -D "$pg_data" -l "$work/pg.log" -w \
  -o "-p $port -k $work/sock -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
export DAP_CONNECTION_STRING="postgresql://postgres@127.0.0.1:$port/postgres"

compare() {
  "$venv/bin/python" "$root/sandbox/conformance/compare_table.py" \
    "$DAP_CONNECTION_STRING" "$base" canvas "$1"
}

say "dap initdb"
dap initdb --namespace canvas --table users,courses
compare users
compare courses

say "mutating the sandbox, then dap syncdb"
for t in users courses; do
  curl -fsS -X POST -H 'content-type: application/json' -d '{}' \
    "$base/__sandbox/dap/tables/canvas/$t/mutate" >/dev/null
done
dap syncdb --namespace canvas --table users,courses
compare users
compare courses

say "all checks passed"
