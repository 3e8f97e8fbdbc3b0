// The operator console (/dashboard) in a real browser against `tether demo`, its webhooks
// going to the test app on loopback: sign in (a wrong key refused), find a connection by the
// end user's email, read its timeline after a forced refresh failure (the reference is in the
// log), redeliver a webhook, refresh and delete a connection, and a missing CSRF token and a
// post from another origin refused. No page shows a token, key or secret. Saves the
// console screenshots shown in docs/.
'use strict';

const { test, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { startDemo, startApp, api, launchBrowser, DOCS } = require('../lib/harness');

let app;
let demo;
let tether;
let browser;
let page;
/// Every console page's HTML, checked for secrets at the end.
const seen = [];
/// Secrets that must never appear on a page.
const secrets = [];

const IMPORTED_ACCESS = 'imported-access-token-0123456789abcdef';
const IMPORTED_REFRESH = 'imported-refresh-token-0123456789abcdef';

/// An API call with the app's key; the parsed body.
async function call(method, pathAndQuery, body) {
  const res = await fetch(new URL(pathAndQuery, demo.base), {
    method,
    headers: {
      authorization: `Bearer ${demo.info.api_key}`,
      ...(body ? { 'content-type': 'application/json' } : {}),
    },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/// Connects an end user to the OAuth CRM in the browser; the connection id.
async function connectOAuth(user) {
  const session = await tether.createSession(user, { returnUrl: app.url('/connected') });
  const tab = await browser.context.newPage();
  await tab.goto(session.connect_url);
  await tab.getByRole('link', { name: /Connect to Demo OAuth CRM/ }).click();
  await tab.waitForURL((u) => u.origin === app.origin && u.pathname === '/connected');
  const id = new URL(tab.url()).searchParams.get('connection_id');
  await tab.close();
  return id;
}

/// Waits (bounded) until `check` holds.
async function until(what, check, ms = 15_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function remember() {
  seen.push({ url: page.url(), html: await page.content() });
}

async function signIn() {
  await page.goto(new URL('/dashboard', demo.base).toString());
  await page.fill('#api_key', demo.info.api_key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor();
}

async function search(text) {
  await page.getByRole('link', { name: 'Connections' }).click();
  await page.fill('#q', text);
  await page.getByRole('button', { name: 'Search' }).click();
  await page.waitForURL((u) => u.searchParams.get('q') === text);
}

before(async () => {
  app = await startApp();
  demo = await startDemo([
    '--allowed-origin', app.origin,
    '--app-name', 'Acme',
    '--webhook-url', app.url('/hooks'),
  ]);
  tether = api(demo);
  browser = await launchBrowser();
  page = await browser.context.newPage();
  secrets.push(demo.info.api_key, demo.info.webhook_secret, 'seed-secret', IMPORTED_ACCESS, IMPORTED_REFRESH);
});

after(async () => {
  // No page the tests saw showed a secret.
  for (const { url, html } of seen) {
    for (const secret of secrets) {
      assert.ok(!html.includes(secret), `a secret on ${url}`);
    }
  }
  assert.ok(seen.length >= 8, `${seen.length} pages checked`);
  if (browser) await browser.close();
  if (demo) await demo.stop();
  if (app) await app.stop();
});

afterEach(async () => {
  for (const p of browser.context.pages()) if (p !== page) await p.close();
});

test('a wrong key is refused; the right one signs in with a strict HttpOnly cookie', async () => {
  const response = await page.goto(new URL('/dashboard', demo.base).toString());
  const headers = response.headers();
  assert.match(headers['content-security-policy'], /frame-ancestors 'none'/);
  assert.match(headers['content-security-policy'], /script-src 'nonce-/);
  assert.doesNotMatch(headers['content-security-policy'], /unsafe-inline|unsafe-eval/);
  assert.equal(headers['x-frame-options'], 'DENY');
  assert.equal(headers['referrer-policy'], 'no-referrer');
  await page.fill('#api_key', 'tether_sk_not-the-key');
  const [refused] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/dashboard/sign-in')),
    page.getByRole('button', { name: 'Sign in' }).click(),
  ]);
  assert.equal(refused.status(), 401);
  assert.match(await page.locator('#sign-in-error').innerText(), /not an API key/);
  assert.deepEqual(await browser.context.cookies(demo.base.origin), []);
  await remember();

  await signIn();
  const [cookie] = await browser.context.cookies(demo.base.origin);
  assert.equal(cookie.name, 'tether_console');
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, 'Strict');
  assert.ok(!cookie.value.includes(demo.info.api_key));
  await remember();
});

test('find a connection by email, see its timeline, refresh it; a forced refresh failure shows its reason and reference', async () => {
  const user = `console-${process.pid}`;
  const id = await connectOAuth(user);
  const access = (await call('GET', `/v1/connections/${id}/credentials`)).body.access_token;
  secrets.push(access);
  await until('the created webhook', () => app.hooks.some((h) => h.connection_id === id));

  await search(`${user}@example.com`);
  await remember();
  const rows = page.locator('#connections tbody tr');
  assert.equal(await rows.count(), 1);
  await rows.first().getByRole('link').click();
  await page.locator('#timeline').waitFor();
  assert.equal(await page.locator('#status').innerText(), 'active');
  await until('the delivery in the timeline', async () => {
    await page.reload();
    return (await page.locator('#timeline li.webhook_delivered').count()) === 1;
  });
  await page.getByRole('button', { name: 'Refresh now' }).click();
  await page.getByText('The connection was refreshed.').waitFor();
  // Newest first: the refresh (its webhook's delivery may already be above it).
  const top = await page.locator('#timeline li').evaluateAll((lis) => lis.slice(0, 2).map((li) => li.className));
  assert.ok(top.includes('refreshed'), top.join(', '));
  await remember();

  // An imported connection whose refresh token the provider never issued: refreshing it now
  // fails with invalid_grant and turns it needs_reauth.
  const broken = `console-broken-${process.pid}`;
  const imported = await call('POST', '/v1/connections', {
    integration: 'crm',
    end_user: { id: broken, email: `${broken}@example.com` },
    credentials: { access_token: IMPORTED_ACCESS, refresh_token: IMPORTED_REFRESH, expires_in: 3600 },
  });
  assert.equal(imported.status, 201, JSON.stringify(imported.body));
  await search(`${broken.toUpperCase()}@EXAMPLE.COM`);
  await page.locator('#connections tbody tr').first().getByRole('link').click();
  await page.getByRole('button', { name: 'Refresh now' }).click();
  await page.getByText('The provider refused the refresh').waitFor();
  assert.equal(await page.locator('#status').innerText(), 'needs_reauth');
  const failure = page.locator('#timeline li.needs_reauth');
  assert.match(await failure.innerText(), /invalid_grant/);
  const reference = (await failure.locator('code').first().innerText()).trim();
  assert.match(reference, /^ref-[0-9A-Z]{8}$/);
  assert.ok(demo.logs().includes(reference), 'the same reference is in the log');
  await page.screenshot({ path: path.join(DOCS, 'console-connection.png'), fullPage: true });
  await remember();
  // The API shows the same history.
  const events = await call('GET', `/v1/connections/${imported.body.id}/events`);
  const reauth = events.body.events.find((e) => e.type === 'needs_reauth');
  assert.equal(reauth.reference, reference);
  assert.equal(reauth.detail, 'invalid_grant');

  await page.getByRole('link', { name: 'Overview' }).click();
  await page.locator('#integrations').waitFor();
  assert.match(await page.locator('svg[aria-label^="crm:"]').first().getAttribute('aria-label'), /failed/);
  await page.screenshot({ path: path.join(DOCS, 'console-overview.png'), fullPage: true });
  await remember();
});

test('redeliver a webhook from the deliveries page', async () => {
  await page.getByRole('link', { name: 'Webhooks' }).click();
  const row = page.locator('#deliveries tbody tr').first();
  const eventId = await row.getAttribute('data-event');
  const before = app.hooks.filter((h) => h.id === eventId).length;
  await page.screenshot({ path: path.join(DOCS, 'console-webhooks.png'), fullPage: true });
  await remember();
  await row.getByRole('button', { name: 'Redeliver' }).click();
  await page.getByText('queued for delivery again').waitFor();
  await until('the redelivery', () => app.hooks.filter((h) => h.id === eventId).length > before);
  await remember();
});

test('a missing CSRF token and a post from another origin are refused', async () => {
  const id = await connectOAuth(`console-csrf-${process.pid}`);
  const detail = new URL(`/dashboard/connections/${id}`, demo.base).toString();
  await page.goto(detail);
  // The form without its token.
  await page.locator('form:has(#refresh-now) input[name="csrf"]').evaluate((input) => input.remove());
  const [missing] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith('/refresh')),
    page.locator('#refresh-now').click(),
  ]);
  assert.equal(missing.status(), 403);
  await page.getByText('security token is missing').waitFor();
  await remember();

  // A page on another origin posts the console's form, with a valid token copied over: the
  // browser sends the session cookie (same site, other port) and its Origin, which is refused.
  await page.goto(detail);
  const csrf = await page.locator('form:has(#refresh-now) input[name="csrf"]').getAttribute('value');
  const other = await browser.context.newPage();
  await other.goto(app.url('/connected'));
  const [crossed] = await Promise.all([
    other.waitForResponse((r) => r.url().endsWith('/refresh')),
    other.evaluate(({ action, token }) => {
      const form = document.createElement('form');
      form.method = 'post';
      form.action = action;
      const input = document.createElement('input');
      input.name = 'csrf';
      input.value = token;
      form.appendChild(input);
      document.body.appendChild(form);
      form.submit();
    }, { action: new URL(`/dashboard/connections/${id}/refresh`, demo.base).toString(), token: csrf }),
  ]);
  assert.equal(crossed.status(), 403);
  await other.getByText('came from another site').waitFor();
  // Nothing was refreshed by either.
  const events = await call('GET', `/v1/connections/${id}/events`);
  assert.ok(!events.body.events.some((e) => e.type === 'refreshed'), JSON.stringify(events.body));
});

test('delete a connection after a confirmation', async () => {
  const user = `console-delete-${process.pid}`;
  const id = await connectOAuth(user);
  await search(user);
  await page.locator('#connections tbody tr').first().getByRole('link').click();
  await page.locator('#delete').click();
  await page.getByText('Delete this connection?').waitFor();
  await remember();
  await page.locator('#confirm-delete').click();
  await page.getByText('The connection was deleted.').waitFor();
  assert.equal((await call('GET', `/v1/connections/${id}`)).status, 404);
  // Its timeline is still there, ending with the deletion.
  await page.goto(new URL(`/dashboard/connections/${id}`, demo.base).toString());
  const top = await page.locator('#timeline li').evaluateAll((lis) => lis.slice(0, 2).map((li) => li.className));
  assert.ok(top.includes('deleted bad'), top.join(', '));
  await remember();

  // Sign-out ends the session.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.locator('#api_key').waitFor();
  const response = await page.goto(new URL('/dashboard/connections', demo.base).toString());
  assert.ok(await page.locator('#api_key').isVisible(), `${response.status()}`);
});
