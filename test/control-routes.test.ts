// Shares, snapshots, clones, fastcopy and stats over inject(), against the in-memory double.

import t from 'tap';
import { testServer } from './helpers/control-server.js';

t.test('shares: create, list, get, delete, with the statuses and bodies promised', async (t) => {
  const s = await testServer(t);
  const created = await s.call('POST', '/api/v1/shares', { name: 'vms' });
  t.equal(created.statusCode, 201);
  t.equal(created.headers.location, '/api/v1/shares/vms');
  t.match(created.json(), { name: 'vms', files: 0, logicalBytes: 0, snapshots: 0, created: /^\d{4}-\d\d-\d\dT/ });
  t.notOk('origin' in created.json(), 'no origin for a new share');

  const dup = await s.call('POST', '/api/v1/shares', { name: 'vms' });
  t.equal(dup.statusCode, 409);
  t.same(dup.json(), { error: { code: 'ALREADY_EXISTS', message: 'share vms already exists' } });

  await s.call('POST', '/api/v1/shares', { name: 'backups' });
  const list = await s.call('GET', '/api/v1/shares');
  t.equal(list.statusCode, 200);
  t.same(list.json().shares.map((x: { name: string }) => x.name), ['backups', 'vms']);

  s.services.addFile('vms', 'web01.vmdk', 3 << 20);
  const one = await s.call('GET', '/api/v1/shares/vms');
  t.equal(one.statusCode, 200);
  t.match(one.json(), { name: 'vms', files: 1, logicalBytes: 3 << 20 });

  const missing = await s.call('GET', '/api/v1/shares/nope');
  t.equal(missing.statusCode, 404);
  t.same(missing.json(), { error: { code: 'NOT_FOUND', message: 'no share nope' } });

  const notEmpty = await s.call('DELETE', '/api/v1/shares/vms');
  t.equal(notEmpty.statusCode, 409);
  t.equal(notEmpty.json().error.code, 'NOT_EMPTY');
  t.ok(s.services.shares.has('vms'), 'still there');

  const forced = await s.call('DELETE', '/api/v1/shares/vms?force=true');
  t.equal(forced.statusCode, 204);
  t.equal(forced.body, '');
  t.notOk(s.services.shares.has('vms'));
  const empty = await s.call('DELETE', '/api/v1/shares/backups?force=false');
  t.equal(empty.statusCode, 204, 'an empty share goes without force');
  t.same((await s.call('GET', '/api/v1/shares')).json(), { shares: [] });
});

t.test('snapshots and clones', async (t) => {
  const s = await testServer(t);
  await s.call('POST', '/api/v1/shares', { name: 'vms' });
  s.services.addFile('vms', 'web01.vmdk', 1000);
  s.services.addFile('vms', 'db01.vmdk', 2000);

  const snap = await s.call('POST', '/api/v1/shares/vms/snapshots', { name: 'nightly-2026-11-22' });
  t.equal(snap.statusCode, 201);
  t.equal(snap.headers.location, '/api/v1/shares/vms/snapshots/nightly-2026-11-22');
  t.match(snap.json(), { share: 'vms', name: 'nightly-2026-11-22', files: 2, logicalBytes: 3000 });

  t.equal((await s.call('POST', '/api/v1/shares/vms/snapshots', { name: 'nightly-2026-11-22' })).statusCode, 409);
  t.equal((await s.call('POST', '/api/v1/shares/nope/snapshots', { name: 'x' })).statusCode, 404);

  const list = await s.call('GET', '/api/v1/shares/vms/snapshots');
  t.equal(list.statusCode, 200);
  t.same(list.json().snapshots.map((x: { name: string }) => x.name), ['nightly-2026-11-22']);
  const got = await s.call('GET', '/api/v1/shares/vms/snapshots/nightly-2026-11-22');
  t.equal(got.statusCode, 200);
  t.equal(got.json().files, 2);
  t.equal((await s.call('GET', '/api/v1/shares/vms/snapshots/other')).statusCode, 404);

  const clone = await s.call('POST', '/api/v1/shares/vms/snapshots/nightly-2026-11-22/clone', { name: 'vms-test' });
  t.equal(clone.statusCode, 201);
  t.equal(clone.headers.location, '/api/v1/shares/vms-test');
  t.match(clone.json(), { name: 'vms-test', files: 2, logicalBytes: 3000, origin: { share: 'vms', snapshot: 'nightly-2026-11-22' } });
  t.equal((await s.call('POST', '/api/v1/shares/vms/snapshots/nightly-2026-11-22/clone', { name: 'vms-test' })).statusCode, 409);
  const badClone = await s.call('POST', '/api/v1/shares/vms/snapshots/nightly-2026-11-22/clone', { name: '.hidden' });
  t.equal(badClone.statusCode, 400);
  t.match(badClone.json().error.message, /share name ".hidden" starts with '.'/);

  const shares = (await s.call('GET', '/api/v1/shares')).json().shares;
  t.match(shares.find((x: { name: string }) => x.name === 'vms'), { snapshots: 1 });

  const del = await s.call('DELETE', '/api/v1/shares/vms/snapshots/nightly-2026-11-22');
  t.equal(del.statusCode, 204);
  t.equal((await s.call('DELETE', '/api/v1/shares/vms/snapshots/nightly-2026-11-22')).statusCode, 404);
  t.same((await s.call('GET', '/api/v1/shares/vms/snapshots')).json(), { snapshots: [] });
});

t.test('fastcopy', async (t) => {
  const s = await testServer(t);
  await s.call('POST', '/api/v1/shares', { name: 'vms' });
  s.services.addFile('vms', 'web01.vmdk', 4096);
  const ok = await s.call('POST', '/api/v1/shares/vms/fastcopy', { from: 'web01.vmdk', to: 'web01-copy.vmdk' });
  t.equal(ok.statusCode, 201);
  t.same(ok.json(), { share: 'vms', from: 'web01.vmdk', to: 'web01-copy.vmdk', logicalBytes: 4096 });
  t.equal(s.services.shares.get('vms')?.files.get('web01-copy.vmdk'), 4096);

  const exists = await s.call('POST', '/api/v1/shares/vms/fastcopy', { from: 'web01.vmdk', to: 'web01-copy.vmdk' });
  t.equal(exists.statusCode, 409);
  const missing = await s.call('POST', '/api/v1/shares/vms/fastcopy', { from: 'nope.vmdk', to: 'x.vmdk' });
  t.equal(missing.statusCode, 404);

  for (const [from, to, message] of [
    ['../other/web01.vmdk', 'x', /^from .*'\.\.'/],
    ['web01.vmdk', '/etc/passwd', /^to .*relative/],
    ['.snapshots/n/web01.vmdk', 'x', /^from .*\.snapshots/],
    ['web01.vmdk', 'a\u0000b', /^to .*NUL/],
  ] as const) {
    const res = await s.call('POST', '/api/v1/shares/vms/fastcopy', { from, to });
    t.equal(res.statusCode, 400, `${from} -> ${to}`);
    t.match(res.json().error.message, message);
  }
  const missingField = await s.call('POST', '/api/v1/shares/vms/fastcopy', { from: 'web01.vmdk' });
  t.equal(missingField.statusCode, 400);
  t.equal(missingField.json().error.message, 'the request body needs "to" (the target path)');
});

t.test('stats carries every field a person reads', async (t) => {
  const s = await testServer(t);
  await s.call('POST', '/api/v1/shares', { name: 'vms' });
  s.services.addFile('vms', 'a.vmdk', 8 << 20);
  const res = await s.call('GET', '/api/v1/stats');
  t.equal(res.statusCode, 200);
  t.same(res.json(), {
    logicalBytes: 8 << 20,
    ingestedBytes: 8 << 20,
    uniqueBytes: 2 << 20,
    storedBytes: 1 << 20,
    dedupRatio: 4,
    compressionRatio: 2,
    totalRatio: 8,
    segments: 256,
    containers: 1,
    reclaimableBytes: null,
    deadBytesKept: null,
    lastGcAt: null,
    shares: 1,
    snapshots: 0,
  });
});

t.test('unknown routes and methods: 404 in the error shape', async (t) => {
  const s = await testServer(t);
  for (const [method, url] of [
    ['GET', '/api/v1/nothing'],
    ['DELETE', '/api/v1/stats'],
    ['POST', '/api/v1/shares/vms'],
    ['GET', '/api/v2/shares'],
  ] as const) {
    const res = await s.call(method, url);
    t.equal(res.statusCode, 404, `${method} ${url}`);
    t.equal(res.json().error.code, 'NOT_FOUND');
    t.match(res.json().error.message, /openapi\.json/);
  }
});

t.test('a bug in a service is a 500 INTERNAL without its details, never a crash', async (t) => {
  const s = await testServer(t);
  s.services.listShares = async () => {
    throw new TypeError('secret internal detail');
  };
  const res = await s.call('GET', '/api/v1/shares');
  t.equal(res.statusCode, 500);
  t.same(res.json(), { error: { code: 'INTERNAL', message: 'internal error; see the appliance log' } });
  t.equal((await s.call('GET', '/api/v1/stats')).statusCode, 200, 'the server still serves');
});
