// Read faults on container files, through the fault seam (src/store/container/file-io.ts),
// on both codec paths: the addon's batch reads (native/src/read_seam.c) and the codec worker
// threads (codec/worker.ts), and the TypeScript reads beside them (tables, verify's scans).
// EIO: the reader gets IO naming the file, a log line names it too, never wrong bytes, and
// verify names the container, the segments and the files affected. A partial read (SHORT) is
// looped over and reads back identical. An early end of file (EOF) is never taken as data.
// Each scenario runs in a child process (helpers/read-fault-child.ts): the codec path is
// chosen when the store module loads.

import t from 'tap';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isVmvaultError } from '../src/errors.js';
import { type FaultOp, setFaultPlan } from '../src/store/container/file-io.js';
import { RECORD_HEADER_BYTES, SegmentKind } from '../src/store/container/format.js';
import { collectGarbage } from '../src/store/gc/gc.js';
import { nativeCodec } from '../src/store/native.js';
import { SegmentStore } from '../src/store/store.js';
import { internalsOf } from '../src/store/internals.js';
import { listContainers, readLayout } from './helpers/containers.js';
import { Rng } from './helpers/data.js';
import { readOutcome, rejection } from './helpers/store-probe.js';
import { tmpDir } from './helpers/tmpdir.js';

const child = path.join(path.dirname(fileURLToPath(import.meta.url)), 'helpers', 'read-fault-child.js');

interface Problem {
  kind: string;
  message: string;
  container?: number;
  fingerprint?: string;
  root?: string;
}

interface Report {
  codec: string;
  target: number;
  file: string;
  cids: Record<string, number[]>;
  reads: Record<string, { outcome: string; message?: string }>;
  hits: number;
  verifyContainers: Problem[];
  verifyTrees: Problem[];
  log: string[];
  after: string[];
  verifyAfter: Problem[];
}

function run(dir: string, mode: string, env: Record<string, string>): Report {
  const e = { ...process.env, ...env };
  delete e.NODE_OPTIONS;
  const r = spawnSync(process.execPath, [child, dir, mode], { env: e, encoding: 'utf8', timeout: 120_000 });
  if (r.status !== 0) throw new Error(`child failed (${r.status}): ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as Report;
}

const PATHS: Array<{ label: string; env: Record<string, string>; codec: string }> = [
  ...(nativeCodec ? [{ label: 'native codec', env: {}, codec: 'native' }] : []),
  { label: 'worker codec', env: { VMVAULT_NO_NATIVE_CODEC: '1' }, codec: 'js' },
];

for (const p of PATHS) {
  t.test(`${p.label}: EIO on one container`, async (t) => {
    const r = run(tmpDir(t), 'EIO', p.env);
    t.equal(r.codec, p.codec, `the child ran the ${p.codec} codec`);
    t.ok(r.hits > 0, `the fault fired (${r.hits} reads)`);
    const hit = Object.entries(r.cids).filter(([, c]) => c.includes(r.target)).map(([l]) => l);
    const spared = Object.entries(r.cids).filter(([, c]) => !c.includes(r.target)).map(([l]) => l);
    t.ok(hit.length > 0 && spared.length > 0, `files in the failing container (${hit}) and elsewhere (${spared})`);
    for (const l of hit) {
      t.equal(r.reads[l].outcome, 'IO', `file ${l}: the read fails with IO`);
      t.match(r.reads[l].message ?? '', r.file, `file ${l}: the error names the file`);
    }
    for (const l of spared) t.equal(r.reads[l].outcome, 'identical', `file ${l}: read back identical`);
    t.ok(r.log.some((l) => l.includes(r.file)), `a log line names the file (${r.log[0]?.slice(0, 160)})`);
    t.notOk(Object.values(r.reads).some((x) => x.outcome === 'WRONG BYTES'), 'never wrong bytes');

    const cp = r.verifyContainers.filter((x) => x.container === r.target);
    t.ok(cp.length > 0 && cp.every((x) => x.kind === 'read-error'), 'verify (containers): a read error in the failing container');
    t.match(cp[0]?.message ?? '', r.file, 'verify names the file');
    t.same(r.verifyContainers.filter((x) => x.container !== r.target), [], 'and nothing in the other containers (no index mismatches made up)');
    const roots = new Set(r.verifyTrees.map((x) => x.root));
    t.same([...roots].sort(), hit.map((l) => `file ${l}`).sort(), 'verify (trees) names exactly the files affected');
    t.ok(r.verifyTrees.every((x) => x.kind === 'read-error' && x.container === r.target && typeof x.fingerprint === 'string'), 'each with its container and segment');

    t.same(r.after, ['identical', 'identical', 'identical'], 'once the fault is gone every file reads back');
    t.same(r.verifyAfter, [], 'and verify is clean');
  });

  t.test(`${p.label}: partial reads are looped over`, async (t) => {
    const r = run(tmpDir(t), 'SHORT', p.env);
    t.ok(r.hits > 0, `the fault fired (${r.hits} reads)`);
    t.same(Object.values(r.reads).map((x) => x.outcome), ['identical', 'identical', 'identical'], 'every file reads back identical');
    t.same(r.verifyContainers, [], 'verify (containers) is clean');
    t.same(r.verifyTrees, [], 'verify (trees) is clean');
    t.same(r.log, [], 'nothing logged');
  });

  t.test(`${p.label}: an early end of file is not taken as data`, async (t) => {
    const r = run(tmpDir(t), 'EOF', p.env);
    t.ok(r.hits > 0, `the fault fired (${r.hits} reads)`);
    const hit = Object.entries(r.cids).filter(([, c]) => c.includes(r.target)).map(([l]) => l);
    for (const l of hit) {
      t.ok(['CORRUPT_SEGMENT', 'CORRUPT_CONTAINER'].includes(r.reads[l].outcome), `file ${l}: refused (${r.reads[l].outcome}: ${r.reads[l].message?.slice(0, 160)})`);
      t.match(r.reads[l].message ?? '', r.file, `file ${l}: the error names the file`);
    }
    t.notOk(Object.values(r.reads).some((x) => x.outcome === 'WRONG BYTES'), 'never wrong bytes');
    t.ok(r.log.some((l) => l.includes(r.file)), 'a log line names the file');
    t.ok(r.verifyContainers.some((x) => x.container === r.target), 'verify (containers) reports the container');
    t.same([...new Set(r.verifyTrees.map((x) => x.root))].sort(), hit.map((l) => `file ${l}`).sort(), 'verify (trees) names the files affected');
    t.same(r.after, ['identical', 'identical', 'identical'], 'once the fault is gone every file reads back');
  });
}

t.test('GC copying a container forward never takes an early end of file as a payload', async (t) => {
  // GC reads the live payloads it copies forward with the TypeScript read (gc/gc.ts). Before
  // readFull, a read that ended early left allocUnsafe garbage in the buffer, which was
  // appended as the segment, indexed, and its source container deleted: the data was lost.
  const dir = tmpDir(t);
  const rng = new Rng(77);
  let store = await SegmentStore.open(dir, { workers: 1, log: () => {} });
  const a = rng.bytes(1_500_000);
  const wa = await store.writeBuffer(a);
  await store.commit([], wa.deps);
  const wb = await store.writeBuffer(rng.bytes(1_500_000));
  await store.commit([], wb.deps);
  await store.close();
  store = await SegmentStore.open(dir, { workers: 1, log: () => {} });
  const cid = listContainers(dir)[0];
  const layout = readLayout(dir, cid);
  const payloads = new Set(layout.records.filter((r) => r.kind === SegmentKind.Data).map((r) => r.offset + RECORD_HEADER_BYTES));
  let hits = 0;
  setFaultPlan({
    decide(op: FaultOp, p: string, offset?: number) {
      if (op !== 'read' || p !== layout.file || offset === undefined || !payloads.has(offset)) return undefined;
      hits++;
      return 'EOF';
    },
  });
  try {
    const err = await rejection(
      collectGarbage(internalsOf(store), store.reader, {
        roots: async function* () {
          yield wa.version;
        },
        copyForwardBelow: 1,
      }),
    );
    t.ok(hits > 0, `the fault fired (${hits} payload reads)`);
    t.ok(isVmvaultError(err, 'CORRUPT_CONTAINER'), `GC stops with CORRUPT_CONTAINER (${(err as Error)?.message?.slice(0, 160)})`);
    t.match((err as Error)?.message ?? '', layout.file, 'naming the file');
  } finally {
    setFaultPlan(undefined);
  }
  store.reader.clearCaches();
  t.equal(await readOutcome(store, wa.version, a), 'identical', 'the live file still reads back identical');
  t.same((await store.verify({ full: true })).problems, [], 'verify is clean');
  await store.close();
});
