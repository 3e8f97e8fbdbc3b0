#!/usr/bin/env bash
# The whole test suite: the Rust tests, schemathesis against the OpenAPI document, the
# TypeScript client against `tether demo`, then the Connect page in a real browser (Debian's
# chromium driven by playwright-core against `tether demo` on loopback; see e2e/; the popup
# helper of the TypeScript client too).
# Never downloads a browser: chromium must already be at /usr/bin/chromium (CHROMIUM_PATH).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo tests"
cargo test --workspace --locked

cargo build --locked -p tether-cli

echo "== schemathesis: the API against its own OpenAPI document (tether demo)"
bash scripts/schemathesis.sh

echo "== mcp: the official MCP Python SDK against tether demo (e2e/mcp: agent tokens, then OAuth)"
mcp_venv=${CARGO_TARGET_DIR:-target}/mcp-venv
if ! "$mcp_venv/bin/python" -c 'import mcp' 2>/dev/null; then
  python3 -m venv "$mcp_venv"
  "$mcp_venv/bin/pip" install --quiet --disable-pip-version-check -r e2e/mcp/requirements.txt
fi
TETHER_BIN=${CARGO_TARGET_DIR:-target}/debug/tether "$mcp_venv/bin/python" e2e/mcp/agents.py
TETHER_BIN=${CARGO_TARGET_DIR:-target}/debug/tether "$mcp_venv/bin/python" e2e/mcp/oauth_flow.py
echo "== mcp: the official conformance suite (e2e/mcp/conformance.py; pinned in e2e/mcp/package.json)"
if [ ! -d e2e/mcp/node_modules/@modelcontextprotocol/conformance ]; then
  (cd e2e/mcp && npm ci --no-audit --no-fund)
fi
TETHER_BIN=${CARGO_TARGET_DIR:-target}/debug/tether "$mcp_venv/bin/python" e2e/mcp/conformance.py

echo "== TypeScript client (against tether demo)"
(
  cd clients/typescript
  if [ ! -d node_modules/typescript ]; then npm ci --no-audit --no-fund; fi
  npm test
)

echo "== browser tests"
if [ ! -d e2e/node_modules/playwright-core ]; then
  (cd e2e && npm ci --no-audit --no-fund)
fi
# The tests fail, rather than skip, when chromium or the binary is missing.
cd e2e
node --test tests/
