// What an agent may not do: place bytes under another fingerprint, call admin routes, keep
// using a revoked token, break the receiver with bad frames, or learn what other shares hold.

import t from 'tap';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { pooledFrameBuffers } from '../src/control/frame-body.js';
import { fingerprint } from '../src/store/codec/fingerprint.js';
import { TransferConnection } from '../src/transfer/client.js';
import { encodeQuery, encodeRecipe, encodeSegments, decodeQueryReply, FRAME_CONTENT_TYPE, FRAME_HEADER_BYTES, LIMITS } from '../src/transfer/frames.js';
import type { OpenReply } from '../src/transfer/messages.js';
import { sendFile } from '../src/transfer/sender.js';
import { readFile, writeFile } from './helpers/ns.js';
import { ADMIN, bufferSource, transferAppliance } from './helpers/transfer-appliance.js';

async function call(url: string, token: string, method: string, route: string, body?: Buffer | object, type?: string) {
  const headers: Record<string, string> = { authorization: `Bearer ${token}` };
  let payload: Buffer | string | undefined;
  if (Buffer.isBuffer(body)) {
    payload = body;
    headers['content-type'] = type ?? FRAME_CONTENT_TYPE;
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers['content-type'] = 'application/json';
  }
  const res = await fetch(url + route, { method, headers, body: payload });
  const buf = Buffer.from(await res.arrayBuffer());
  return { status: res.status, headers: res.headers, buf, json: () => JSON.parse(buf.toString()) };
}

async function openSession(url: string, token: string, share: string, path: string, size: number): Promise<OpenReply> {
  const r = await call(url, token, 'POST', '/api/v1/transfer/sessions', { protocol: 1, share, path, size });
  if (r.status !== 200) throw new Error(`open: ${r.status} ${r.buf.toString()}`);
  return r.json();
}

t.test('a forged segment is refused, logged, and nothing is stored under its fingerprint', async (t) => {
  const a = await transferAppliance(t);
  await a.ns.shares.create('vms');
  const { token } = await a.tokens.create('mallory');
  const s = await openSession(a.url, token, 'vms', 'x.raw', 8192);
  const victim = randomBytes(8192);
  const claimed = fingerprint(victim);
  const forged = randomBytes(8192);
  const r = await call(a.url, token, 'POST', `/api/v1/transfer/sessions/${s.session}/segments`, encodeSegments([{ fp: claimed, len: 8192, codec: 0, payload: forged }]));
  t.equal(r.status, 422);
  t.equal(r.json().error.code, 'SEGMENT_MISMATCH');
  t.match(r.json().error.message, claimed.toString('hex'), 'names the claimed fingerprint');
  t.match(a.logs.join('\n'), /refused a forged segment from agent:mallory/, 'logged');
  t.same(await a.store.missingSegments([claimed]), [true], 'nothing stored under it');
  // A recipe naming it is refused too.
  const rr = await call(a.url, token, 'POST', `/api/v1/transfer/sessions/${s.session}/recipe`, encodeRecipe(0, [{ kind: 'segment', fp: claimed, len: 8192 }]));
  t.equal(rr.status, 404);
  t.equal(rr.json().error.code, 'NOT_FOUND');
  // The real bytes are accepted afterwards.
  const s2 = await openSession(a.url, token, 'vms', 'x.raw', 8192);
  const ok = await call(a.url, token, 'POST', `/api/v1/transfer/sessions/${s2.session}/segments`, encodeSegments([{ fp: claimed, len: 8192, codec: 0, payload: victim }]));
  t.equal(ok.status, 200);
  t.same(ok.json(), { stored: 1, duplicates: 0 });
});

t.test('a recipe of protocol 2 ("old" entries) is refused in a session opened with protocol 1, and as a version-1 frame', async (t) => {
  const a = await transferAppliance(t);
  await a.ns.shares.create('vms');
  const { token } = await a.tokens.create('old-agent');
  const s = await openSession(a.url, token, 'vms', 'y.raw', 8192);
  t.equal(s.protocol, 1, 'the session speaks what was asked');
  const r = await call(a.url, token, 'POST', `/api/v1/transfer/sessions/${s.session}/recipe`, encodeRecipe(0, [{ kind: 'old', len: 4096 }], 2));
  t.equal(r.status, 400);
  t.match(r.json().error.message, /version-2 recipe in a session opened with protocol 1/);
  // The same entry in a frame that says version 1 is an unknown kind.
  const v1 = encodeRecipe(0, [{ kind: 'old', len: 4096 }], 2);
  v1[4] = 1;
  const s2 = await openSession(a.url, token, 'vms', 'y.raw', 8192);
  const r2 = await call(a.url, token, 'POST', `/api/v1/transfer/sessions/${s2.session}/recipe`, v1);
  t.equal(r2.status, 400);
  t.match(r2.json().error.message, /unknown kind 3/);
  const r3 = await call(a.url, token, 'POST', '/api/v1/transfer/sessions', { protocol: 3, share: 'vms', path: 'y.raw', size: 1 });
  t.equal(r3.status, 501, 'a protocol beyond the newest is refused');
});

t.test('a frame of segments decoded and re-hashed as a batch: those before a forged one are kept, it and those after are not', async (t) => {
  const a = await transferAppliance(t);
  await a.ns.shares.create('vms');
  const { token } = await a.tokens.create('mallory2');
  const s = await openSession(a.url, token, 'vms', 'z.raw', 8192);
  // More than one decode group (2 MiB each): 400 segments of 8 KiB, the forged one at 300.
  const segs = Array.from({ length: 400 }, () => randomBytes(8192));
  const entries = segs.map((b) => ({ fp: fingerprint(b), len: 8192, codec: 0 as const, payload: b }));
  entries[300] = { ...entries[300], payload: randomBytes(8192) };
  const r = await call(a.url, token, 'POST', `/api/v1/transfer/sessions/${s.session}/segments`, encodeSegments(entries));
  t.equal(r.status, 422);
  t.match(r.json().error.message, entries[300].fp.toString('hex'));
  const missing = await a.store.missingSegments(entries.map((e) => e.fp));
  t.equal(missing.slice(0, 300).filter((m) => m).length, 0, 'the 300 before it are stored');
  t.equal(missing.slice(300).filter((m) => !m).length, 0, 'it and the 99 after it are not');
});

t.test('agent tokens: 403 on admin routes, 401 at once when revoked, hashed at rest; failed auth is rate limited', async (t) => {
  const a = await transferAppliance(t, { authFailures: { limit: 5, windowMs: 60_000 } });
  await a.ns.shares.create('vms');
  const made = await call(a.url, ADMIN, 'POST', '/api/v1/agents/tokens', { name: 'host-a' });
  t.equal(made.status, 201);
  const token = made.json().token as string;
  t.match(token, /^vva_[0-9a-f]{64}$/);
  const list = await call(a.url, ADMIN, 'GET', '/api/v1/agents/tokens');
  t.match(list.json(), [{ name: 'host-a', trusted: false }]);
  t.notMatch(list.buf.toString(), token, 'the list never shows a token');
  const { readFileSync } = await import('node:fs');
  const stored = readFileSync(`${a.dir}/agent-tokens.json`, 'utf8');
  t.notMatch(stored, token.slice(4), 'the file holds no token, only its digest');
  for (const [method, route, body] of [
    ['GET', '/api/v1/shares', undefined],
    ['DELETE', '/api/v1/shares/vms', undefined],
    ['POST', '/api/v1/agents/tokens', { name: 'more' }],
    ['GET', '/api/v1/agents/tokens', undefined],
    ['GET', '/api/v1/stats', undefined],
  ] as const) {
    const r = await call(a.url, token, method, route, body);
    t.equal(r.status, 403, `${method} ${route}: 403`);
    t.equal(r.json().error.code, 'FORBIDDEN');
  }
  t.ok((await a.ns.shares.list()).some((s) => s.name === 'vms'), 'the share is still there');
  const hello = await call(a.url, token, 'GET', '/api/v1/transfer/hello');
  t.equal(hello.status, 200, 'agent routes work');
  const conn = await TransferConnection.open({ url: a.url, token });
  t.teardown(() => conn.close());
  const del = await call(a.url, ADMIN, 'DELETE', '/api/v1/agents/tokens/host-a');
  t.equal(del.status, 204);
  const after = await call(a.url, token, 'GET', '/api/v1/transfer/hello');
  t.equal(after.status, 401, 'revoked: 401 on the next request');
  await t.rejects(sendFile(conn, bufferSource(randomBytes(10000)), { share: 'vms', path: 'a', size: 10000 }), { code: 'UNAUTHORIZED' }, 'an open connection is refused too');
  // Failed authentications: after the limit, 429 with Retry-After, for a while even with a good token? No: only bad ones count.
  let last = 0;
  let retry: string | null = null;
  for (let i = 0; i < 8; i++) {
    const r = await call(a.url, 'vva_' + '0'.repeat(64), 'GET', '/api/v1/transfer/hello');
    last = r.status;
    retry = r.headers.get('retry-after');
  }
  t.equal(last, 429, 'rate limited');
  t.ok(Number(retry) > 0, `Retry-After: ${retry}`);
  const admin = await call(a.url, ADMIN, 'GET', '/api/v1/health');
  t.equal(admin.status, 200, 'a valid token still works');
});

t.test('bad frames get a 4xx and the appliance keeps serving', async (t) => {
  const a = await transferAppliance(t);
  await a.ns.shares.create('vms');
  const { token } = await a.tokens.create('fuzzer');
  const s = await openSession(a.url, token, 'vms', 'f.raw', 100_000);
  const route = (what: string) => `/api/v1/transfer/sessions/${s.session}/${what}`;
  const q = encodeQuery([{ fp: randomBytes(32), len: 4096 }]);
  const wrongVersion = Buffer.from(q);
  wrongVersion[4] = 9;
  const lying = Buffer.from(q);
  lying.writeUInt32LE(5, 8); // count says 5, body holds 1
  const bigLen = Buffer.from(q);
  bigLen.writeUInt32LE(1 << 30, FRAME_HEADER_BYTES + 32);
  const seg = encodeSegments([{ fp: randomBytes(32), len: 100, codec: 1, payload: randomBytes(50) }]);
  const segLies = Buffer.from(seg);
  segLies.writeUInt32LE(1 << 20, FRAME_HEADER_BYTES + 37); // payload length past the end
  const cases: Array<[string, string, Buffer, number[]]> = [
    ['truncated header', 'query', q.subarray(0, 10), [400]],
    ['truncated body', 'query', q.subarray(0, q.length - 3), [400]],
    ['wrong version', 'query', wrongVersion, [400]],
    ['count that lies', 'query', lying, [400]],
    ['segment length beyond the maximum', 'query', bigLen, [400]],
    ['wrong frame type', 'recipe', q, [400]],
    ['payload length past the end', 'segments', segLies, [400]],
    ['lz4 that is not lz4', 'segments', seg, [422]],
    ['empty body', 'query', Buffer.alloc(0), [400]],
    ['oversized', 'query', Buffer.alloc(LIMITS.frameBytes + 1), [413]],
  ];
  for (const [what, r, body, statuses] of cases) {
    const res = await call(a.url, token, 'POST', route(r), body);
    t.ok(statuses.includes(res.status), `${what}: ${res.status} ${res.buf.toString().slice(0, 160)}`);
  }
  const unknown = await call(a.url, token, 'POST', '/api/v1/transfer/sessions/00112233445566778899aabbccddeeff/query', q);
  t.equal(unknown.status, 404, 'unknown session: 404');
  const json = await call(a.url, token, 'POST', route('query'), { not: 'a frame' });
  t.ok(json.status >= 400 && json.status < 500, `JSON where a frame belongs: ${json.status}`);
  // Still serving, and a good send works.
  const data = randomBytes(200_000);
  const conn = await TransferConnection.open({ url: a.url, token });
  t.teardown(() => conn.close());
  await sendFile(conn, bufferSource(data), { share: 'vms', path: 'good.raw', size: data.length });
  t.ok((await readFile(a.ns, '/vms/good.raw')).equals(data), 'a good send still works');
});

// A frame as node:http sends it: `declared` as Content-Length (undefined: chunked), `send` of
// it in 64 KiB writes; `cut`: the client goes away after those bytes.
function rawPost(url: string, token: string, route: string, body: Buffer, opts: { declared?: number; cut?: boolean } = {}): Promise<{ status: number; text: string } | 'cut'> {
  const u = new URL(url + route);
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { authorization: `Bearer ${token}`, 'content-type': FRAME_CONTENT_TYPE };
    if (opts.declared !== undefined) headers['content-length'] = opts.declared;
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(parts).toString() }));
    });
    req.on('error', (err) => (opts.cut ? resolve('cut') : reject(err)));
    for (let at = 0; at < body.length; at += 64 * 1024) req.write(body.subarray(at, at + 64 * 1024));
    if (opts.cut) setTimeout(() => (req.destroy(), resolve('cut')), 100);
    else req.end();
  });
}

t.test('frame bodies are read into reused buffers, with the same 4xx as before for bodies that lie about their size', async (t) => {
  const a = await transferAppliance(t);
  await a.ns.shares.create('vms');
  const { token } = await a.tokens.create('reuser');
  const s = await openSession(a.url, token, 'vms', 'f.raw', 100_000);
  const route = (what: string) => `/api/v1/transfer/sessions/${s.session}/${what}`;
  // Two segments frames in turn: the second is read into the buffer the first gave back.
  const one = randomBytes(60_000);
  const two = randomBytes(40_000);
  for (const data of [one, two]) {
    const fp = fingerprint(data);
    const r = await call(a.url, token, 'POST', route('segments'), encodeSegments([{ fp, len: data.length, codec: 0, payload: data }]));
    t.equal(r.status, 200, r.buf.toString());
    t.same(r.json(), { stored: 1, duplicates: 0 });
    t.equal(pooledFrameBuffers(), 1, 'the frame\'s buffer went back to the pool');
  }
  // What they stored is what was sent (no byte of the earlier frame in the later one).
  const rec = encodeRecipe(0, [
    { kind: 'segment', fp: fingerprint(one), len: one.length },
    { kind: 'segment', fp: fingerprint(two), len: two.length },
  ]);
  t.equal((await call(a.url, token, 'POST', route('recipe'), rec)).status, 200);
  t.equal((await call(a.url, token, 'POST', route('finish'), {})).status, 200);
  t.ok((await readFile(a.ns, '/vms/f.raw')).equals(Buffer.concat([one, two])), 'the file is both segments, in order');

  // Chunked (no Content-Length): still read, and still limited.
  const s2 = await openSession(a.url, token, 'vms', 'g.raw', 100_000);
  const q = encodeQuery([{ fp: randomBytes(32), len: 4096 }]);
  const chunked = await rawPost(a.url, token, `/api/v1/transfer/sessions/${s2.session}/query`, q);
  t.equal(chunked !== 'cut' && chunked.status, 200, 'a chunked frame is read');
  const huge = await rawPost(a.url, token, `/api/v1/transfer/sessions/${s2.session}/query`, Buffer.alloc(LIMITS.frameBytes + 64 * 1024));
  t.match(huge, { status: 413 }, 'a chunked body past the frame limit: 413');
  // A client that goes away mid-frame: its buffer is given back, and the appliance serves on.
  const before = pooledFrameBuffers();
  t.equal(await rawPost(a.url, token, `/api/v1/transfer/sessions/${s2.session}/query`, q.subarray(0, 20), { declared: q.length, cut: true }), 'cut');
  await new Promise((r) => setTimeout(r, 200));
  t.equal(pooledFrameBuffers(), before, 'the cut frame\'s buffer is back in the pool');
  const after = await call(a.url, token, 'POST', `/api/v1/transfer/sessions/${s2.session}/query`, q);
  t.equal(after.status, 200, 'the next frame is answered');
  t.same(decodeQueryReply(after.buf, 1), [true]);
});

t.test('scope: an agent cannot learn whether another share holds a segment', async (t) => {
  const a = await transferAppliance(t);
  await a.ns.shares.create('secret');
  await a.ns.shares.create('vms');
  const secret = randomBytes(1 << 20);
  await writeFile(a.ns, '/secret/payroll.db', secret);
  await a.ns.flushAll();
  const fp = fingerprint(secret.subarray(0, 4096)); // not necessarily a segment: take real ones below
  void fp;
  // The real segments of the secret file, as the store cut them.
  const v = await a.ns.installer.current('secret/payroll.db');
  const leaves: Array<{ fp: Buffer; len: number }> = [];
  for await (const { entry } of a.store.view(v).leaves(0, v.size)) leaves.push({ fp: Buffer.from(entry.fp), len: entry.len });
  t.ok(leaves.length > 10);
  t.same(await a.store.missingSegments(leaves.map((l) => l.fp)), leaves.map(() => false), 'the store holds them');
  const { token } = await a.tokens.create('curious');
  const s = await openSession(a.url, token, 'vms', 'probe.raw', leaves[0].len);
  const q = await call(a.url, token, 'POST', `/api/v1/transfer/sessions/${s.session}/query`, encodeQuery(leaves));
  t.equal(q.status, 200);
  t.same(decodeQueryReply(q.buf, leaves.length), leaves.map(() => true), 'every one is "missing" to an agent of another share');
  const rr = await call(a.url, token, 'POST', `/api/v1/transfer/sessions/${s.session}/recipe`, encodeRecipe(0, [{ kind: 'segment', fp: leaves[0].fp, len: leaves[0].len }]));
  t.equal(rr.json().error?.code, 'NOT_FOUND', 'nor can a recipe confirm one');
  // Sending the bytes costs no space (dedup), and then the agent's task knows them.
  const before = (await a.store.stats()).storedBytes;
  const conn = await TransferConnection.open({ url: a.url, token });
  t.teardown(() => conn.close());
  const rep = await sendFile(conn, bufferSource(secret), { share: 'vms', path: 'copy.raw', size: secret.length });
  t.equal(rep.segmentsSent, rep.segments, 'all sent');
  t.ok((await a.store.stats()).storedBytes - before < 64 * 1024, 'no new space');
  // A trusted agent gets store-wide answers.
  const trusted = await a.tokens.create('trusted', { trusted: true });
  const s3 = await openSession(a.url, trusted.token, 'vms', 'probe2.raw', 1);
  const q3 = await call(a.url, trusted.token, 'POST', `/api/v1/transfer/sessions/${s3.session}/query`, encodeQuery(leaves));
  t.same(decodeQueryReply(q3.buf, leaves.length), leaves.map(() => false), 'trusted: known store-wide');
  // Another agent's session is not reachable.
  const other = await a.tokens.create('other');
  const q4 = await call(a.url, other.token, 'POST', `/api/v1/transfer/sessions/${s3.session}/query`, encodeQuery(leaves));
  t.equal(q4.status, 404, 'another agent\'s session: 404');
});
