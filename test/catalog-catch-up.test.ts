// Every backup point is cataloged even when the appliance stops before the catalog job that
// follows the backup has run: at start, the protected VMs' points without a catalog (and without
// a recorded failed build) are built by one job, oldest first. A point whose build failed is left
// to the operator; a share that is no VM's is not touched.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { startAppliance, type Appliance } from './helpers/appliance.js';
import { makeExtDisk, makeTree } from './helpers/ext-image.js';
import { tmpDir } from './helpers/tmpdir.js';

async function waitJob(app: Appliance, id: string): Promise<any> {
  for (let i = 0; i < 600; i++) {
    const j = await app.api('GET', `/jobs/${id}`);
    if (j.body.state === 'succeeded' || j.body.state === 'failed') return j.body;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`job ${id} did not end`);
}

async function states(app: Appliance, share: string): Promise<Record<string, string>> {
  const r = await app.api('GET', `/catalog?share=${share}`);
  if (r.status !== 200) throw new Error(`catalog status: ${r.status} ${JSON.stringify(r.body)}`);
  return Object.fromEntries(r.body.points.map((s: any) => [s.point, s.state]));
}

t.test('a start catalogs the points a stop left without one', async (t) => {
  const dir = tmpDir(t);
  const tree = path.join(dir, 'tree');
  makeTree(tree, { 'etc/hostname': 'web01\n', 'etc/passwd': 'root:x:0:0::/root:/bin/sh\n' });
  const disk = path.join(dir, 'd.raw');
  makeExtDisk(disk, tree, 24);

  const data = path.join(dir, 'data');
  let app = await startAppliance(t, dir, [], { data });
  // A VM's share (vm.json at its top marks it as one) with three points; and a plain share.
  fs.mkdirSync(path.join(app.mount, 'web01'));
  fs.copyFileSync(disk, path.join(app.mount, 'web01/vda.raw'));
  fs.writeFileSync(path.join(app.mount, 'web01/vm.json'), '{"name":"web01"}\n');
  const vm = await app.api('POST', '/vms', { name: 'web01', qmp: `unix:${path.join(dir, 'none.qmp')}` });
  t.equal(vm.status, 201, `a VM over the share: ${JSON.stringify(vm.body)}`);
  fs.mkdirSync(path.join(app.mount, 'plain'));
  fs.copyFileSync(disk, path.join(app.mount, 'plain/vda.raw'));
  for (const [share, p] of [['web01', 'p1'], ['web01', 'p2'], ['web01', 'p3'], ['plain', 'q1']]) {
    t.equal((await app.api('POST', `/shares/${share}/snapshots`, { name: p })).status, 201, `snapshot ${share} ${p}`);
  }
  // p1 cataloged as a backup's job would; p2's build failed (its error recorded); p3 never built.
  const p1 = await app.api('POST', '/catalog/builds', { share: 'web01', point: 'p1' });
  t.equal((await waitJob(app, p1.body.job)).state, 'succeeded', 'p1 cataloged');
  t.equal(await app.stop(), 0, 'stopped cleanly');
  const catDir = path.join(data, 'catalog', 'web01');
  fs.writeFileSync(path.join(catDir, 'p2.error.json'), JSON.stringify({ error: 'a failure of the last run', at: new Date().toISOString() }) + '\n');

  app = await startAppliance(t, dir, [], { data });
  // The line comes right after the "control plane at" one the start waits for.
  for (let i = 0; i < 50 && !/have no catalog/.test(app.log()); i++) await new Promise((r) => setTimeout(r, 100));
  const m = /catalog: 1 restore point\(s\) have no catalog \(web01: 1\); building them as job ([0-9a-f]{12})/.exec(app.log());
  t.ok(m, `the start says what it catalogs:\n${app.log()}`);
  if (!m) return;
  const job = await waitJob(app, m[1]);
  t.equal(job.state, 'succeeded', `the catch-up job: ${JSON.stringify(job.error ?? job.result)}`);
  t.same(job.result, { built: 1, failed: [] }, 'it built one catalog');
  t.same(await states(app, 'web01'), { p1: 'cataloged', p2: 'failed', p3: 'cataloged' }, 'p3 cataloged; the failed p2 left to the operator');
  t.same(await states(app, 'plain'), { q1: 'none' }, 'a share that is no VM is not cataloged by itself');
  t.same(fs.readdirSync(path.join(app.mount, 'web01/.snapshots/p3/vda.raw.files/p1/etc')).sort(), ['hostname', 'passwd'], 'and p3 browses under .files/');

  // Nothing left: the next start starts no catalog job.
  t.equal(await app.stop(), 0, 'stopped cleanly again');
  app = await startAppliance(t, dir, [], { data });
  await new Promise((r) => setTimeout(r, 1000));
  t.notMatch(app.log(), /have no catalog/, 'a start with nothing to catch up starts nothing');
  const jobs = (await app.api('GET', '/jobs')).body.jobs;
  t.equal(jobs.filter((j: any) => j.kind === 'catalog' && j.state !== 'succeeded').length, 0, 'no catalog job running');
});
