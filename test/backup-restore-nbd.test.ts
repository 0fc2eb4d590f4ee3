// Restore to an NBD target (issue 11), against the real qemu-nbd serving qcow2 images that hold
// junk before the restore: every byte up to the disk's size becomes the point's (data as data,
// holes and zero runs as write-zeroes), one export per disk through `{device}`, bytes past the
// disk's size are left alone; a read-only or too small export, a multi-disk point without
// `{device}` and malformed URIs are refused with what to do.

import t from 'tap';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { restorePointToNbd } from '../src/backup/restore-nbd.js';
import { isVmvaultError } from '../src/errors.js';
import { parseNbdUri } from '../src/plugins/qemu/nbd-uri.js';
import { generate, Rng } from './helpers/data.js';
import { openNs, writeFile } from './helpers/ns.js';
import { runTool } from './helpers/run-tool.js';
import type { TestT } from './helpers/tap-types.js';
import { tmpDir } from './helpers/tmpdir.js';
import { BestCopy, type CopyCatalog } from '../src/policy/best-copy.js';
import { internalsOf } from '../src/store/internals.js';
import { containerPath, flipByte, listContainers, readLayout, RECORD_HEADER_BYTES } from './helpers/containers.js';

const MiB = 1024 * 1024;
const POINT = '2026-12-05T12-00-00Z';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function tool(cmd: string, args: string[]): Promise<string> {
  const r = await runTool(cmd, args, { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** 24 MiB: random data, 8 MiB of zeros, text, zeros to the end (a hole in the store's tree). */
function disk(seed: number): Buffer {
  const rng = new Rng(seed);
  const b = Buffer.alloc(24 * MiB);
  generate(rng, 'random', 6 * MiB).copy(b, 0);
  generate(rng, 'text', 4 * MiB).copy(b, 14 * MiB);
  return b;
}

/** A qcow2 of `size` bytes filled with 0xa5 (what was on the target before), as raw bytes too. */
async function junkImage(dir: string, name: string, size: number): Promise<string> {
  const raw = path.join(dir, `${name}.junk.raw`);
  fs.writeFileSync(raw, Buffer.alloc(size, 0xa5));
  const img = path.join(dir, `${name}.qcow2`);
  await tool('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, img]);
  fs.rmSync(raw);
  return img;
}

/** qemu-nbd serving `image` (writable unless `readOnly`) as `name` on `sock`; stopped by PID at teardown. */
async function qemuNbd(t: TestT, image: string, name: string, sock: string, readOnly = false): Promise<ChildProcess> {
  const child = spawn('qemu-nbd', ['-t', ...(readOnly ? ['-r'] : []), '-f', 'qcow2', '-k', sock, '-x', name, image], { stdio: 'ignore' });
  t.teardown(() => {
    if (child.exitCode === null && child.pid) process.kill(child.pid, 'SIGKILL');
  });
  for (let i = 0; i < 400 && !fs.existsSync(sock); i++) await new Promise((r) => setTimeout(r, 25));
  if (!fs.existsSync(sock)) throw new Error('qemu-nbd made no socket');
  return child;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  process.kill(child.pid!, 'SIGTERM');
  await gone;
}

/** The image's guest-visible bytes. */
async function contents(dir: string, image: string): Promise<Buffer> {
  const out = path.join(dir, `${path.basename(image)}.out.raw`);
  await tool('qemu-img', ['convert', '-q', '-f', 'qcow2', '-O', 'raw', image, out]);
  const b = fs.readFileSync(out);
  fs.rmSync(out);
  return b;
}

async function setup(t: TestT) {
  const dir = tmpDir(t, 'vmvault-rnbd-');
  const { ns } = await openNs(t, path.join(dir, 'store'));
  await ns.shares.create('web01');
  const vda = disk(1);
  const vdb = disk(2);
  await writeFile(ns, '/web01/vda.raw', vda);
  await writeFile(ns, '/web01/vdb.raw', vdb);
  await ns.snapshots.create('web01', POINT);
  return { dir, ns, vda, vdb };
}

t.test('each disk goes to its own export; every byte up to the disk size is the point\'s', async (t) => {
  const { dir, ns, vda, vdb } = await setup(t);
  // vdb's export is 4 MiB larger than the disk: those bytes must stay as they were.
  const imgA = await junkImage(dir, 'vda', 24 * MiB);
  const imgB = await junkImage(dir, 'vdb', 28 * MiB);
  const a = await qemuNbd(t, imgA, 'vda', path.join(dir, 'vda.sock'));
  const b = await qemuNbd(t, imgB, 'vdb', path.join(dir, 'vdb.sock'));
  const logs: string[] = [];
  let advanced = 0;
  const out = await restorePointToNbd(ns, 'web01', POINT, ['vda', 'vdb'], `nbd+unix:///{device}?socket=${dir}/{device}.sock`, {
    log: (l) => logs.push(l),
    advance: (n) => (advanced += n),
  });
  t.equal(out.length, 2);
  t.match(out[0], /^vda -> nbd .*vda\.sock \(export "vda"\)$/);
  t.equal(advanced, 48 * MiB, 'progress covers both disks');
  t.ok(logs.some((l) => /4194304 bytes larger than the disk; those bytes are left as they are/.test(l)), 'the larger export is named in the log');
  await stop(a);
  await stop(b);
  const gotA = await contents(dir, imgA);
  t.equal(sha(gotA), sha(vda), 'vda: the junk is gone, the point\'s bytes (zeros included) are there');
  const gotB = await contents(dir, imgB);
  t.equal(sha(gotB.subarray(0, 24 * MiB)), sha(vdb), 'vdb: the point\'s bytes');
  t.ok(gotB.subarray(24 * MiB).equals(Buffer.alloc(4 * MiB, 0xa5)), 'vdb: the bytes past the disk are left as they were');
});

t.test('a damaged primary: the NBD restore takes the best-copy plan as the file restore does (a data segment and a tree node from the copy)', async (t) => {
  const { dir, ns, vda } = await setup(t);
  await ns.store.commit();
  const storeDir = path.join(dir, 'store');
  const recs = listContainers(storeDir).flatMap((id) => {
    try {
      return readLayout(storeDir, id).records.map((r) => ({ ...r, cid: id }));
    } catch {
      return []; // the open container
    }
  });
  const data = recs.filter((r) => r.kind === 0 && r.rawLen > 2048);
  const picks = [data[Math.floor(data.length / 3)], ...recs.filter((r) => r.kind === 1).slice(0, 1)];
  // The other copy (a stand-in for a clone: it holds exactly the segments about to be damaged).
  const held = new Map<string, Buffer>();
  for (const r of picks) held.set(r.fp.toString('hex'), (await ns.store.segment(r.fp))!);
  for (const r of picks) flipByte(containerPath(storeDir, r.cid), r.offset + RECORD_HEADER_BYTES + (r.storedLen >> 1));
  ns.store.reader.clearCaches();
  internalsOf(ns.store).cache.clear();
  const copies: CopyCatalog = {
    copiesOf: () => [{ destination: 'site-b', kind: 'appliance' }],
    openSource: async () => ({ name: 'clone site-b', fetch: async (fp) => held.get(fp.toString('hex')) ?? null, close: async () => {} }),
  };
  const log: string[] = [];
  const plan = await new BestCopy(ns, copies).plan('web01', 'web01', POINT, (l) => log.push(l));
  const img = await junkImage(dir, 'vda', 24 * MiB);
  const q = await qemuNbd(t, img, 'vda', path.join(dir, 'vda.sock'));
  await restorePointToNbd(ns, 'web01', POINT, ['vda'], `nbd+unix:///vda?socket=${dir}/vda.sock`, { rescue: plan.rescue });
  await plan.finish(true);
  await stop(q);
  t.equal(sha(await contents(dir, img)), sha(vda), 'the export holds the point, identical');
  t.equal(plan.rescue.damage.length, picks.length, `${picks.length} segment(s) read from the copy (${picks.map((p) => (p.kind === 1 ? 'node' : 'data')).join(', ')})`);
  t.ok(log.some((l) => /failed verification; read from clone site-b/.test(l)), 'the job log says which copy served them');
  t.ok(log.some((l) => l.startsWith(`repair of the primary: ${picks.length} segment(s) repaired`)), 'and the primary is repaired');
});

t.test('a read-only export, a too small export and a multi-disk URI without {device} are refused', async (t) => {
  const { dir, ns } = await setup(t);
  const ro = await junkImage(dir, 'ro', 24 * MiB);
  await qemuNbd(t, ro, 'vda', path.join(dir, 'ro.sock'), true);
  const e1 = await restorePointToNbd(ns, 'web01', POINT, ['vda'], `nbd+unix:///vda?socket=${dir}/ro.sock`, {}).catch((e) => e);
  t.ok(isVmvaultError(e1, 'READ_ONLY'), `read-only: ${e1.message}`);
  t.match(e1.message, /read-only; export it writable/);

  const small = await junkImage(dir, 'small', 16 * MiB);
  const s = await qemuNbd(t, small, 'vda', path.join(dir, 'small.sock'));
  const e2 = await restorePointToNbd(ns, 'web01', POINT, ['vda'], `nbd+unix:///vda?socket=${dir}/small.sock`, {}).catch((e) => e);
  t.ok(isVmvaultError(e2, 'INVALID_ARGUMENT'), `too small: ${e2.message}`);
  t.match(e2.message, /holds 16777216 bytes, the disk 25165824: make the export at least the disk's size/);
  await stop(s);
  t.ok((await contents(dir, small)).equals(Buffer.alloc(16 * MiB, 0xa5)), 'the refused export was not written');

  const e3 = await restorePointToNbd(ns, 'web01', POINT, ['vda', 'vdb'], `nbd+unix:///vda?socket=${dir}/x.sock`, {}).catch((e) => e);
  t.ok(isVmvaultError(e3, 'INVALID_ARGUMENT'));
  t.match(e3.message, /this point has 2 disks \(vda, vdb\): name \{device\} in the NBD URI/);
});

t.test('NBD URIs: the two forms parse; malformed ones are refused by what is wrong', async (t) => {
  t.same(parseNbdUri('nbd://backup-target:10900/vda'), { host: 'backup-target', port: 10900, exportName: 'vda' });
  t.same(parseNbdUri('nbd://[::1]/disk%20one'), { host: '::1', port: 10809, exportName: 'disk one' });
  t.same(parseNbdUri('nbd+unix:///vdb?socket=/run/r.sock'), { socket: '/run/r.sock', exportName: 'vdb' });
  const bad: Array<[string, RegExp]> = [
    ['nbd:///vda', /no host/],
    ['nbd+unix:///vda', /no socket=\/PATH/],
    ['nbd+unix:///vda?socket=run/r.sock', /must be absolute/],
    ['nbd+unix://host/vda?socket=/r', /takes no host/],
    ['nbd+unix:///vda?socket=/r&x=1', /unknown query parameter "x"/],
    [`nbd+unix:///vda?socket=/${'s'.repeat(120)}`, /longer than a UNIX socket allows/],
    ['nbds://h/vda', /TLS is not supported/],
    ['nbd+vsock:///x', /unknown scheme "nbd\+vsock"/],
    ['nbd://u:p@h/vda', /user names and passwords/],
    ['nbd://h/%zz', /not valid percent-encoding/],
    ['nbd://h/v\0da', /NUL/],
  ];
  for (const [uri, re] of bad) {
    const e = (() => {
      try {
        parseNbdUri(uri);
        return null;
      } catch (err) {
        return err as Error;
      }
    })();
    t.ok(e && isVmvaultError(e, 'INVALID_ARGUMENT'), `${JSON.stringify(uri)} is refused`);
    t.match(e?.message ?? '', re, `${JSON.stringify(uri)}: ${e?.message}`);
  }
});
