// The Connect page in a real browser (Debian's chromium via playwright-core) against
// `tether demo` and its emulators on loopback: OAuth in the same tab and in a popup, the
// credential forms, a denied consent, a provider failure, an expired session, keyboard only,
// a phone-width viewport, the security headers, and a link opened in a second browser. Saves
// the screenshots in docs/ to docs/.
'use strict';

const { test, before, after, beforeEach, afterEach } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { startDemo, startApp, api, launchBrowser, DOCS } = require('../lib/harness');

let app;
let demo;
let tether;
let browser;
let page;
let userCounter = 0;

/// A fresh end user id per test, so "nothing was stored" is checkable.
const newUser = (label) => `e2e-${label}-${process.pid}-${++userCounter}`;

before(async () => {
  app = await startApp();
  demo = await startDemo([
    '--allowed-origin', app.origin,
    '--consent-page',
    '--app-name', 'Acme',
    '--accent-color', '#6d28d9',
    '--logo-url', app.url('/logo.svg'),
  ]);
  tether = api(demo);
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close();
  if (demo) await demo.stop();
  if (app) await app.stop();
});

beforeEach(async () => {
  await browser.context.clearCookies();
  page = await browser.context.newPage();
});

afterEach(async () => {
  for (const p of browser.context.pages()) await p.close();
});

/// Asserts the headers every Connect page carries.
function assertSecurityHeaders(response) {
  const headers = response.headers();
  const csp = headers['content-security-policy'] || '';
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'nonce-[A-Za-z0-9_-]{20,}'/);
  assert.match(csp, /style-src 'nonce-[A-Za-z0-9_-]{20,}'/);
  assert.ok(csp.includes(`frame-ancestors ${app.origin}`), csp);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  assert.equal(headers['referrer-policy'], 'no-referrer');
  assert.equal(headers['x-content-type-options'], 'nosniff');
}

test('the Connect page shows the app, its integrations and marks, and loads nothing external', async () => {
  const session = await tether.createSession(newUser('page'), { returnUrl: app.url('/connected') });
  const requested = [];
  page.on('request', (r) => requested.push(r.url()));
  const violations = [];
  page.on('console', (m) => { if (/Content.Security.Policy/i.test(m.text())) violations.push(m.text()); });

  const response = await page.goto(session.connect_url);
  assert.equal(response.status(), 200);
  assertSecurityHeaders(response);
  assert.equal(await page.locator('header.app').innerText(), 'Acme');
  assert.equal(await page.locator('header.app img').evaluate((img) => img.naturalWidth > 0), true,
    'the logo served by the app is shown');
  for (const name of ['Demo OAuth CRM', 'Redtail CRM', 'Salesmate']) {
    await page.getByRole('link', { name: new RegExp(`Connect to ${name}`) }).waitFor();
  }
  assert.equal(await page.locator('#connect-redtail .mark').innerText(), 'RT');
  const markColour = await page.locator('#connect-redtail .mark')
    .evaluate((el) => getComputedStyle(el).backgroundColor);
  assert.equal(markColour, 'rgb(185, 28, 28)', 'the mark is drawn by the nonce\'d style');
  for (const url of requested) {
    const origin = new URL(url).origin;
    assert.ok(origin === demo.base.origin || origin === app.origin, `unexpected fetch: ${url}`);
  }
  assert.deepEqual(violations, []);
  await page.screenshot({ path: path.join(DOCS, 'connect-page.png') });
});

test('same-tab OAuth: connect, approve at the provider, land on the return URL', async () => {
  const user = newUser('oauth');
  const session = await tether.createSession(user, { returnUrl: app.url('/connected') });
  await page.goto(session.connect_url);
  await page.getByRole('link', { name: /Connect to Demo OAuth CRM/ }).click();
  await page.waitForURL((u) => u.origin === new URL(demo.info.emulators.oauth).origin);
  await page.click('#approve');
  await page.waitForURL((u) => u.origin === app.origin && u.pathname === '/connected');
  const back = new URL(page.url());
  const id = back.searchParams.get('connection_id');
  assert.ok(id, 'the return URL carries the connection id');
  assert.equal(back.searchParams.get('integration'), 'crm');
  const listed = await tether.connections(user);
  assert.deepEqual(listed.map((c) => c.id), [id]);
  assert.equal(listed[0].status, 'active');
});

test('popup OAuth: the app opens the Connect page with window.open and gets tether:connected', async () => {
  const user = newUser('popup');
  const session = await tether.createSession(user, { returnUrl: app.url('/connected') });
  const opener = new URL(app.url('/'));
  opener.searchParams.set('connect', session.connect_url);
  opener.searchParams.set('tether', demo.base.origin);
  await page.goto(opener.toString());
  const [popup] = await Promise.all([page.waitForEvent('popup'), page.click('#open')]);
  await popup.waitForLoadState();
  const link = popup.getByRole('link', { name: /Connect to Demo OAuth CRM/ });
  assert.match(await link.getAttribute('href'), /display=popup/, 'the page noticed it is a popup');
  await link.click();
  await popup.waitForURL((u) => u.origin === new URL(demo.info.emulators.oauth).origin);
  await Promise.all([popup.waitForEvent('close'), popup.click('#approve')]);
  await page.waitForFunction(() => document.getElementById('result').textContent !== '');
  const message = JSON.parse(await page.locator('#result').innerText());
  assert.equal(message.type, 'tether:connected');
  assert.equal(message.integration, 'crm');
  const listed = await tether.connections(user);
  assert.deepEqual(listed.map((c) => c.id), [message.connection_id]);
});

test('the TypeScript client\'s openConnect resolves with the connection from the popup', async () => {
  const user = newUser('client');
  const session = await tether.createSession(user, { returnUrl: app.url('/connected') });
  const opener = new URL(app.url('/client'));
  opener.searchParams.set('connect', session.connect_url);
  await page.goto(opener.toString());
  const [popup] = await Promise.all([page.waitForEvent('popup'), page.click('#open')]);
  await popup.waitForLoadState();
  await popup.getByRole('link', { name: /Connect to Demo OAuth CRM/ }).click();
  await popup.waitForURL((u) => u.origin === new URL(demo.info.emulators.oauth).origin);
  await Promise.all([popup.waitForEvent('close'), popup.click('#approve')]);
  await page.waitForFunction(() => document.getElementById('result').textContent !== '');
  const result = JSON.parse(await page.locator('#result').innerText());
  assert.equal(result.integration, 'crm');
  const listed = await tether.connections(user);
  assert.deepEqual(listed.map((c) => c.id), [result.connectionId]);
});

test('the TypeScript client\'s openConnect rejects when the person closes the popup', async () => {
  const session = await tether.createSession(newUser('closed'), { returnUrl: app.url('/connected') });
  const opener = new URL(app.url('/client'));
  opener.searchParams.set('connect', session.connect_url);
  await page.goto(opener.toString());
  const [popup] = await Promise.all([page.waitForEvent('popup'), page.click('#open')]);
  await popup.waitForLoadState();
  await popup.close();
  await page.waitForFunction(() => document.getElementById('result').textContent !== '');
  const result = JSON.parse(await page.locator('#result').innerText());
  assert.deepEqual(result, { error: 'ConnectError', code: 'popup_closed' });
});

test('popup with an expired link: the app gets tether:error and the popup closes', async () => {
  const expired = new URL('/connect', demo.base);
  expired.searchParams.set('session', 'cs_no_such_session');
  const opener = new URL(app.url('/'));
  opener.searchParams.set('connect', expired.toString());
  opener.searchParams.set('tether', demo.base.origin);
  await page.goto(opener.toString());
  const [popup] = await Promise.all([page.waitForEvent('popup'), page.click('#open')]);
  if (!popup.isClosed()) await popup.waitForEvent('close');
  await page.waitForFunction(() => document.getElementById('result').textContent !== '');
  const message = JSON.parse(await page.locator('#result').innerText());
  assert.deepEqual(message, { type: 'tether:error', code: 'session_expired', reference: null });
});

test('Redtail form: a wrong password shows an error and stores nothing; the right one connects', async () => {
  const user = newUser('redtail');
  const session = await tether.createSession(user, { returnUrl: app.url('/connected') });
  const first = await page.goto(session.connect_url);
  assertSecurityHeaders(first);
  await page.getByRole('link', { name: /Connect to Redtail CRM/ }).click();
  await page.getByLabel('Redtail username').fill('demo');
  await page.getByLabel('Redtail password').fill('not-the-password');
  const [rejected] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST'),
    page.getByRole('button', { name: 'Connect' }).click(),
  ]);
  assert.equal(rejected.status(), 422);
  assertSecurityHeaders(rejected);
  await page.locator('#error-password').waitFor();
  assert.match(await page.locator('#error-password').innerText(), /did not accept/);
  assert.equal(await page.getByLabel('Redtail password').inputValue(), '', 'the secret is not echoed');
  assert.equal(await page.getByLabel('Redtail username').inputValue(), 'demo');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'field-password',
    'focus moves to the field to fix');
  assert.ok(!(await page.content()).includes('not-the-password'));
  assert.deepEqual(await tether.connections(user), [], 'nothing stored after a rejection');
  await page.screenshot({ path: path.join(DOCS, 'form-error.png') });

  await page.getByLabel('Redtail password').fill('demo-password');
  await page.getByRole('button', { name: 'Connect' }).click();
  await page.waitForURL((u) => u.origin === app.origin && u.pathname === '/connected');
  const id = new URL(page.url()).searchParams.get('connection_id');
  const listed = await tether.connections(user);
  assert.deepEqual(listed.map((c) => c.id), [id]);
  assert.equal(listed[0].integration, 'redtail');
});

test('the form shows a busy state while the provider is checked', async () => {
  const session = await tether.createSession(newUser('busy'), { returnUrl: app.url('/connected') });
  await page.goto(session.connect_url);
  await page.getByRole('link', { name: /Connect to Redtail CRM/ }).click();
  await page.getByLabel('Redtail username').fill('demo');
  await page.getByLabel('Redtail password').fill('wrong');
  const posts = [];
  page.on('request', (r) => { if (r.method() === 'POST') posts.push(r.url()); });
  // Clicked twice from inside the page, and the state read in the same task: Playwright's own
  // click and locators would wait for the navigation the submit starts.
  const busy = await page.evaluate(() => {
    const button = document.getElementById('submit');
    button.click();
    button.click();
    return {
      disabled: button.getAttribute('aria-disabled'),
      label: button.innerText,
      status: document.getElementById('busy').textContent,
      formBusy: document.getElementById('credential-form').getAttribute('aria-busy'),
    };
  });
  assert.equal(busy.disabled, 'true');
  assert.equal(busy.formBusy, 'true');
  assert.match(busy.label, /Checking with Redtail CRM/);
  assert.match(busy.status, /Checking your details with Redtail CRM/);
  await page.locator('#error-password').waitFor();
  assert.equal(posts.length, 1, 'a second click does not send the form again');
  assert.equal(await page.locator('#submit').innerText(), 'Connect', 'the answer ends the busy state');
});

test('Salesmate form connects, and without a return URL shows the Connected page', async () => {
  const user = newUser('salesmate');
  const session = await tether.createSession(user);
  await page.goto(session.connect_url);
  await page.getByRole('link', { name: /Connect to Salesmate/ }).click();
  await page.getByLabel('Access key').fill('demo-salesmate-access-key');
  await page.getByLabel('Link name').fill('acme.salesmate.io');
  const [done] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST'),
    page.getByRole('button', { name: 'Connect' }).click(),
  ]);
  assert.equal(done.status(), 200);
  assertSecurityHeaders(done);
  assert.equal(await page.locator('h1').innerText(), 'Connected');
  assert.match(await page.getByRole('status').innerText(), /Your Salesmate account is connected/);
  const listed = await tether.connections(user);
  assert.equal(listed.length, 1);
  assert.equal(listed[0].integration, 'salesmate');
  assert.equal(listed[0].metadata.link_name, 'acme');
  await page.screenshot({ path: path.join(DOCS, 'connected.png') });
});

test('a connect link belongs to the first browser that opens it, and connects once', async () => {
  const user = newUser('bound');
  const session = await tether.createSession(user);
  await page.goto(session.connect_url);
  assert.equal(await page.locator('#for-whom').innerText(), `for ${user}@example.com`);

  // The same link in another browser (its own profile, its own cookies): refused.
  const other = await launchBrowser();
  try {
    const otherPage = await other.context.newPage();
    const refused = await otherPage.goto(session.connect_url);
    assert.equal(refused.status(), 403);
    assert.equal(await otherPage.locator('h1').innerText(), 'This link was opened elsewhere');
  } finally {
    await other.close();
  }

  // The first browser still connects, once.
  await page.getByRole('link', { name: /Connect to Salesmate/ }).click();
  await page.getByLabel('Access key').fill('demo-salesmate-access-key');
  await page.getByLabel('Link name').fill('acme');
  await Promise.all([
    page.waitForResponse((r) => r.request().method() === 'POST'),
    page.getByRole('button', { name: 'Connect' }).click(),
  ]);
  assert.equal(await page.locator('h1').innerText(), 'Connected');
  const again = await page.goto(session.connect_url);
  assert.equal(again.status(), 410);
  assert.equal(await page.locator('h1').innerText(), 'This link was already used');
  assert.equal((await tether.connections(user)).length, 1);
});

test('denied consent: a clear page, a way to try again, nothing stored', async () => {
  const user = newUser('deny');
  const session = await tether.createSession(user, { returnUrl: app.url('/connected') });
  await page.goto(session.connect_url);
  const start = await page.getByRole('link', { name: /Connect to Demo OAuth CRM/ }).getAttribute('href');
  await page.getByRole('link', { name: /Connect to Demo OAuth CRM/ }).click();
  await page.waitForURL((u) => u.origin === new URL(demo.info.emulators.oauth).origin);
  const [result] = await Promise.all([
    page.waitForResponse((r) => new URL(r.url()).pathname === '/oauth/callback'),
    page.click('#deny'),
  ]);
  assertSecurityHeaders(result);
  await page.locator('h1').waitFor();
  assert.equal(await page.locator('h1').innerText(), 'Access was not granted');
  const retry = page.getByRole('link', { name: 'Try again' });
  await retry.waitFor();
  assert.equal(await retry.getAttribute('href'), start);
  assert.deepEqual(await tether.connections(user), []);
  // Trying again starts a new flow at the provider.
  await retry.click();
  await page.waitForURL((u) => u.origin === new URL(demo.info.emulators.oauth).origin);
  await page.locator('#approve').waitFor();
});

test('a provider failure shows a reference that is also in Tether\'s log, and a retry button', async () => {
  const session = await tether.createSession(newUser('fail'), { returnUrl: app.url('/connected') });
  await page.goto(session.connect_url);
  await page.getByRole('link', { name: /Connect to Demo OAuth CRM/ }).click();
  await page.waitForURL((u) => u.origin === new URL(demo.info.emulators.oauth).origin);
  // The provider answers with an error instead of a code (RFC 6749 4.1.2.1).
  const state = await page.locator('input[name="state"]').getAttribute('value');
  const callback = new URL('/oauth/callback', demo.base);
  callback.searchParams.set('state', state);
  callback.searchParams.set('error', 'temporarily_unavailable');
  const response = await page.goto(callback.toString());
  assert.equal(response.status(), 502);
  assertSecurityHeaders(response);
  const reference = await page.locator('#reference').innerText();
  assert.match(reference, /^ref-[0-9A-Z]{8}$/);
  assert.ok(demo.logs().includes(reference), 'the same reference is in the log line');
  await page.getByRole('link', { name: 'Try again' }).waitFor();
});

test('an expired session tells the person to start again from the app', async () => {
  const shortLived = await startDemo(['--allowed-origin', app.origin, '--session-ttl', '1']);
  try {
    const session = await api(shortLived).createSession(newUser('expired'));
    await page.goto(session.connect_url);
    const link = page.getByRole('link', { name: /Connect to Redtail CRM/ });
    await link.waitFor();
    // Session expiry is checked in whole seconds; wait until it has certainly passed.
    await new Promise((r) => setTimeout(r, 2200));
    const [response] = await Promise.all([
      page.waitForResponse((r) => new URL(r.url()).pathname === '/connect/redtail'),
      link.click(),
    ]);
    assert.equal(response.status(), 410);
    assert.equal(await page.locator('h1').innerText(), 'This link has expired');
    assert.match(await page.locator('#result-message').innerText(), /Go back to the app and start connecting again/);
    assert.equal(await page.getByRole('link', { name: 'Try again' }).count(), 0);
  } finally {
    await shortLived.stop();
  }
});

test('keyboard only: Tab through the page in order, fill the Salesmate form, connect', async () => {
  const user = newUser('keyboard');
  const session = await tether.createSession(user, { returnUrl: app.url('/connected') });
  await page.goto(session.connect_url);
  const focused = () => page.evaluate(() => document.activeElement && document.activeElement.id);
  const order = [];
  for (let i = 0; i < 3; i++) {
    await page.keyboard.press('Tab');
    order.push(await focused());
  }
  assert.deepEqual(order, ['connect-crm', 'connect-redtail', 'connect-salesmate']);
  const ring = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.equal(ring, 'solid', 'the focused link shows a focus ring');
  await page.keyboard.press('Enter');
  await page.waitForURL((u) => u.pathname === '/connect/salesmate');
  await page.keyboard.press('Tab');
  assert.equal(await focused(), 'field-access_key');
  await page.keyboard.type('demo-salesmate-access-key');
  await page.keyboard.press('Tab');
  assert.equal(await focused(), 'field-link_name');
  await page.keyboard.type('acme');
  await page.keyboard.press('Tab');
  assert.equal(await focused(), 'submit');
  await page.keyboard.press('Enter');
  await page.waitForURL((u) => u.origin === app.origin && u.pathname === '/connected');
  const listed = await tether.connections(user);
  assert.equal(listed.length, 1);
  assert.equal(listed[0].integration, 'salesmate');
});

test('fits a phone: no sideways scrolling, buttons large enough to tap', async () => {
  await page.setViewportSize({ width: 360, height: 740 });
  const session = await tether.createSession(newUser('phone'), { returnUrl: app.url('/connected') });
  await page.goto(session.connect_url);
  const fits = await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
  assert.ok(fits, 'the Connect page fits 360 px');
  const box = await page.locator('#connect-redtail').boundingBox();
  assert.ok(box.height >= 44, `tap target is ${box.height}px tall`);
  await page.getByRole('link', { name: /Connect to Redtail CRM/ }).click();
  const formFits = await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
  assert.ok(formFits, 'the form fits 360 px');
  await page.screenshot({ path: path.join(DOCS, 'connect-phone.png') });
});

/// Lowest WCAG contrast ratio of any visible text on the page, against the nearest opaque
/// background behind it (the pages use no background images).
function lowestTextContrast(page) {
  return page.evaluate(() => {
    const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
    const lum = ([r, g, b]) => {
      const ch = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
      return 0.2126 * ch(r) + 0.7152 * ch(g) + 0.0722 * ch(b);
    };
    const background = (el) => {
      for (let e = el; e; e = e.parentElement) {
        const c = rgb(getComputedStyle(e).backgroundColor);
        if (c.length === 3 || (c.length === 4 && c[3] === 1)) return c.slice(0, 3);
      }
      return [255, 255, 255];
    };
    let worst = { ratio: 21, text: '' };
    for (const el of document.querySelectorAll('body *')) {
      const own = Array.from(el.childNodes).some((n) => n.nodeType === 3 && n.textContent.trim());
      if (!own || !el.getClientRects().length) continue;
      const style = getComputedStyle(el);
      if (style.visibility === 'hidden' || el.closest('[aria-hidden="true"]:not(.mark)')) continue;
      const a = lum(rgb(style.color).slice(0, 3));
      const b = lum(background(el));
      const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
      if (ratio < worst.ratio) worst = { ratio, text: el.textContent.trim().slice(0, 40) };
    }
    return worst;
  });
}

test('text contrast is at least 4.5:1 on the list, a form with errors and a result page', async () => {
  const session = await tether.createSession(newUser('contrast'), { returnUrl: app.url('/connected') });
  await page.goto(session.connect_url);
  let worst = await lowestTextContrast(page);
  assert.ok(worst.ratio >= 4.5, `Connect page: ${worst.ratio.toFixed(2)} for "${worst.text}"`);
  await page.getByRole('link', { name: /Connect to Salesmate/ }).click();
  await page.getByLabel('Link name').fill('not a link name');
  await page.getByRole('button', { name: 'Connect' }).click();
  await page.locator('#error-link_name').waitFor();
  worst = await lowestTextContrast(page);
  assert.ok(worst.ratio >= 4.5, `form: ${worst.ratio.toFixed(2)} for "${worst.text}"`);
  const expired = new URL('/connect', demo.base);
  expired.searchParams.set('session', 'cs_no_such_session');
  await page.goto(expired.toString());
  worst = await lowestTextContrast(page);
  assert.ok(worst.ratio >= 4.5, `result page: ${worst.ratio.toFixed(2)} for "${worst.text}"`);
});
