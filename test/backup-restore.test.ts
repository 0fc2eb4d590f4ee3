// Restore of a point out of its snapshot through the namespace (real store, real LevelDB, real
// qemu-img): raw is sparse and byte-identical, qcow2 converts back to the same bytes, an existing
// target is refused, and a failed restore leaves nothing behind.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { isVmvaultError } from '../src/errors.js';
import { restorePoint } from '../src/backup/restore.js';
import { generate, Rng } from './helpers/data.js';
import { openNs, writeFile } from './helpers/ns.js';
import { runTool } from './helpers/run-tool.js';
import type { TestT } from './helpers/tap-types.js';
import { tmpDir } from './helpers/tmpdir.js';

const MiB = 1024 * 1024;

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** 24 MiB: data, then 8 MiB of zeros, then data, then zeros to the end. */
function disk(seed: number): Buffer {
  const rng = new Rng(seed);
  const b = Buffer.alloc(24 * MiB);
  generate(rng, 'random', 6 * MiB).copy(b, 0);
  generate(rng, 'text', 4 * MiB).copy(b, 14 * MiB);
  return b;
}

async function setup(t: TestT) {
  const dir = tmpDir(t);
  const { ns } = await openNs(t, path.join(dir, 'store'));
  await ns.shares.create('web01');
  const vda = disk(1);
  const vdb = disk(2);
  await writeFile(ns, '/web01/vda.raw', vda);
  await writeFile(ns, '/web01/vdb.raw', vdb);
  await writeFile(ns, '/web01/vm.json', Buffer.from('{"name":"web01"}\n'));
  await ns.snapshots.create('web01', '2026-12-05T12-00-00Z');
  // The share moves on after the point: the restore must not see this.
  const fh = await ns.fs.open('/web01/vda.raw', 2);
  await ns.write(fh, 0, Buffer.alloc(MiB, 7));
  await ns.fs.release(fh);
  return { dir, ns, vda, vdb };
}

t.test('raw restore is byte-identical and sparse', async (t) => {
  const { dir, ns, vda, vdb } = await setup(t);
  const to = path.join(dir, 'out');
  let advanced = 0;
  const files = await restorePoint(ns, 'web01', '2026-12-05T12-00-00Z', ['vda', 'vdb'], to, { format: 'raw', advance: (n) => (advanced += n) });
  t.same(files.map((f) => path.basename(f)), ['vda.raw', 'vdb.raw', 'vm.json']);
  t.equal(sha(fs.readFileSync(path.join(to, 'vda.raw'))), sha(vda), 'vda is the point\'s bytes');
  t.equal(sha(fs.readFileSync(path.join(to, 'vdb.raw'))), sha(vdb), 'vdb is the point\'s bytes');
  t.equal(fs.readFileSync(path.join(to, 'vm.json'), 'utf8'), '{"name":"web01"}\n');
  t.equal(advanced, 48 * MiB, 'progress covers both disks');
  const st = fs.statSync(path.join(to, 'vda.raw'));
  t.ok(st.blocks * 512 <= 10.5 * MiB, `zeros are holes: ${st.blocks * 512} bytes allocated of ${st.size}`);
  t.same(fs.readdirSync(to).sort(), ['vda.raw', 'vdb.raw', 'vm.json'], 'no partial files left');
});

t.test('qcow2 restore converts back to the same bytes', async (t) => {
  const { dir, ns, vda } = await setup(t);
  const to = path.join(dir, 'q');
  await restorePoint(ns, 'web01', '2026-12-05T12-00-00Z', ['vda'], to, { format: 'qcow2' });
  const info = await runTool('qemu-img', ['info', '--output=json', path.join(to, 'vda.qcow2')]);
  t.equal(JSON.parse(info.stdout).format, 'qcow2');
  const back = path.join(dir, 'back.raw');
  const conv = await runTool('qemu-img', ['convert', '-O', 'raw', path.join(to, 'vda.qcow2'), back]);
  t.equal(conv.code, 0, conv.stderr);
  t.equal(sha(fs.readFileSync(back)), sha(vda));
  t.same(fs.readdirSync(to).sort(), ['vda.qcow2', 'vm.json'], 'the raw intermediate is gone');
});

t.test('an existing target is refused and a failed restore leaves nothing', async (t) => {
  const { dir, ns } = await setup(t);
  const to = path.join(dir, 'busy');
  fs.mkdirSync(to);
  fs.writeFileSync(path.join(to, 'vda.raw'), 'mine');
  const e1 = await restorePoint(ns, 'web01', '2026-12-05T12-00-00Z', ['vda'], to, { format: 'raw' }).catch((e) => e);
  t.ok(isVmvaultError(e1, 'ALREADY_EXISTS'), String(e1));
  t.equal(fs.readFileSync(path.join(to, 'vda.raw'), 'utf8'), 'mine', 'the operator\'s file is untouched');

  const to2 = path.join(dir, 'fail');
  const e2 = await restorePoint(ns, 'web01', '2026-12-05T12-00-00Z', ['vda', 'vdz'], to2, { format: 'raw' }).catch((e) => e);
  t.ok(isVmvaultError(e2, 'NOT_FOUND'), String(e2));
  t.same(fs.readdirSync(to2), [], 'vda, restored before vdz failed, is removed again');

  const ac = new AbortController();
  ac.abort();
  const e3 = await restorePoint(ns, 'web01', '2026-12-05T12-00-00Z', ['vda'], path.join(dir, 'c'), { format: 'raw', signal: ac.signal }).catch((e) => e);
  t.ok(isVmvaultError(e3, 'CANCELLED'), String(e3));
  t.same(fs.readdirSync(path.join(dir, 'c')), []);
});
