// The browser tests' harness: starts `tether demo` (gateway + emulated CRMs on loopback), a tiny
// "app" on loopback (the return URL, the popup opener, the logo), and Debian's chromium through
// playwright-core. Nothing here downloads a browser or reaches beyond 127.0.0.1.
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { chromium } = require('playwright-core');

const ROOT = path.resolve(__dirname, '..', '..');
// Where cargo put the binary: CARGO_TARGET_DIR when set, as cargo itself does.
const TETHER_BIN =
  process.env.TETHER_BIN ||
  path.join(process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target'), 'debug', 'tether');
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
// The TypeScript client's build (`npm run build` in clients/typescript).
const CLIENT_DIST = path.join(ROOT, 'clients', 'typescript', 'dist');
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/// Starts `tether demo` and resolves once it printed its `TETHER_DEMO {json}` line.
/// Everything it logs (stderr) is kept, so tests can look for a reference code in it.
function startDemo(extraArgs = []) {
  if (!fs.existsSync(TETHER_BIN)) {
    throw new Error(`${TETHER_BIN} is missing: run \`cargo build -p tether-cli\` first`);
  }
  const args = ['demo', '--listen', '127.0.0.1:0', ...extraArgs];
  const child = spawn(TETHER_BIN, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: 'info,sqlx=warn', NO_COLOR: '1' },
  });
  let logs = '';
  child.stderr.on('data', (chunk) => { logs += chunk.toString(); });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGTERM');
      reject(new Error(`tether demo printed no TETHER_DEMO line within 30 s; stderr:\n${logs}`));
    }, 30_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`tether demo exited with ${code} before it was ready; stderr:\n${logs}`));
    });
    const lines = readline.createInterface({ input: child.stdout });
    lines.on('line', (line) => {
      if (!line.startsWith('TETHER_DEMO ')) return;
      clearTimeout(timer);
      const info = JSON.parse(line.slice('TETHER_DEMO '.length));
      resolve({
        info,
        base: new URL(info.base_url),
        logs: () => logs,
        stop: () => stopChild(child),
      });
    });
  });
}

/// Ends a child we started, by its own pid only, and waits for it.
function stopChild(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.removeAllListeners('exit');
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

/// The app's side of the API: creates a connect session and lists connections.
function api(demo) {
  const call = async (method, pathAndQuery, body) => {
    const url = new URL(pathAndQuery, demo.base);
    const res = await fetch(url, {
      method,
      headers: {
        authorization: `Bearer ${demo.info.api_key}`,
        ...(body ? { 'content-type': 'application/json' } : {}),
      },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${url.pathname}: ${res.status} ${text}`);
    return JSON.parse(text);
  };
  return {
    createSession: (endUserId, { returnUrl, integrations } = {}) =>
      call('POST', '/v1/connect/sessions', {
        end_user: { id: endUserId, email: `${endUserId}@example.com` },
        ...(returnUrl ? { return_url: returnUrl } : {}),
        ...(integrations ? { integrations } : {}),
      }),
    connections: async (endUserId) => {
      const url = new URL('/v1/connections', demo.base);
      url.searchParams.set('end_user_id', endUserId);
      const body = await call('GET', url.pathname + url.search);
      return Array.isArray(body) ? body : body.data || body.connections || [];
    },
  };
}

const LOGO_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="32" height="32" viewBox="0 0 32 32">
<rect width="32" height="32" rx="8" fill="#6d28d9"/><path d="M9 22 L16 9 L23 22 Z" fill="#fff"/></svg>`;

/// A tiny app on loopback: `/` opens the Connect page in a popup (the URL in `?connect=`) and
/// shows what the popup posts back; `/connected` is the return URL; `/logo.svg` the logo.
function startApp() {
  // Webhooks received at /hooks (when the demo runs with --webhook-url), in arrival order.
  const hooks = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    if (url.pathname === '/hooks' && req.method === 'POST') {
      let body = '';
      req.on('data', (chunk) => { body += chunk; });
      req.on('end', () => {
        try { hooks.push(JSON.parse(body)); } catch { hooks.push({ unparsed: body }); }
        res.writeHead(204);
        res.end();
      });
      return;
    }
    if (url.pathname === '/logo.svg') {
      res.writeHead(200, { 'content-type': 'image/svg+xml' });
      return res.end(LOGO_SVG);
    }
    if (url.pathname === '/connected') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return res.end('<!doctype html><title>Back in the app</title><h1 id="back">Back in the app</h1>');
    }
    if (url.pathname.startsWith('/tether-client/')) {
      // The TypeScript client's build, as an app would bundle it (clients/typescript/dist).
      const name = path.basename(url.pathname);
      const file = path.join(CLIENT_DIST, name);
      if (!/^[a-z]+\.js$/.test(name) || !fs.existsSync(file)) {
        res.writeHead(404);
        return res.end();
      }
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' });
      return res.end(fs.readFileSync(file));
    }
    if (url.pathname === '/client') {
      // The same app, using the client's openConnect instead of its own window.open.
      const connect = JSON.stringify(url.searchParams.get('connect') || '').replace(/</g, '\\u003c');
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return res.end(`<!doctype html><title>Acme app</title>
<button id="open">Connect your CRM</button><pre id="result"></pre>
<script type="module">
  import { openConnect } from '/tether-client/index.js';
  const connect = ${connect};
  document.getElementById('open').addEventListener('click', async () => {
    const result = document.getElementById('result');
    try {
      result.textContent = JSON.stringify(await openConnect(connect));
    } catch (err) {
      result.textContent = JSON.stringify({ error: err.name, code: err.code });
    }
  });
</script>`);
    }
    if (url.pathname === '/') {
      // JSON in a script: `<` escaped so the URL cannot close the element.
      const connect = JSON.stringify(url.searchParams.get('connect') || '').replace(/</g, '\\u003c');
      const tether = JSON.stringify(url.searchParams.get('tether') || '').replace(/</g, '\\u003c');
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return res.end(`<!doctype html><title>Acme app</title>
<button id="open">Connect your CRM</button><pre id="result"></pre>
<script>
  var connect = ${connect}, tether = ${tether};
  window.addEventListener('message', function (event) {
    if (event.origin !== tether) return;
    document.getElementById('result').textContent = JSON.stringify(event.data);
  });
  document.getElementById('open').addEventListener('click', function () {
    window.open(connect, 'tether-connect', 'popup,width=480,height=720');
  });
</script>`);
    }
    res.writeHead(404);
    res.end();
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const origin = `http://127.0.0.1:${server.address().port}`;
      resolve({
        origin,
        hooks,
        url: (p) => new URL(p, origin).toString(),
        stop: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
      });
    });
  });
}

/// Debian's chromium with a fresh profile. Fails (never skips) when it is missing.
async function launchBrowser() {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium)`);
  }
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tether-e2e-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1000, height: 760 },
  });
  return {
    context,
    close: async () => {
      await context.close();
      fs.rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

// Screenshots land in docs/ (shown by the docs pages) only when asked, so an ordinary run leaves
// the tracked files alone: UPDATE_SCREENSHOTS=1 scripts/test-all.sh.
const DOCS = process.env.UPDATE_SCREENSHOTS
  ? path.join(ROOT, 'docs')
  : path.join(ROOT, 'e2e', 'artifacts');
fs.mkdirSync(DOCS, { recursive: true });

module.exports = { startDemo, startApp, api, launchBrowser, DOCS };
