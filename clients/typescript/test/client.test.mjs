// tether-client against a real `tether demo` on loopback: every call the client offers, the
// errors it raises, and webhook verification. Node's test runner; no mocks.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';

import { Tether, TetherError, verifyWebhook } from '../dist/index.js';
import { startDemo, connectLikeABrowser, APP_ORIGIN } from '../lib/demo.mjs';

let demo;
let tether;
let userCounter = 0;
const newUser = (label) => `ts-${label}-${process.pid}-${++userCounter}`;

before(async () => {
  demo = await startDemo();
  tether = new Tether({ baseUrl: demo.info.base_url, apiKey: demo.info.api_key });
});

after(async () => {
  if (demo) await demo.stop();
});

/** A connection made through the demo's OAuth CRM, as an end user would. */
async function connected(label) {
  const user = newUser(label);
  const session = await tether.connectSessions.create({
    end_user: { id: user, email: `${user}@example.com` },
    integrations: ['crm'],
    return_url: `${APP_ORIGIN}/done`,
  });
  assert.match(session.token, /.{20,}/);
  assert.ok(Date.parse(session.expires_at) > Date.now());
  const id = await connectLikeABrowser(session.connect_url, 'crm');
  assert.match(id, /^conn_/);
  return { id, user };
}

test('connect sessions, connections and credentials', async () => {
  const { id, user } = await connected('conn');
  const listed = await tether.connections.list({ end_user_id: user });
  assert.equal(listed.length, 1);
  assert.equal(listed[0].id, id);
  assert.equal(listed[0].status, 'active');
  const one = await tether.connections.get(id);
  assert.equal(one.end_user.id, user);
  assert.equal(one.integration, 'crm');
  assert.equal(JSON.stringify(one).includes('access_token'), false, 'no secret in the view');

  const credentials = await tether.connections.credentials(id);
  assert.equal(credentials.connection_id, id);
  assert.equal(credentials.auth_mode, 'oauth2');
  assert.ok(credentials.access_token);
  assert.equal(credentials.headers.Authorization ?? credentials.headers.authorization,
    `Bearer ${credentials.access_token}`);
  const refreshed = await tether.connections.credentials(id, { forceRefresh: true });
  assert.notEqual(refreshed.access_token, credentials.access_token);

  // The demo's CRM declares a check: whose account this is, and that it works.
  assert.equal(one.account?.label, 'ada@example.com');
  const verified = await tether.connections.verify(id);
  assert.equal(verified.outcome, 'ok');
  assert.equal(verified.status, 'active');
  assert.equal(verified.account?.user_id, '1001');
  await assert.rejects(tether.connections.verify('conn_00000000000000000000000000000000'),
    (err) => err instanceof TetherError && err.code === 'connection_not_found');
});

test('the proxy: reads and writes, the provider\'s answer as it is', async () => {
  const { id } = await connected('proxy');
  const deals = await tether.proxy(id).get('/v1/deals?limit=2');
  assert.equal(deals.status, 200);
  const body = await deals.json();
  assert.ok(Array.isArray(body.data ?? body.deals ?? body), JSON.stringify(body));
  const created = await tether.proxy(id).post('/v1/deals', { title: 'From the TypeScript client' });
  assert.ok([200, 201].includes(created.status), `${created.status}`);
  // A provider 404 comes back as the provider's response, not an exception.
  const missing = await tether.proxy(id).get('/v1/no-such-thing');
  assert.equal(missing.status, 404);
});

test('errors are TetherError with the problem code and the request id', async () => {
  await assert.rejects(tether.connections.get('conn_00000000000000000000000000000000'), (err) => {
    assert.ok(err instanceof TetherError);
    assert.equal(err.status, 404);
    assert.equal(err.code, 'connection_not_found');
    assert.match(err.requestId, /^req_/);
    return true;
  });
  // The proxy raises Tether's own refusals too.
  await assert.rejects(tether.proxy('conn_00000000000000000000000000000000').get('/v1/deals'),
    (err) => err instanceof TetherError && err.code === 'connection_not_found');
  const wrongKey = new Tether({ baseUrl: demo.info.base_url, apiKey: 'not-the-key-but-long-enough-to-try' });
  await assert.rejects(wrongKey.connections.list(), (err) => err.code === 'unauthorized' && err.status === 401);
  await assert.rejects(
    tether.connectSessions.create({ end_user: { id: 'u' }, return_url: 'https://evil.example/x' }),
    (err) => err.code === 'return_url_not_allowed');
});

test('import and delete', async () => {
  const { id: donor } = await connected('donor');
  const token = (await tether.connections.credentials(donor)).access_token;
  const user = newUser('imported');
  const imported = await tether.connections.import({
    integration: 'crm',
    end_user: { id: user },
    credentials: { access_token: token, expires_in: 3600 },
  });
  assert.equal(imported.status, 'active');
  assert.equal((await tether.proxy(imported.id).get('/v1/deals')).status, 200);
  await tether.connections.delete(imported.id);
  await assert.rejects(tether.connections.get(imported.id), (err) => err.code === 'connection_not_found');
  // The history outlives the connection, newest first, one page at a time.
  const first = await tether.connections.events(imported.id, { limit: 1 });
  assert.deepEqual(first.events.map((e) => e.type), ['deleted']);
  const rest = await tether.connections.events(imported.id, { cursor: first.next_cursor });
  // Revoking at the provider on delete is recorded too.
  assert.deepEqual(rest.events.map((e) => e.type), ['revocation', 'created']);
  assert.equal(rest.events[0].detail, 'revoked at the provider');
  assert.equal(rest.next_cursor, null);
  await assert.rejects(tether.connections.events('conn_00000000000000000000000000000000'), (err) => err.code === 'connection_not_found');
});

test('integrations and providers', async () => {
  const providers = await tether.providers.list();
  assert.ok(providers.some((p) => p.id === 'redtail' && p.auth_mode === 'two_step'));
  const salesforce = providers.find((p) => p.id === 'salesforce');
  assert.deepEqual(salesforce.end_user, []);
  assert.ok(salesforce.operator.some((item) => item.name === 'client_id'));
  assert.ok(salesforce.docs_url.startsWith('https://'));
  const oauth = demo.info.emulators.oauth;
  const put = await tether.integrations.put('ts-extra', {
    provider: 'oauth2',
    client_id: 'seed-client',
    client_secret: 'seed-secret',
    authorization_url: new URL('oauth/authorize', oauth).toString(),
    token_url: new URL('oauth/token', oauth).toString(),
    api_base_url: oauth,
  });
  assert.equal(put.key, 'ts-extra');
  assert.equal(JSON.stringify(put).includes('seed-secret'), false, 'the secret is never shown');
  const listed = await tether.integrations.list();
  assert.ok(listed.some((i) => i.key === 'ts-extra' && i.managed_by === 'api'));
  await tether.integrations.delete('ts-extra');
  assert.ok(!(await tether.integrations.list()).some((i) => i.key === 'ts-extra'));
});

test('webhook deliveries can be listed (none without [webhooks])', async () => {
  assert.deepEqual(await tether.webhookDeliveries.list({ limit: 5 }), []);
  await assert.rejects(tether.webhookDeliveries.get('evt_unknown'), (err) => err.status === 404);
});

test('verifyWebhook accepts Tether\'s signature and nothing else', async () => {
  const secret = 'whsec-for-the-client-test';
  const body = JSON.stringify({ id: 'evt_1', type: 'connection.created', connection_id: 'conn_1' });
  const t = 1_800_000_000;
  const v1 = createHmac('sha256', secret).update(`${t}.${body}`).digest('hex');
  const header = `t=${t},v1=${v1}`;
  assert.equal(await verifyWebhook(secret, header, body, { now: t + 10 }), true);
  assert.equal(await verifyWebhook(secret, header, new TextEncoder().encode(body), { now: t }), true);
  assert.equal(await verifyWebhook('another-secret', header, body, { now: t }), false);
  assert.equal(await verifyWebhook(secret, header, `${body} `, { now: t }), false, 'a changed body');
  assert.equal(await verifyWebhook(secret, header, body, { now: t + 301 }), false, 'too old');
  assert.equal(await verifyWebhook(secret, header, body, { now: t + 301, toleranceSeconds: 600 }), true);
  for (const bad of [null, '', 't=abc,v1=00', `v1=${v1}`, `t=${t}`, `t=${t},v1=zz`]) {
    assert.equal(await verifyWebhook(secret, bad, body, { now: t }), false, String(bad));
  }
});
