// The control plane over the real services (store, namespace, jobs; no mount needed): every
// route gets bad input and answers 4xx, and the main flows work end to end.

import fs from 'node:fs';
import t from 'tap';
import { ApplianceServices } from '../src/appliance-services.js';
import { buildServer } from '../src/control/server.js';
import { Namespace } from '../src/namespace/namespace.js';
import { SegmentStore } from '../src/store/store.js';
import { BODY_LIMIT, sendBadInput } from './helpers/bad-input.js';
import { containerPath, listContainers } from './helpers/containers.js';
import { generate, Rng } from './helpers/data.js';
import type { TestT } from './helpers/tap-types.js';
import { writeFile } from './helpers/ns.js';
import { tmpDir } from './helpers/tmpdir.js';

const TOKEN = 'feedface'.repeat(8);
const AUTH = { authorization: `Bearer ${TOKEN}` };

async function realServer(t: TestT) {
  const dir = tmpDir(t);
  const store = await SegmentStore.open(dir);
  const ns = await Namespace.open(store, { log: () => {} });
  const app = await buildServer(new ApplianceServices(ns), { token: TOKEN, bodyLimit: BODY_LIMIT });
  t.teardown(async () => {
    await app.close();
    await ns.close();
    await store.close();
  });
  const call = async (method: 'GET' | 'POST' | 'DELETE', url: string, body?: unknown) => {
    const res = await app.inject({
      method,
      url: '/api/v1' + url,
      headers: body === undefined ? AUTH : { ...AUTH, 'content-type': 'application/json' },
      payload: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.statusCode, body: res.body ? res.json() : undefined };
  };
  const waitJob = async (id: string) => {
    for (;;) {
      const r = await call('GET', `/jobs/${id}`);
      if (!['queued', 'running'].includes(r.body.state)) return r.body;
      await new Promise((res) => setTimeout(res, 20));
    }
  };
  return { app, ns, store, dir, call, waitJob };
}

t.test('bad input to every route of the real appliance: 4xx, never 500', async (t) => {
  const s = await realServer(t);
  t.equal((await s.call('POST', '/shares', { name: 'vms' })).status, 201);
  await writeFile(s.ns, '/vms/web01.vmdk', Buffer.from('disk'));
  t.equal((await s.call('POST', '/shares/vms/snapshots', { name: 'nightly' })).status, 201);
  const requests = await sendBadInput(t, s.app, AUTH);
  t.ok(requests > 300, `${requests} bad requests sent`);
  const names = (await s.call('GET', '/shares')).body.shares.map((x: { name: string }) => x.name);
  t.ok(names.includes('vms'), 'the share survived');
  t.equal((await s.call('GET', '/shares/vms/snapshots/nightly')).status, 200, 'and its snapshot');
  t.equal((await s.app.inject({ method: 'GET', url: '/api/v1/health' })).statusCode, 200, 'still serving');
});

t.test('shares, snapshots, clones, fastcopy, stats and jobs end to end', async (t) => {
  const s = await realServer(t);
  const rng = new Rng(8);
  t.equal((await s.call('POST', '/shares', { name: 'vms' })).status, 201);
  t.equal((await s.call('POST', '/shares', { name: 'vms' })).status, 409, 'a second share of one name is a conflict');
  const img = generate(rng, 'text', 3 << 20);
  await writeFile(s.ns, '/vms/web01.vmdk', img);
  const snap = await s.call('POST', '/shares/vms/snapshots', { name: 'n1' });
  t.equal(snap.status, 201);
  t.equal(snap.body.files, 1);
  t.equal(snap.body.logicalBytes, img.length);
  const clone = await s.call('POST', '/shares/vms/snapshots/n1/clone', { name: 'vms-test' });
  t.equal(clone.status, 201);
  t.same(clone.body.origin, { share: 'vms', snapshot: 'n1' });
  const fc = await s.call('POST', '/shares/vms/fastcopy', { from: 'web01.vmdk', to: 'web01-copy.vmdk' });
  t.equal(fc.status, 201);
  t.equal(fc.body.logicalBytes, img.length);
  t.equal((await s.call('POST', '/shares/vms/fastcopy', { from: 'web01.vmdk', to: 'web01-copy.vmdk' })).status, 409, 'fastcopy does not overwrite');
  const stats = (await s.call('GET', '/stats')).body;
  t.equal(stats.shares, 2);
  t.equal(stats.snapshots, 1);
  t.equal(stats.logicalBytes, 4 * img.length, 'logical bytes count the share, its copy, the clone and the snapshot');
  t.ok(stats.storedBytes < img.length, `stored ${stats.storedBytes} bytes for ${stats.logicalBytes} logical`);
  // The ratios from figures measured on the real store: the container files on disk, the
  // segments in their tables (test/numbers.test.ts checks each figure in depth).
  await s.store.commit();
  const onDisk = listContainers(s.dir).reduce((n, id) => n + fs.statSync(containerPath(s.dir, id)).size, 0);
  t.equal(stats.storedBytes, onDisk, 'stored bytes: the container files on disk');
  t.equal(stats.totalRatio, stats.logicalBytes / onDisk, 'total ratio: logical over the bytes on disk');
  t.equal(stats.compressionRatio, stats.uniqueBytes / onDisk, 'compression ratio: unique over the bytes on disk');
  t.equal(stats.dedupRatio, (4 * img.length) / stats.uniqueBytes, 'dedup ratio: logical over unique');
  t.ok(stats.totalRatio > 4, `total ratio ${stats.totalRatio.toFixed(1)}`);
  t.equal((await s.call('DELETE', '/shares/vms')).status, 409, 'a share with files is not deleted');
  const v = await s.call('POST', '/verify', { full: true });
  t.equal(v.status, 202);
  const vj = await s.waitJob(v.body.job);
  t.equal(vj.state, 'succeeded');
  t.same(vj.result.problems, []);
  t.ok(vj.result.bytesRead > 0, `full verify read ${vj.result.bytesRead} bytes`);
  t.match(vj.progress, { unit: 'bytes', phase: 'checking files' }, "verify's last phase is named, in bytes");
  const vs = await s.waitJob((await s.call('POST', '/verify', { share: 'vms', snapshot: 'n1' })).body.job);
  t.equal(vs.result.target, 'snapshot vms/n1');
  t.equal((await s.call('POST', '/verify', { share: 'nope' })).status, 404, 'verify of an unknown share is a 404');
  t.equal((await s.call('DELETE', '/shares/vms/snapshots/n1')).status, 204);
  t.equal((await s.call('DELETE', '/shares/vms-test?force=true')).status, 204);
  await s.ns.fs.unlink('/vms/web01-copy.vmdk');
  await s.ns.fs.unlink('/vms/web01.vmdk');
  const gc = await s.waitJob((await s.call('POST', '/gc')).body.job);
  t.equal(gc.state, 'succeeded');
  t.ok(gc.result.reclaimedBytes > 0, `gc reclaimed ${gc.result.reclaimedBytes} bytes`);
  const rb = await s.waitJob((await s.call('POST', '/index/rebuild')).body.job);
  t.equal(rb.state, 'succeeded');
  t.same(rb.result.unreadableContainers, []);
  t.equal((await s.call('DELETE', '/shares/vms')).status, 204, 'an empty share is deleted');
});
