// Every route in the OpenAPI document gets malformed JSON, wrong types, an oversized body, the
// wrong media type, and names with "../", NUL or 4 KiB in every path parameter and body field.
// Each answer must be a 4xx with a JSON error message: never a 500, never a crash. Routes come
// from the document, so a new route is covered the day it is added.

import t from 'tap';
import { AUTH, testServer } from './helpers/control-server.js';
import { BODY_LIMIT, sendBadInput } from './helpers/bad-input.js';

t.test('bad input to every route: a 4xx with a message, never a 500', async (t) => {
  const s = await testServer(t, { bodyLimit: BODY_LIMIT });
  await s.call('POST', '/api/v1/shares', { name: 'vms' });
  await s.call('POST', '/api/v1/shares/vms/snapshots', { name: 'nightly' });
  s.services.addFile('vms', 'web01.vmdk', 1000);
  // Jobs would start for valid bodies; keep them short.
  s.services.plan = { steps: 1, stepMs: 1, perStep: 1 };

  const requests = await sendBadInput(t, s.app, AUTH);
  t.ok(requests > 300, `${requests} bad requests sent`);
  t.same([...s.services.shares.keys()], ['vms'], 'no bad request created a share');
  t.same([...s.services.shares.get('vms')!.snapshots.keys()], ['nightly'], 'or a snapshot');
  const health = await s.app.inject({ method: 'GET', url: '/api/v1/health' });
  t.equal(health.statusCode, 200, 'still serving');
});

t.test('the OpenAPI document describes every route with its parameters, body and responses', async (t) => {
  const s = await testServer(t);
  const res = await s.app.inject({ method: 'GET', url: '/api/v1/openapi.json' });
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /^application\/json/);
  const doc = res.json();
  t.equal(doc.openapi, '3.1.0');
  t.equal(doc.info.version, '0.0.0-test');
  t.same(doc.components.securitySchemes, { bearer: { type: 'http', scheme: 'bearer' } });
  const list = Object.entries(doc.paths as Record<string, Record<string, unknown>>)
    .flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`))
    .sort();
  t.same(list, [
    'DELETE /api/v1/exports/{protocol}/{share}',
    'DELETE /api/v1/hosts/{name}',
    'DELETE /api/v1/jobs/{id}',
    'DELETE /api/v1/policies/{name}',
    'DELETE /api/v1/shares/{name}',
    'DELETE /api/v1/shares/{share}/snapshots/{snap}',
    'DELETE /api/v1/vms/{name}',
    'GET /api/v1/agents',
    'GET /api/v1/cluster',
    'GET /api/v1/exports',
    'GET /api/v1/health',
    'GET /api/v1/hosts',
    'GET /api/v1/jobs',
    'GET /api/v1/jobs/{id}',
    'GET /api/v1/openapi.json',
    'GET /api/v1/policies',
    'GET /api/v1/policies/{name}',
    'GET /api/v1/shares',
    'GET /api/v1/shares/{name}',
    'GET /api/v1/shares/{share}/snapshots',
    'GET /api/v1/shares/{share}/snapshots/{snap}',
    'GET /api/v1/stats',
    'GET /api/v1/vms',
    'GET /api/v1/vms/{name}',
    'GET /api/v1/vms/{name}/backups',
    'POST /api/v1/agents/register',
    'POST /api/v1/agents/{name}/heartbeat',
    'POST /api/v1/agents/{name}/poll',
    'POST /api/v1/agents/{name}/requests/{id}/answer',
    'POST /api/v1/agents/{name}/tasks/{id}/done',
    'POST /api/v1/agents/{name}/tasks/{id}/progress',
    'POST /api/v1/exports/{protocol}/{share}',
    'POST /api/v1/fastcopy',
    'POST /api/v1/gc',
    'POST /api/v1/hosts',
    'POST /api/v1/index/rebuild',
    'POST /api/v1/policies',
    'POST /api/v1/policies/{name}/assign',
    'POST /api/v1/policies/{name}/prune',
    'POST /api/v1/policies/{name}/unassign',
    'POST /api/v1/shares',
    'POST /api/v1/shares/{share}/fastcopy',
    'POST /api/v1/shares/{share}/snapshots',
    'POST /api/v1/shares/{share}/snapshots/{snap}/clone',
    'POST /api/v1/verify',
    'POST /api/v1/vms',
    'POST /api/v1/vms/{name}/backups',
    'POST /api/v1/vms/{name}/restores',
    'PUT /api/v1/exports/smb/password',
  ]);
  const create = doc.paths['/api/v1/shares'].post;
  t.equal(create.operationId, 'createShare');
  t.same(create.requestBody.content['application/json'].schema.required, ['name']);
  t.ok(create.responses['201'] && create.responses['409'] && create.responses['401'], 'documents success and errors');
  t.same(doc.paths['/api/v1/health'].get.security, [], 'health is public');
  t.notOk('security' in doc.paths['/api/v1/stats'].get, 'stats uses the global bearer requirement');
  const del = doc.paths['/api/v1/shares/{name}'].delete;
  t.match(del.parameters, [{ name: 'name', in: 'path', required: true }, { name: 'force', in: 'query', required: false }]);
  t.notOk('content' in del.responses['204'], '204 has no body');
  t.equal(doc.paths['/api/v1/gc'].post.requestBody.required, false, 'gc takes no body');
});
