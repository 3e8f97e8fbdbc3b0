// Starts `tether demo` (gateway + emulated CRMs on loopback) for the client's tests, and walks
// an OAuth connect the way a browser would (cookies kept, redirects followed by hand).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const BIN = process.env.TETHER_BIN
  || path.join(process.env.CARGO_TARGET_DIR || path.join(ROOT, 'target'), 'debug', 'tether');

/** The app origin the demo lets end users return to; nothing listens there. */
export const APP_ORIGIN = 'http://127.0.0.1:9';

export function startDemo() {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run \`cargo build -p tether-cli\` first`);
  const child = spawn(BIN, ['demo', '--listen', '127.0.0.1:0', '--allowed-origin', APP_ORIGIN], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: 'warn', NO_COLOR: '1' },
  });
  let logs = '';
  child.stderr.on('data', (chunk) => { logs += chunk.toString(); });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGTERM');
      reject(new Error(`no TETHER_DEMO line within 30 s:\n${logs}`));
    }, 30_000);
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`tether demo exited (${code}):\n${logs}`)); });
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      if (!line.startsWith('TETHER_DEMO ')) return;
      clearTimeout(timer);
      const info = JSON.parse(line.slice('TETHER_DEMO '.length));
      resolve({
        info,
        stop: () => new Promise((done) => {
          child.removeAllListeners('exit');
          child.once('exit', () => done());
          child.kill('SIGTERM');
        }),
      });
    });
  });
}

/** Follows a connect link through the emulator's consent to the app's return URL, as a
 * browser: returns the connection id. */
export async function connectLikeABrowser(connectUrl, integration) {
  const cookies = new Map();
  const get = async (url) => {
    const cookie = [...cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    const response = await fetch(url, { redirect: 'manual', headers: cookie ? { cookie } : {} });
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const at = pair.indexOf('=');
      cookies.set(pair.slice(0, at), pair.slice(at + 1));
    }
    return response;
  };
  const start = new URL(connectUrl);
  start.pathname = `${start.pathname.replace(/\/$/, '')}/${integration}`;
  let url = start.toString();
  for (let hop = 0; hop < 10; hop++) {
    const response = await get(url);
    const location = response.headers.get('location');
    if (!location) throw new Error(`stopped at ${url} with ${response.status}: ${await response.text()}`);
    const next = new URL(location, url);
    if (next.origin === APP_ORIGIN) return next.searchParams.get('connection_id');
    url = next.toString();
  }
  throw new Error('too many redirects');
}
