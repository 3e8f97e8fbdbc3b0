#!/usr/bin/env bash
# Fuzzes the HTTP API against its own OpenAPI document with schemathesis (from PyPI, pinned):
# `tether demo` on loopback, its API key, and these checks on every response: no server
# error, a documented status code and content type, a body that matches the schema.
#
#   scripts/schemathesis.sh                 # needs python3 (venv) and a built tether binary
#   MAX_EXAMPLES=50 scripts/schemathesis.sh
#
# The virtual environment is kept in target/ so a second run installs nothing. The demo is
# stopped by its pid when the run ends, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES=${MAX_EXAMPLES:-100}
target_dir=${CARGO_TARGET_DIR:-target}
bin=${TETHER_BIN:-$target_dir/debug/tether}
venv=$target_dir/schemathesis-venv

[ -x "$bin" ] || { echo "schemathesis: $bin is missing; run cargo build -p tether-cli" >&2; exit 1; }
if ! "$venv/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

work=$(mktemp -d)
demo_pid=
cleanup() {
  if [ -n "$demo_pid" ]; then kill "$demo_pid" 2>/dev/null || true; wait "$demo_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

RUST_LOG=warn "$bin" demo --listen 127.0.0.1:0 >"$work/demo.out" 2>"$work/demo.err" &
demo_pid=$!
for _ in $(seq 1 300); do
  grep -q '^TETHER_DEMO ' "$work/demo.out" 2>/dev/null && break
  kill -0 "$demo_pid" 2>/dev/null || { cat "$work/demo.err" >&2; exit 1; }
  sleep 0.1
done
info=$(grep '^TETHER_DEMO ' "$work/demo.out" | head -n 1 | cut -d' ' -f2-)
[ -n "$info" ] || { echo "schemathesis: tether demo did not start" >&2; cat "$work/demo.err" >&2; exit 1; }
base=$(printf '%s' "$info" | python3 -c 'import json,sys; print(json.load(sys.stdin)["base_url"])')
key=$(printf '%s' "$info" | python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])')

"$venv/bin/st" run "${base%/}/openapi.json" \
  --header "Authorization: Bearer $key" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --phases examples,coverage,fuzzing \
  --max-examples "$MAX_EXAMPLES" \
  --workers 2 \
  --warnings off
