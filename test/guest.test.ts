// The real test guest (tools/make-test-guest.sh, test/helpers/guest.ts) and the consistency
// checkers the VM backup tests rely on (test/helpers/guest-checks.ts), checked against each
// other: the guest boots under TCG with its agent and PostgreSQL; a copy of its data disk taken
// while the guest is frozen passes both checkers while pgbench and a writer run; and each checker
// can fail: a copy taken without the freeze carries needs_recovery, and a damaged page of
// pgbench_accounts is caught by pg_checksums and pg_amcheck. The consistent copy is taken as the
// backup takes it (src/plugins/qemu: freeze, fleecing transaction, thaw, NBD read); the unfrozen
// one is `qemu-img convert -U` of the running qcow2. Restoring and booting a backed-up disk is
// the backup tests' part (bootGuest's `disk`).

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { checkPostgres, ext4Clean, ext4Fsck } from './helpers/guest-checks.js';
import { GuestAgent } from '../src/plugins/qemu/qga.js';
import { Fleece } from '../src/plugins/qemu/fleece.js';
import { NbdClient } from '../src/plugins/qemu/nbd-client.js';
import { QmpClient } from '../src/plugins/qemu/qmp.js';
import { describeVm } from '../src/plugins/qemu/vm-info.js';
import { type Guest, bootGuest, buildGuest, guestUnavailable, makeGuestScript, runPgbench, startWriter, stopWriter, writeDisk } from './helpers/guest.js';
import { qmp } from './helpers/qemu-sockets.js';
import { describeRun, runTool } from './helpers/run-tool.js';
import { tmpDir } from './helpers/tmpdir.js';

const skip = guestUnavailable() ?? false;
/** Runs a tool that must succeed; throws with its output otherwise. */
async function tool(cmd: string, args: string[]) {
  const r = await runTool(cmd, args, { timeoutMs: 300_000 });
  if (r.code !== 0) throw new Error(describeRun(r));
  return r;
}

/** A raw copy of a qcow2 that QEMU has open (-U: QEMU holds its lock). */
async function rawCopy(qcow2: string, to: string): Promise<string> {
  await tool('qemu-img', ['convert', '-U', '-f', 'qcow2', '-O', 'raw', qcow2, to]);
  return to;
}

/**
 * A point-in-time copy of vda the way the backup takes it (src/plugins/qemu): fsfreeze through
 * the guest agent, one QMP transaction (fleecing), thaw; then the point read over NBD while the
 * guest writes on. Returns the raw file and the freeze window (freeze sent to thaw answered).
 */
async function fleecedCopy(g: Guest, workDir: string, out: string): Promise<{ file: string; freezeMs: number; frozen: number }> {
  const qmpc = await QmpClient.connect(g.qmp);
  try {
    const vm = await describeVm(qmpc);
    const vda = vm.disks.filter((d) => d.device === 'vda');
    if (vda.length !== 1) throw new Error(`describeVm found no vda: ${JSON.stringify(vm.disks)}`);
    fs.mkdirSync(workDir, { recursive: true });
    const fleece = await Fleece.prepare(qmpc, vda, { scratchDir: workDir, checkpoint: 'guest-test-1' });
    try {
      const agent = await GuestAgent.connect(g.qga!);
      let freezeMs: number;
      let frozen: number;
      try {
        const t0 = Date.now();
        frozen = await agent.freeze();
        try {
          await fleece.pointInTime();
        } finally {
          await agent.thaw();
          freezeMs = Date.now() - t0;
        }
      } finally {
        await agent.close();
      }
      const sock = path.join(workDir, 'nbd.sock');
      const [e] = await fleece.exportAll(sock);
      const nbd = await NbdClient.connect({ socket: sock, exportName: e.exportName, metaContexts: ['base:allocation'] });
      const fd = fs.openSync(out, 'w');
      try {
        fs.ftruncateSync(fd, nbd.size);
        // Only what is allocated (a quarter of the disk): holes and zeros stay holes in the copy.
        const chunk = 4 * 1024 * 1024;
        const reads: Array<[number, number]> = [];
        for (const x of await nbd.blockStatus(0, nbd.size, 'base:allocation')) {
          if (x.flags & 3) continue;
          for (let o = x.offset; o < x.offset + x.length; o += chunk) reads.push([o, Math.min(chunk, x.offset + x.length - o)]);
        }
        for (let i = 0; i < reads.length; i += 4) {
          const batch = reads.slice(i, i + 4);
          const bufs = await Promise.all(batch.map(([o, n]) => nbd.read(o, n)));
          batch.forEach(([o], j) => fs.writeSync(fd, bufs[j], 0, bufs[j].length, o));
        }
      } finally {
        fs.closeSync(fd);
        await nbd.close();
      }
      await fleece.commit();
      return { file: out, freezeMs, frozen };
    } finally {
      await fleece.release();
    }
  } finally {
    await qmpc.close();
  }
}

t.test('the image: built (or cached) with what the guest needs', { skip }, async (t) => {
  const img = await buildGuest();
  for (const f of [img.kernel, img.initrd, img.dataDisk]) t.ok(fs.statSync(f).size > 1024 * 1024, `${path.basename(f)} present`);
  const info = await tool('qemu-img', ['info', '--output=json', '-U', img.dataDisk]);
  t.equal(JSON.parse(info.stdout).format, 'qcow2', 'the data disk is qcow2 (persistent dirty bitmaps)');
  // Cached: a second run finds it by its key and only prints where it is.
  const started = Date.now();
  const again = await runTool(makeGuestScript, []);
  t.equal(again.code, 0, again.stderr);
  t.equal(again.stdout.trim(), img.dir, 'the same cached guest');
  t.ok(Date.now() - started < 20_000, `a cached run is quick: ${Date.now() - started} ms`);
  t.notMatch(again.stderr, /building/, 'nothing rebuilt');
});

t.test('checkPostgres fails on a damaged page of pgbench_accounts', { skip }, async (t) => {
  const dir = tmpDir(t);
  const img = await buildGuest();
  const raw = await rawCopy(img.dataDisk, path.join(dir, 'pristine.raw'));
  const good = await checkPostgres(raw);
  t.ok(good.ok, 'the pristine data directory passes', { amcheck: good.amcheck?.output, checksums: good.checksums?.output, log: good.log.slice(-2000) });
  t.same(good.balances, { accounts: 0, branches: 0, tellers: 0, history: 0 }, 'pgbench -i: all balances zero');
  t.ok(good.accountsFile, 'knows where pgbench_accounts lives');

  // Page 1 of pgbench_accounts' file: where is it in the image? (debugfs bmap: file block -> fs block)
  const bmap = await tool('debugfs', ['-R', `bmap ${img.info.pgdata}/${good.accountsFile} 2`, raw]);
  const block = Number(bmap.stdout.trim());
  t.ok(block > 0, `fs block of the file's 3rd 4 KiB block: ${bmap.stdout.trim()}`);
  const fd = fs.openSync(raw, 'r+');
  try {
    // PostgreSQL pages are 8 KiB: fs block 2 of the file is the first half of page 1. Tuples
    // sit at the end of a page, so damage the middle (tuple data), not the header.
    fs.writeSync(fd, Buffer.alloc(512, 0x5a), 0, 512, block * 4096 + 2048);
  } finally {
    fs.closeSync(fd);
  }
  const bad = await checkPostgres(raw);
  t.notOk(bad.ok, 'the damaged copy fails');
  t.ok(bad.checksums && bad.checksums.badBlocks >= 1, `pg_checksums finds the bad block: ${bad.checksums?.badBlocks}`, { output: bad.checksums?.output });
  t.match(bad.checksums?.output, new RegExp(`${good.accountsFile}", block 1`), 'in page 1 of pgbench_accounts');
  t.notOk(bad.amcheck?.ok, 'pg_amcheck reports it', { output: bad.amcheck?.output.slice(0, 2000) });
});

t.test('boot, freeze and thaw, pgbench: a frozen copy is consistent, an unfrozen one is not', { skip }, async (t) => {
  const dir = tmpDir(t);
  let mark = Date.now();
  /** Where the time goes, for CI cost (a comment in the TAP output). */
  const phase = (name: string) => {
    t.comment(`${name}: ${Date.now() - mark} ms`);
    mark = Date.now();
  };
  // Booted from a disk of the test's own (`disk`, as a restore test boots a restored disk).
  const own = path.join(dir, 'own.qcow2');
  fs.copyFileSync((await buildGuest()).dataDisk, own);
  const g = await bootGuest(t, { dir: path.join(dir, 'vm'), pg: true, disk: own, extraDisk: { sizeMiB: 64 } });
  phase('boot');
  t.equal(g.diskPath, own);
  t.ok(g.running(), `booted (pid ${g.pid})`);

  // What the backup tests find over QMP: disks by device id, with the format layer's node name.
  const blocks = await qmp<Array<{ qdev?: string; inserted?: { 'node-name': string; image: { format: string } } }>>(g.helperQmp, 'query-block');
  const seen = blocks.filter((b) => b.inserted).map((b) => `${b.qdev} ${b.inserted!['node-name']} ${b.inserted!.image.format}`);
  t.same(seen, ['/machine/peripheral/vda/virtio-backend disk0 qcow2', '/machine/peripheral/vdb/virtio-backend disk1 qcow2'], 'vda and vdb, as GuestDisk says');
  t.same(g.disks.map((d) => `${d.device} ${d.node}`), ['vda disk0', 'vdb disk1']);
  const vdb = await g.exec(['/bin/cat', '/sys/block/vdb/size']);
  t.equal(vdb.stdout.trim(), String((64 * 1024 * 1024) / 512), 'the guest sees vdb, 64 MiB');
  // Guest writes at known extents of vdb land there, flushed, as the host reads the image.
  const pattern = Buffer.alloc(128 * 1024);
  for (let i = 0; i < pattern.length; i++) pattern[i] = (i * 7 + (i >> 12)) & 0xff;
  await writeDisk(g, 'vdb', 3 * 1024 * 1024, pattern);
  const vdbCopy = await rawCopy(g.disks[1].path, path.join(dir, 'vdb.raw'));
  const back = Buffer.alloc(pattern.length);
  const fd = fs.openSync(vdbCopy, 'r');
  fs.readSync(fd, back, 0, back.length, 3 * 1024 * 1024);
  fs.closeSync(fd);
  t.ok(back.equals(pattern), 'writeDisk: the bytes are in vdb at 3 MiB');

  const mounts = await g.exec(['/bin/cat', '/proc/mounts']);
  t.match(mounts.stdout, /^\/dev\/vda \/mnt ext4 /m, 'the data disk is mounted in the guest');
  t.equal(await g.agent('guest-fsfreeze-status'), 'thawed');
  t.equal(await g.psql('select count(*) from pgbench_accounts'), String(100_000 * g.image.info.pgbenchScale), 'PostgreSQL in the guest answers');

  const writer = await startWriter(g);
  const bench = runPgbench(g, 12);
  // Let both run before any copy is taken.
  for (let i = 0; i < 60 && Number(await g.psql('select count(*) from pgbench_history')) < 5; i++) await new Promise((r) => setTimeout(r, 500));

  phase('checks of the running guest, pgbench started');
  const unfrozen = await rawCopy(g.diskPath, path.join(dir, 'unfrozen.raw'));
  const u = await ext4Clean(unfrozen);
  t.ok(u.needsRecovery, `copied while mounted and not frozen: needs_recovery (${u.features.join(' ')})`);
  t.notOk(u.clean);

  // The consistent copy: frozen, fleeced, thawed, then read while pgbench and the writer go on.
  phase('unfrozen copy');
  const fl = await fleecedCopy(g, path.join(dir, 'fleece'), path.join(dir, 'frozen.raw'));
  phase('fleeced copy');
  const frozen = fl.file;
  t.ok(fl.frozen >= 1, `froze ${fl.frozen} file system(s); freeze to thaw ${fl.freezeMs} ms`);
  t.equal(await g.agent('guest-fsfreeze-status'), 'thawed', 'thawed again');

  // The agent's freeze and thaw through the helper too (what a test may drive by hand).
  t.ok((await g.agent<number>('guest-fsfreeze-freeze', undefined, 60_000)) >= 1, 'helper: frozen');
  t.equal(await g.agent('guest-fsfreeze-status'), 'frozen');
  t.ok((await g.agent<number>('guest-fsfreeze-thaw', undefined, 60_000)) >= 1, 'helper: thawed');

  const b = await bench;
  phase('rest of pgbench');
  t.ok(b.transactions > 0, `pgbench ran on through the freeze: ${b.transactions} transactions, ${b.tps} tps`);
  await stopWriter(g, writer);
  const after = Number(await g.psql('select count(*) from pgbench_history'));

  const f = await ext4Clean(frozen);
  t.ok(f.clean, `the frozen copy is clean: state ${f.state}, ${f.features.join(' ')}`);
  phase('stop writer');
  const fsck = await ext4Fsck(frozen);
  t.ok(fsck.ok, 'e2fsck -fn finds nothing to fix', { output: fsck.output });
  phase('ext4 checks');
  const pg = await checkPostgres(frozen);
  phase('PostgreSQL checks');
  t.ok(pg.started, "the copy's PostgreSQL starts", { log: pg.log.slice(-3000) });
  t.ok(pg.amcheck?.ok, 'pg_amcheck --heapallindexed --all: no corruption', { output: pg.amcheck?.output.slice(0, 2000) });
  t.ok(pg.checksums?.ok && pg.checksums.badBlocks === 0 && pg.checksums.blocksScanned > 0, `pg_checksums --check: ${pg.checksums?.blocksScanned} blocks, ${pg.checksums?.badBlocks} bad`, { output: pg.checksums?.output });
  t.ok(pg.invariantHolds, `sum(abalance) = sum(bbalance) = sum(tbalance): ${JSON.stringify(pg.balances)}`);
  t.ok(pg.balances && pg.balances.history > 0 && pg.balances.history <= after, `the copy holds pgbench's work up to the freeze: ${pg.balances?.history} of ${after}`);
  t.ok(pg.ok);

  await g.stop();
  t.notOk(g.running(), 'stopped');
});
