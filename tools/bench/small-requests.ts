// Where a small file's time goes on the libfuse3 mount, per FUSE request: a store and namespace
// in this process behind LlFileSystem (as the appliance mounts it: readdirplus off,
// default_permissions), each handler timed from its call to its reply, and the small-file
// workload (small-files-worker.ts) run in a child process against it.
//   node dist/tools/bench/small-requests.js [COUNT] [DIR]
//   node dist/tools/bench/small-requests.js rsync [SRC] [DIR]   (rsync -a SRC into the share instead)
// Prints one line per request kind (count, mean and total ms in the handler) and each phase's
// seconds; the difference between a phase's time and its handlers' is the hand-off cost
// (caller -> kernel -> libfuse thread -> JS and back). VMVAULT_FUSE_WRITEBACK=1 mounts the probe with
// FUSE_CAP_WRITEBACK_CACHE (the appliance never does: PERFORMANCE "rsync8").

import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LlFileSystem } from '../../src/fuse/ll-filesystem.js';
import { dispatchOps, type LlOps, LlSession } from '../../src/fuse/ll/session.js';
import { Namespace } from '../../src/namespace/namespace.js';
import { SegmentStore } from '../../src/store/store.js';

const rsyncSrc = process.argv[2] === 'rsync' ? (process.argv[3] ?? '/usr/share/doc') : undefined;
const count = rsyncSrc ? 0 : Number(process.argv[2] ?? 2000);
const base = (rsyncSrc ? process.argv[4] : process.argv[3]) ?? os.tmpdir();
const workerJs = path.join(path.dirname(fileURLToPath(import.meta.url)), 'small-files-worker.js');

const work = await fs.mkdtemp(path.join(base, 'vmvault-small-req-'));
const mnt = path.join(work, 'mnt');
await fs.mkdir(mnt);
const store = await SegmentStore.open(path.join(work, 'data'));
const ns = await Namespace.open(store);
await ns.shares.create('small');
const llfs = new LlFileSystem(ns);
// The namespace lock: how long callers wait for it, and how long each holder keeps it.
const lockStats = { n: 0, waitMs: 0, holdMs: 0, maxWait: 0, maxHold: 0 };
const lock = ns.ctx.lock;
const run = lock.run.bind(lock);
lock.run = <T>(fn: () => Promise<T>): Promise<T> => {
  const asked = performance.now();
  return run(async () => {
    const got = performance.now();
    try {
      return await fn();
    } finally {
      const wait = got - asked;
      const hold = performance.now() - got;
      lockStats.n++;
      lockStats.waitMs += wait;
      lockStats.holdMs += hold;
      lockStats.maxWait = Math.max(lockStats.maxWait, wait);
      lockStats.maxHold = Math.max(lockStats.maxHold, hold);
    }
  });
};
// Synced LevelDB writes (the store's commits: group-commit rounds, fsyncs), each of which now
// also stats db/ (kv/db.ts syncDirIfChanged): how many a workload makes.
const commits = { n: 0, ms: 0 };
const commit = store.commit.bind(store);
store.commit = async (...a: Parameters<typeof commit>) => {
  const t0 = performance.now();
  try {
    return await commit(...a);
  } finally {
    commits.n++;
    commits.ms += performance.now() - t0;
  }
};
// The group commit's rounds (commitSynced: the namespace lock is let go before the sync).
const commitSynced = store.commitSynced.bind(store);
store.commitSynced = async (...a: Parameters<typeof commitSynced>) => {
  const t0 = performance.now();
  try {
    return await commitSynced(...a);
  } finally {
    commits.n++;
    commits.ms += performance.now() - t0;
  }
};
const times = new Map<string, { n: number; ms: number }>();
const ops = llfs.ops() as Record<string, (r: unknown, s: LlSession) => unknown>;
const timed: Record<string, unknown> = {};
// Setattrs by what they set, and whether through a handle (fchmod) or by node (utimensat).
const setattrKinds = new Map<string, number>();
for (const [op, fn] of Object.entries(ops)) {
  timed[op] = (r: unknown, s: LlSession) => {
    if (op === 'setattr') {
      const q = r as { fh?: number; set: Record<string, unknown> };
      const k = `${Object.keys(q.set).sort().join('+')} ${q.fh === undefined ? 'by node' : 'by handle'}`;
      setattrKinds.set(k, (setattrKinds.get(k) ?? 0) + 1);
    }
    const t0 = performance.now();
    const done = () => {
      const e = times.get(op) ?? { n: 0, ms: 0 };
      e.n++;
      e.ms += performance.now() - t0;
      times.set(op, e);
    };
    const p = fn(r, s);
    if (p && typeof (p as Promise<void>).then === 'function') return (p as Promise<void>).finally(done);
    done();
    return p;
  };
}
const session = await LlSession.mount(mnt, { fsname: 'vmvault-probe', defaultPermissions: true, maxThreads: 4, readdirplus: false, writebackCache: process.env.VMVAULT_FUSE_WRITEBACK === '1' }, dispatchOps(timed as Partial<LlOps>));
try {
  const [cmd, args] = rsyncSrc
    ? ['rsync', ['-a', rsyncSrc.replace(/\/*$/, '/'), path.join(mnt, 'small', 'doc') + '/']]
    : [process.execPath, [workerJs, path.join(mnt, 'small'), String(count)]];
  const t0 = performance.now();
  const out = await new Promise<string>((resolve, reject) =>
    execFile(cmd, args, { timeout: 1_800_000 }, (err, stdout) => (err ? reject(err) : resolve(stdout))),
  );
  const phases: Record<string, { seconds: number; ops: number }> = rsyncSrc ? { rsync: { seconds: (performance.now() - t0) / 1000, ops: 1 } } : JSON.parse(out);
  for (const [ph, p] of Object.entries(phases)) process.stdout.write(`phase ${ph}: ${p.seconds.toFixed(3)} s, ${Math.round(p.ops / p.seconds)}/s\n`);
  for (const [op, e] of [...times].sort((a, b) => b[1].ms - a[1].ms)) {
    process.stdout.write(`${op.padEnd(12)} ${String(e.n).padStart(7)} requests  ${(e.ms / e.n).toFixed(3)} ms each  ${e.ms.toFixed(0)} ms total\n`);
  }
  for (const [k, n] of [...setattrKinds].sort((a, b) => b[1] - a[1])) process.stdout.write(`  setattr ${k}: ${n}\n`);
  const l = lockStats;
  process.stdout.write(`namespace lock: ${l.n} holds, waited ${l.waitMs.toFixed(0)} ms (max ${l.maxWait.toFixed(1)}), held ${l.holdMs.toFixed(0)} ms (max ${l.maxHold.toFixed(1)})\n`);
  const st = session.stats;
  process.stdout.write(`batches ${st.batches}, requests ${st.requests}, largest batch ${st.maxBatch}, read by the JS thread ${st.jsReads}; getattrs answered in C ${session.attrHits}; absent names answered in C ${session.nameHits ?? 0}; flushes answered in C ${session.quietFlushes ?? 0}\n`);
  process.stdout.write(`synced commits ${commits.n} (${commits.ms.toFixed(0)} ms); negative entries invalidated ${llfs.invalidations}\n`);
} finally {
  await session.unmount();
  await ns.close();
  await store.close();
  await fs.rm(work, { recursive: true, force: true });
}
