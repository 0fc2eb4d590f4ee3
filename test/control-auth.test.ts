// Bearer-token checks: in-process for every route shape, and once over a real socket.

import t from 'tap';
import { tokenMatches } from '../src/control/auth.js';
import { listen } from '../src/control/listen.js';
import { AUTH, TOKEN, testServer } from './helpers/control-server.js';

const WRONG = [
  ['no header', {}],
  ['wrong token', { authorization: `Bearer ${TOKEN.slice(0, -1)}x` }],
  ['token with a suffix', { authorization: `Bearer ${TOKEN}0` }],
  ['prefix of the token', { authorization: `Bearer ${TOKEN.slice(0, 10)}` }],
  ['basic scheme', { authorization: `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}` }],
  ['token without scheme', { authorization: TOKEN }],
  ['empty bearer', { authorization: 'Bearer ' }],
] as const;

t.test('tokenMatches is exact', async (t) => {
  t.equal(tokenMatches(TOKEN, TOKEN), true);
  t.equal(tokenMatches(TOKEN, TOKEN.toUpperCase()), false);
  t.equal(tokenMatches(TOKEN, ''), false);
  t.equal(tokenMatches(TOKEN, `${TOKEN} `), false);
});

t.test('401 for missing or wrong tokens, the same answer every time', async (t) => {
  const s = await testServer(t);
  const routes: Array<['GET' | 'POST' | 'DELETE', string]> = [
    ['GET', '/api/v1/stats'],
    ['GET', '/api/v1/shares'],
    ['POST', '/api/v1/shares'],
    ['DELETE', '/api/v1/shares/vms'],
    ['POST', '/api/v1/gc'],
    ['GET', '/api/v1/jobs/0123456789ab'],
    ['GET', '/api/v1/no-such-route'],
    ['GET', '/api/v1/shares/%zz'],
    ['GET', `/api/v1/shares/${'x'.repeat(20000)}`],
  ];
  const bodies = new Set<string>();
  for (const [label, headers] of WRONG) {
    for (const [method, url] of routes) {
      const res = await s.app.inject({ method, url, headers: { ...headers, 'content-type': 'application/json' }, payload: '{"name":"vms"}' });
      const what = `${label}: ${method} ${url.slice(0, 40)}`;
      t.equal(res.statusCode, 401, what);
      t.equal(res.headers['www-authenticate'], 'Bearer realm="vmvault"', `${what}: challenge`);
      t.notOk(res.body.includes(TOKEN.slice(0, 10)), `${what}: token not echoed`);
      bodies.add(res.body);
    }
  }
  t.equal(bodies.size, 1, 'one body for every failure: nothing says which part was wrong or whether the route exists');
  t.same(JSON.parse([...bodies][0]), { error: { code: 'UNAUTHORIZED', message: 'a valid API token is required (Authorization: Bearer <token>)' } });
  t.equal(s.services.shares.size, 0, 'nothing was created');
  t.same(s.services.calls, [], 'no job ran');
});

t.test('health and the OpenAPI document need no token; the right token opens the rest', async (t) => {
  const s = await testServer(t);
  const health = await s.app.inject({ method: 'GET', url: '/api/v1/health' });
  t.equal(health.statusCode, 200);
  t.same(health.json(), { status: 'ok', version: '0.0.0-test' });
  const doc = await s.app.inject({ method: 'GET', url: '/api/v1/openapi.json' });
  t.equal(doc.statusCode, 200);
  t.equal(doc.json().openapi, '3.1.0');
  const stats = await s.app.inject({ method: 'GET', url: '/api/v1/stats', headers: AUTH });
  t.equal(stats.statusCode, 200);
  const lower = await s.app.inject({ method: 'GET', url: '/api/v1/stats', headers: { authorization: `bearer ${TOKEN}` } });
  t.equal(lower.statusCode, 200, 'the scheme is case-insensitive');
});

t.test('health says closing with 503 while the appliance shuts down', async (t) => {
  const s = await testServer(t);
  s.services.healthReport = { status: 'closing' };
  const res = await s.app.inject({ method: 'GET', url: '/api/v1/health' });
  t.equal(res.statusCode, 503);
  t.equal(res.json().status, 'closing');
});

t.test('over a real socket on 127.0.0.1', async (t) => {
  const s = await testServer(t);
  const url = await listen(s.app, { port: 0 });
  t.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
  const health = await fetch(`${url}/api/v1/health`);
  t.equal(health.status, 200);
  const denied = await fetch(`${url}/api/v1/shares`);
  t.equal(denied.status, 401);
  t.equal(denied.headers.get('content-type'), 'application/json; charset=utf-8');
  t.same(await denied.json(), { error: { code: 'UNAUTHORIZED', message: 'a valid API token is required (Authorization: Bearer <token>)' } });
  const wrong = await fetch(`${url}/api/v1/shares`, { headers: { authorization: 'Bearer nope-nope-nope-nope' } });
  t.equal(wrong.status, 401);
  const ok = await fetch(`${url}/api/v1/shares`, { headers: AUTH });
  t.equal(ok.status, 200);
  t.same(await ok.json(), { shares: [] });
});
