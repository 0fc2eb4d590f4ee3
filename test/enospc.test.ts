// A full data disk, for real: the appliance's data directory is a small tmpfs. Writers get
// ENOSPC, what was written before stays intact, the store verifies clean, and once space is
// freed (delete files, run GC) writing works again.

import t from 'tap';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { startAppliance, type Appliance } from './helpers/appliance.js';
import { Rng } from './helpers/data.js';
import { tmpDir } from './helpers/tmpdir.js';

const run = promisify(execFile);
const MiB = 1024 * 1024;

async function waitJob(app: Appliance, id: string): Promise<any> {
  for (;;) {
    const r = await app.api('GET', `/jobs/${id}`);
    if (['succeeded', 'failed', 'cancelled'].includes(r.body.state)) return r.body;
    await new Promise((res) => setTimeout(res, 100));
  }
}

t.test('the data disk fills up, and recovers after space is freed', async (t) => {
  const dir = tmpDir(t);
  const tfs = path.join(dir, 'tfs');
  fs.mkdirSync(tfs);
  await run('mount', ['-t', 'tmpfs', '-o', 'size=96m', 'tmpfs', tfs]);
  // Registered first, so it runs after the appliance's own teardown has stopped it.
  t.teardown(() => run('umount', ['-l', tfs]).catch(() => {}));
  const app = await startAppliance(t, dir, [], { data: path.join(tfs, 'data') });
  t.equal((await app.api('POST', '/shares', { name: 'vms' })).status, 201);
  const rng = new Rng(9);
  const src = path.join(dir, 'src');
  fs.mkdirSync(src);
  const written: Array<{ name: string; sha: string }> = [];
  let full: string | undefined;
  for (let i = 0; i < 40 && !full; i++) {
    const data = rng.bytes(8 * MiB); // random: compression cannot stretch the disk
    const file = path.join(src, `f${i}`);
    fs.writeFileSync(file, data);
    try {
      await run('dd', [`if=${file}`, `of=${path.join(app.mount, 'vms', `f${i}`)}`, 'bs=1M', 'conv=fsync'], { timeout: 60_000 });
      written.push({ name: `f${i}`, sha: createHash('sha256').update(data).digest('hex') });
    } catch (err) {
      full = String((err as { stderr?: string }).stderr ?? err);
    }
  }
  t.match(full, /No space left on device/, 'a writer gets ENOSPC');
  t.ok(written.length >= 3, `${written.length} files of 8 MiB fit before that`);
  let bad = 0;
  for (const w of written) {
    const got = createHash('sha256').update(fs.readFileSync(path.join(app.mount, 'vms', w.name))).digest('hex');
    if (got !== w.sha) bad++;
  }
  t.equal(bad, 0, 'every file written before the disk filled reads back identical');
  const v = await app.api('POST', '/verify', { full: true });
  t.equal(v.status, 202);
  const vj = await waitJob(app, v.body.job);
  t.equal(vj.state, 'succeeded', 'verify runs on a full disk');
  t.same(vj.result.problems, [], 'and finds the store consistent');
  // Free space: delete half the files (and the partial one), then collect.
  for (const name of fs.readdirSync(path.join(app.mount, 'vms')).filter((n) => n !== '.snapshots')) {
    const k = Number(name.slice(1));
    if (k % 2 === 0 || !written.some((w) => w.name === name)) fs.unlinkSync(path.join(app.mount, 'vms', name));
  }
  const g = await app.api('POST', '/gc');
  t.equal(g.status, 202);
  const gj = await waitJob(app, g.body.job);
  t.equal(gj.state, 'succeeded', 'GC runs on a full disk');
  t.ok(gj.result.reclaimedBytes > 8 * MiB, `GC reclaimed ${gj.result.reclaimedBytes} bytes`);
  const again = rng.bytes(8 * MiB);
  const file = path.join(src, 'again');
  fs.writeFileSync(file, again);
  await run('dd', [`if=${file}`, `of=${path.join(app.mount, 'vms', 'again')}`, 'bs=1M', 'conv=fsync']);
  t.ok(fs.readFileSync(path.join(app.mount, 'vms', 'again')).equals(again), 'after space was freed, a new file is written and reads back');
  for (const w of written.filter((x) => Number(x.name.slice(1)) % 2 === 1)) {
    const got = createHash('sha256').update(fs.readFileSync(path.join(app.mount, 'vms', w.name))).digest('hex');
    t.equal(got, w.sha, `${w.name} is still intact`);
  }
  t.equal(await app.stop(), 0, 'the appliance stops cleanly');
});
