// The NBD client's receive slabs are written again once nothing sees them (ReceiveSlabs in
// src/plugins/qemu/nbd-client.ts): against the real qemu-nbd, views a consumer holds past many
// slabs must still read back intact while released ones let the client reuse a few slabs
// instead of allocating a fresh 4 MiB slab per 4 MiB received.

import t from 'tap';
import { type ChildProcess, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { openSource } from '../src/agent/sources.js';
import { copyDisk, SourcePool } from '../src/backup/disk-copy.js';
import { Namespace } from '../src/namespace/namespace.js';
import { NbdClient } from '../src/plugins/qemu/nbd-client.js';
import { SegmentStore } from '../src/store/store.js';
import { TransferConnection } from '../src/transfer/client.js';
import { sendFile } from '../src/transfer/sender.js';
import { readFile } from './helpers/ns.js';
import type { TestT } from './helpers/tap-types.js';
import { tmpDir } from './helpers/tmpdir.js';
import { transferAppliance } from './helpers/transfer-appliance.js';

const MiB = 1024 * 1024;
const SIZE = 48 * MiB;

/** qemu-nbd serving the raw `image` read-only on a UNIX socket; killed by PID at teardown. */
async function qemuNbdRaw(t: TestT, dir: string, image: string): Promise<string> {
  const sock = path.join(dir, 'raw.sock');
  const child: ChildProcess = spawn('qemu-nbd', ['-t', '-r', '-e', '4', '-f', 'raw', '-k', sock, '-x', 'raw', image], { stdio: 'ignore' });
  t.teardown(() => {
    if (child.exitCode === null && child.pid) process.kill(child.pid, 'SIGKILL');
  });
  for (let i = 0; i < 400 && !fs.existsSync(sock); i++) await new Promise((r) => setTimeout(r, 25));
  if (!fs.existsSync(sock)) throw new Error('qemu-nbd made no socket');
  return sock;
}

/** A raw image of random bytes (every MiB differs, so a slab overwritten early shows), served. */
async function image(t: TestT, size = SIZE): Promise<{ sock: string; expected: Buffer }> {
  const dir = tmpDir(t, 'vmvault-nbdslab-');
  const img = path.join(dir, 'd.raw');
  const expected = crypto.randomBytes(size);
  fs.writeFileSync(img, expected);
  return { sock: await qemuNbdRaw(t, dir, img), expected };
}

async function serve(t: TestT): Promise<{ c: NbdClient; expected: Buffer }> {
  const { sock, expected } = await image(t);
  const c = await NbdClient.connect({ socket: sock, exportName: 'raw', timeoutMs: 20_000 });
  t.teardown(() => c.close());
  return { c, expected };
}

t.test('held readv views stay intact while released ones let slabs be reused', async (t) => {
  const { c, expected } = await serve(t);
  // 1 MiB reads, four in flight like a full copy's, over the export twice (96 MiB: 24 slabs'
  // worth). Reads 1, 9 and 30 are held to the end (past many slabs); the others are checked
  // and released at once; every eighth is a read() (copied, nothing to release).
  const held = new Map<number, Buffer[]>();
  const offsets = Array.from({ length: 2 * (SIZE / MiB) }, (_, i) => (i * MiB) % SIZE);
  for (let i = 0; i < offsets.length; i += 4) {
    const batch = offsets.slice(i, i + 4).map((off, k) => ({ n: i + k, off }));
    const got = await Promise.all(batch.map(({ n, off }) => (n % 8 === 7 ? c.read(off, MiB).then((b) => [b]) : c.readv(off, MiB))));
    for (let k = 0; k < batch.length; k++) {
      const { n, off } = batch[k];
      if (!Buffer.concat(got[k]).equals(expected.subarray(off, off + MiB))) t.fail(`read ${n} at ${off}: bytes differ on arrival`);
      if (n === 1 || n === 9 || n === 30) held.set(n, got[k]);
      else if (n % 8 !== 7) c.release(got[k]);
    }
  }
  // Checked only now: a slab written while a held view was out would have overwritten it.
  for (const [n, bufs] of held) {
    const off = offsets[n];
    t.ok(Buffer.concat(bufs).equals(expected.subarray(off, off + MiB)), `read ${n} held past ${offsets.length - n} later reads: intact`);
  }
  const s = c.receiveStats;
  t.equal(s.bytes >= 2 * SIZE, true, `received ${s.bytes} bytes`);
  t.ok(s.reused > 0, `slabs were reused (${s.reused} times)`);
  t.ok(s.slabs <= 8, `${s.slabs} fresh slabs for ${(s.bytes / MiB).toFixed(0)} MiB (not one per 4 MiB)`);
  // A second release of a view, and views released late, free nothing early: read on and check.
  for (const bufs of held.values()) c.release(bufs);
  for (const bufs of held.values()) c.release(bufs);
  const tail = await Promise.all([0, 1, 2, 3].map((k) => c.readv(k * 8 * MiB, MiB)));
  for (let k = 0; k < 4; k++) t.ok(Buffer.concat(tail[k]).equals(expected.subarray(k * 8 * MiB, k * 8 * MiB + MiB)), `read after late releases ${k}: exact`);
});

t.test('a long read with releases allocates a few slabs, not one per 4 MiB', async (t) => {
  const { c, expected } = await serve(t);
  let bad = 0;
  // 4 x 48 MiB in 2 MiB readv calls, two in flight (the sender's read and its read ahead).
  for (let round = 0; round < 4; round++) {
    for (let off = 0; off < SIZE; off += 4 * MiB) {
      const [a, b] = await Promise.all([c.readv(off, 2 * MiB), c.readv(off + 2 * MiB, 2 * MiB)]);
      if (!Buffer.concat([...a, ...b]).equals(expected.subarray(off, off + 4 * MiB))) bad++;
      c.release(a);
      c.release(b);
    }
  }
  t.equal(bad, 0, 'every read exact');
  const s = c.receiveStats;
  t.ok(s.bytes >= 4 * SIZE, `received ${(s.bytes / MiB).toFixed(0)} MiB`);
  t.ok(s.slabs <= 6, `${s.slabs} fresh slabs (${s.reused} reuses) for ${(s.bytes / MiB).toFixed(0)} MiB: the pool serves the rest`);
});

t.test('a full disk copy over two connections gives the slabs back: few fresh ones, the file exact', async (t) => {
  const { sock, expected } = await image(t, 96 * MiB);
  const clients = await Promise.all([0, 1].map(() => NbdClient.connect({ socket: sock, exportName: 'raw', metaContexts: ['base:allocation'], timeoutMs: 20_000 })));
  t.teardown(() => Promise.all(clients.map((c) => c.close())));
  const store = await SegmentStore.open(tmpDir(t));
  const ns = await Namespace.open(store, { log: () => {} });
  t.teardown(async () => {
    await ns.close();
    await store.close();
  });
  await ns.fs.mkdir('/s', 0o755);
  const fh = await ns.fs.create('/s/vda.raw', 0o600);
  await ns.fs.ftruncate(fh, expected.length);
  const r = await copyDisk(ns, fh, new SourcePool(clients), { inFlight: 8, chunkBytes: 256 * 1024 });
  await ns.fs.release(fh);
  t.equal(r.bytesRead, expected.length);
  t.ok((await readFile(ns, '/s/vda.raw')).equals(expected), 'the file holds the export');
  for (const [k, c] of clients.entries()) {
    const s = c.receiveStats;
    // 48 MiB per connection: 12 fresh slabs if none came back.
    t.ok(s.slabs <= 6 && s.reused > 0, `connection ${k}: ${s.slabs} fresh slabs, ${s.reused} reuses for ${(s.bytes / MiB).toFixed(0)} MiB`);
  }
});

t.test('the agent sender gives the slabs of its NBD source back: few fresh ones, the file exact', async (t) => {
  const { sock, expected } = await image(t, 96 * MiB);
  const src = await openSource({ kind: 'nbd', address: `unix:${sock}`, exportName: 'raw' });
  t.teardown(() => src.close());
  const a = await transferAppliance(t);
  await a.ns.shares.create('vms');
  const { token } = await a.tokens.create('host-a');
  const conn = await TransferConnection.open({ url: a.url, token });
  t.teardown(() => conn.close());
  await sendFile(conn, src, { share: 'vms', path: 'disk.raw', size: expected.length });
  t.ok((await readFile(a.ns, '/vms/disk.raw')).equals(expected), 'reads back identical');
  // NbdSource keeps its client private; the count is read through it for this test only.
  const s = (src as unknown as { client: NbdClient }).client.receiveStats;
  t.ok(s.slabs <= 6 && s.reused > 0, `${s.slabs} fresh slabs, ${s.reused} reuses for ${(s.bytes / MiB).toFixed(0)} MiB (24 fresh if none came back)`);
});
