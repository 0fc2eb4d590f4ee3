// Child for test/store-read-faults.test.ts: runs one read-fault scenario in a process whose
// codec path the environment chose (the addon, or with VMVAULT_NO_NATIVE_CODEC=1 the codec
// workers; the choice is made when the store module loads, hence a process each), and
// reports on stdout as one JSON line.
//
// The fault plan (src/store/container/file-io.ts) hits one container file: EIO on every read,
// SHORT (every read call returns at most half: legal, must be looped over), or EOF (the file
// seems to end where each read starts). Reads of files in that container, of a file in
// another container, a full verify of containers and of trees, and reads after the fault is
// lifted are all recorded.

import { type FaultOp, setFaultPlan } from '../../src/store/container/file-io.js';
import { codecImpl } from '../../src/store/native.js';
import { SegmentStore, type FileVersion } from '../../src/store/store.js';
import { internalsOf } from '../../src/store/internals.js';
import { generate, Rng } from './data.js';
import { dataUses, readOutcome } from './store-probe.js';
import { containerPath } from './containers.js';

interface Stored {
  label: string;
  version: FileVersion;
  content: Buffer;
  /** Containers holding its data segments. */
  cids: number[];
}

class OneFile {
  on = false;
  hits = 0;
  constructor(
    readonly file: string,
    readonly code: string,
  ) {}
  decide(op: FaultOp, path: string): string | undefined {
    if (!this.on || op !== 'read' || path !== this.file) return undefined;
    this.hits++;
    return this.code;
  }
}

async function main(): Promise<void> {
  const [dir, mode] = process.argv.slice(2);
  const log: string[] = [];
  let store = await SegmentStore.open(dir, { workers: 1, log: (l) => log.push(l) });
  const rng = new Rng(4242);
  const files: Stored[] = [];
  // Random data: each file is ~1.5 MiB stored, so the three land in two containers.
  for (const label of ['a', 'b', 'c']) {
    const content = generate(rng, 'random', 1_500_000);
    const w = await store.writeBuffer(content);
    await store.commit([], w.deps);
    files.push({ label, version: w.version, content, cids: [] });
  }
  await store.close();
  // Reopened: nothing is in memory, every read goes to the disk.
  store = await SegmentStore.open(dir, { workers: 1, log: (l) => log.push(l) });
  for (const f of files) {
    const cids = new Set<number>();
    const locs = await internalsOf(store).lookupMany(await dataFps(store, f.version));
    for (const l of locs) if (l) cids.add(l.cid);
    f.cids = [...cids].sort();
  }
  // The last container: it holds the last file (at least) and not the first.
  const target = Math.max(...files[2].cids);
  const file = containerPath(dir, target);
  const plan = new OneFile(file, mode);
  setFaultPlan(plan);
  const out: Record<string, unknown> = { codec: codecImpl, target, file, cids: Object.fromEntries(files.map((f) => [f.label, f.cids])) };
  try {
    plan.on = true;
    const reads: Record<string, { outcome: string; message?: string }> = {};
    for (const f of files) {
      try {
        const got = await store.read(f.version, 0, f.version.size);
        reads[f.label] = { outcome: got.equals(f.content) ? 'identical' : 'WRONG BYTES' };
      } catch (err) {
        reads[f.label] = { outcome: (err as { code?: string }).code ?? `untyped ${(err as Error).name}`, message: (err as Error).message };
      }
    }
    out.reads = reads;
    out.hits = plan.hits;
    out.verifyContainers = (await store.verify({ full: true })).problems;
    store.reader.clearCaches();
    out.verifyTrees = (await store.verifyTrees(files.map((f) => ({ version: f.version, label: `file ${f.label}` })), { full: true })).problems;
    out.log = [...log];
    plan.on = false;
    store.reader.clearCaches();
    out.after = await Promise.all(files.map((f) => readOutcome(store, f.version, f.content)));
    out.verifyAfter = (await store.verify({ full: true })).problems;
  } finally {
    setFaultPlan(undefined);
    await store.close();
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

/** The data segments of a version, by walking its tree. */
async function dataFps(store: SegmentStore, v: FileVersion): Promise<Buffer[]> {
  return [...(await dataUses(store, v)).keys()].map((h) => Buffer.from(h, 'hex'));
}

if (process.argv[1]?.endsWith('read-fault-child.js')) await main();
