// Sends every kind of bad input to every route of the OpenAPI document (see
// control-bad-input.test.ts and control-real.test.ts) and checks each answer is a 4xx with a
// JSON error message: never a 500, never a crash. Returns how many requests it sent.

import type { FastifyInstance } from 'fastify';
import type { TestT } from './tap-types.js';
export const BODY_LIMIT = 4096;

interface Operation {
  parameters?: Array<{ name: string; in: 'path' | 'query'; schema: { pattern?: string; type?: string; enum?: string[] } }>;
  requestBody?: { content: { 'application/json': { schema: { properties?: Record<string, { type?: string }> } } } };
}

const BAD_NAMES: Array<[string, string]> = [
  ['dot-dot-slash', '../etc'],
  ['encoded traversal', '..%2F..%2Fetc%2Fpasswd'],
  ['dot-dot', '..'],
  ['NUL', 'a%00b'],
  ['control character', 'a%0Ab'],
  ['4 KiB', 'x'.repeat(4096)],
  ['20 KiB', 'y'.repeat(20 * 1024)],
  ['bad percent-encoding', '%zz'],
  ['reserved', '.snapshots'],
];

const BAD_BODY_STRINGS: Array<[string, string]> = [
  ['dot-dot-slash', '../../etc/passwd'],
  ['absolute', '/etc/passwd'],
  ['NUL', 'a\u0000b'],
  ['4 KiB', 'z'.repeat(4096)],
  ['empty', ''],
  ['lone surrogate', 'x\ud800'],
];

const MALFORMED: Array<[string, string, string]> = [
  ['truncated JSON', 'application/json', '{"name": '],
  ['not JSON', 'application/json', 'name=vms'],
  ['array', 'application/json', '[]'],
  ['string', 'application/json', '"vms"'],
  ['number', 'application/json', '42'],
  ['null', 'application/json', 'null'],
  ['wrong field types', 'application/json', '{"name": 5, "from": [], "to": {}, "share": true, "snapshot": 1, "full": "yes"}'],
  ['unknown field', 'application/json', '{"bogus": 1}'],
  ['oversized', 'application/json', JSON.stringify({ name: 'x'.repeat(BODY_LIMIT + 1) })],
  ['text/plain', 'text/plain', 'vms'],
  ['form', 'application/x-www-form-urlencoded', 'name=vms'],
  ['empty JSON body', 'application/json', ''],
];

// AJV's own words, which name the validator's view of a request rather than what to change.
const VALIDATOR_WORDS = /must NOT have|must match pattern|must have required property|must be (string|object|boolean|integer|number|array|equal to)\b|^(body|params|querystring|headers) must|(^|\s)(body|params|querystring|headers)\//;

function validParam(name: string, schema: { pattern?: string }): string {
  if (schema.pattern !== undefined) return '0123456789ab';
  return name === 'snap' ? 'nightly' : 'vms';
}

function validBody(op: Operation): Record<string, unknown> {
  const props = op.requestBody?.content['application/json'].schema.properties ?? {};
  const body: Record<string, unknown> = {};
  for (const [k, p] of Object.entries(props)) {
    if (p.type === 'string') body[k] = k === 'from' ? 'web01.vmdk' : k === 'to' ? 'copy.vmdk' : k === 'snapshot' ? 'nightly' : k === 'share' ? 'vms' : 'fresh';
  }
  return body;
}


export async function sendBadInput(t: TestT, app: FastifyInstance, AUTH: Record<string, string>): Promise<number> {
  const s = { app };
  const doc = (await s.app.inject({ method: 'GET', url: '/api/v1/openapi.json' })).json() as { paths: Record<string, Record<string, Operation>> };
  const routes = Object.entries(doc.paths).flatMap(([path, ops]) => Object.entries(ops).map(([method, op]) => ({ path, method: method.toUpperCase(), op })));
  t.ok(routes.length >= 19, `${routes.length} routes in the document`);

  let requests = 0;
  const check = async (label: string, method: string, url: string, contentType: string | undefined, payload: string | undefined, mustFail: boolean) => {
    const headers: Record<string, string> = { ...AUTH };
    if (contentType !== undefined) headers['content-type'] = contentType;
    const res = await s.app.inject({ method: method as 'GET', url, headers, payload });
    requests++;
    const where = `${label}: ${method} ${url.slice(0, 70)}`;
    if (res.statusCode >= 500) {
      t.fail(`${where} -> ${res.statusCode} ${res.body.slice(0, 200)}`);
      return;
    }
    if (mustFail && (res.statusCode < 400 || res.statusCode >= 500)) {
      t.fail(`${where} -> ${res.statusCode}, expected a 4xx`);
      return;
    }
    if (res.statusCode >= 400) {
      let body: { error?: { code?: unknown; message?: unknown } } = {};
      try {
        body = res.json();
      } catch {
        t.fail(`${where}: error body is not JSON: ${res.body.slice(0, 100)}`);
        return;
      }
      if (typeof body.error?.code !== 'string' || typeof body.error?.message !== 'string' || body.error.message === '') {
        t.fail(`${where}: error body lacks code or message: ${res.body.slice(0, 200)}`);
        return;
      }
      if (res.body.length > 2000) t.fail(`${where}: error body echoes too much (${res.body.length} bytes)`);
      if (VALIDATOR_WORDS.test(body.error.message)) {
        t.fail(`${where}: the validator's words, not ours: ${body.error.message}`);
        return;
      }
    }
    t.pass(`${where} -> ${res.statusCode}`);
  };

  for (const { path, method, op } of routes) {
    const params = (op.parameters ?? []).filter((p) => p.in === 'path');
    const query = (op.parameters ?? []).filter((p) => p.in === 'query');
    const fill = (bad?: { name: string; value: string }) =>
      path.replace(/\{([^}]+)\}/g, (_m, name: string) => {
        if (bad?.name === name) return bad.value;
        const p = params.find((x) => x.name === name)!;
        return encodeURIComponent(validParam(name, p.schema));
      });
    const hasBody = op.requestBody !== undefined;
    const good = hasBody ? JSON.stringify(validBody(op)) : undefined;
    const goodType = hasBody ? 'application/json' : undefined;

    for (const p of params) {
      for (const [label, value] of BAD_NAMES) {
        await check(`path ${p.name} ${label}`, method, fill({ name: p.name, value }), goodType, good, true);
      }
    }
    for (const q of query) {
      for (const value of ['maybe', '1', 'x'.repeat(4096), '%00']) {
        await check(`query ${q.name}=${value.slice(0, 8)}`, method, `${fill()}?${q.name}=${value}`, goodType, good, true);
      }
    }
    await check('unknown query parameter', method, `${fill()}?bogus=1`, goodType, good, true);
    for (const [label, type, payload] of MALFORMED) {
      // GET bodies are not read; POST and DELETE bodies are, and refused where none is taken.
      await check(label, method, fill(), type, payload, method !== 'GET');
    }
    if (hasBody) {
      const props = op.requestBody!.content['application/json'].schema.properties ?? {};
      for (const [field, schema] of Object.entries(props)) {
        if (schema.type !== 'string') continue;
        // A secret (writeOnly: the SMB password) is any text of its length, not a name or path.
        if ((schema as { writeOnly?: boolean }).writeOnly === true) continue;
        for (const [label, value] of BAD_BODY_STRINGS) {
          await check(`body ${field} ${label}`, method, fill(), 'application/json', JSON.stringify({ ...validBody(op), [field]: value }), true);
        }
      }
    }
  }
  return requests;
}
