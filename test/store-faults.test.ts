// I/O faults through the store's fault seam (src/store/container/file-io.ts): ENOSPC and EIO on
// container writes and fsyncs. A commit whose data did not reach the disk rejects with a
// typed code (NO_SPACE, IO); what was committed before stays readable and verifies; once the
// fault is gone, new writes and commits succeed, also after a reopen.

import t from 'tap';
import { isVmvaultError, type ErrorCode } from '../src/errors.js';
import { Codec, SegmentKind } from '../src/store/container/format.js';
import { type FaultOp, setFaultPlan } from '../src/store/container/file-io.js';
import { fingerprint } from '../src/store/codec/fingerprint.js';
import { SegmentStore, type FileVersion } from '../src/store/store.js';
import { generate, type Kind, Rng } from './helpers/data.js';
import { readOutcome, rejection } from './helpers/store-probe.js';
import type { TestT } from './helpers/tap-types.js';
import { tmpDir } from './helpers/tmpdir.js';
import { internalsOf } from '../src/store/internals.js';

interface Stored {
  version: FileVersion;
  content: Buffer;
}

/** Fails every `op` on container files with `code` while `on` is set; counts the failures. */
class Faults {
  on = false;
  hits = 0;
  /** Let this many matching calls through before failing (a write that fails half-way). */
  skip = 0;
  constructor(
    readonly op: FaultOp,
    readonly code: string,
  ) {}
  decide(op: FaultOp, path: string): string | undefined {
    if (!this.on || op !== this.op || !path.endsWith('.vvc')) return undefined;
    if (this.skip > 0) {
      this.skip--;
      return undefined;
    }
    this.hits++;
    return this.code;
  }
}

async function put(store: SegmentStore, content: Buffer): Promise<Stored> {
  const w = store.writer();
  for (let at = 0; at < content.length; at += 256 * 1024) await w.write(content.subarray(at, at + 256 * 1024));
  const { version, deps } = await w.finish();
  await store.commit([], deps);
  return { version, content };
}

/** Writes and commits, expecting the commit (or the write) to fail; returns the error. */
async function putFailing(store: SegmentStore, content: Buffer): Promise<unknown> {
  return rejection(put(store, content));
}

async function allRead(t: TestT, store: SegmentStore, files: Stored[], label: string): Promise<void> {
  const got = [];
  for (const f of files) got.push(await readOutcome(store, f.version, f.content));
  t.same(got, files.map(() => 'identical'), `${label}: all ${files.length} committed versions read back identical`);
}

const CASES: Array<{ op: FaultOp; code: string; expect: ErrorCode; skip?: number; what: string }> = [
  { op: 'write', code: 'ENOSPC', expect: 'NO_SPACE', what: 'ENOSPC on container writes' },
  { op: 'write', code: 'ENOSPC', expect: 'NO_SPACE', skip: 2, what: 'ENOSPC on a container write after two succeeded' },
  { op: 'fsync', code: 'ENOSPC', expect: 'NO_SPACE', what: 'ENOSPC on container fsync' },
  { op: 'write', code: 'EIO', expect: 'IO', what: 'EIO on container writes' },
  { op: 'fsync', code: 'EIO', expect: 'IO', what: 'EIO on container fsync' },
];

for (const c of CASES) {
  t.test(c.what, async (t) => {
    const dir = tmpDir(t);
    const faults = new Faults(c.op, c.code);
    setFaultPlan(faults);
    t.teardown(() => setFaultPlan(undefined));
    const rng = new Rng(c.what.length * 7919);
    const kinds: Kind[] = ['random', 'text'];
    const gen = () => generate(rng, rng.pick(kinds), rng.range(500_000, 6_000_000));
    let store = await SegmentStore.open(dir, { workers: 1 });
    const files: Stored[] = [];
    try {
      files.push(await put(store, gen()), await put(store, gen()));

      faults.on = true;
      faults.skip = c.skip ?? 0;
      const lost = generate(rng, 'random', 5_000_000); // several container writes and a seal
      const err = await putFailing(store, lost);
      t.ok(faults.hits > 0, `the fault fired (${faults.hits} times)`);
      t.ok(isVmvaultError(err, c.expect), `the commit rejects with ${c.expect} (${(err as Error)?.message})`);
      // While the fault lasts, every further commit of new data fails the same way.
      const again = await putFailing(store, gen());
      t.ok(isVmvaultError(again, c.expect), `a second write while the fault lasts: ${c.expect} too`);
      await allRead(t, store, files, 'during the fault');
      t.same((await store.verify({ full: true })).problems, [], 'during the fault, verify finds nothing wrong');

      faults.on = false;
      files.push(await put(store, gen()));
      files.push(await put(store, lost));
      await allRead(t, store, files, 'after the fault, with new writes and a retry of the lost one');
      await store.close();
      store = await SegmentStore.open(dir, { workers: 1 });
      await allRead(t, store, files, 'after a reopen');
      t.same((await store.verify({ full: true })).problems, [], 'after a reopen, verify finds nothing wrong');
      files.push(await put(store, gen()));
      await allRead(t, store, files, 'after a reopen and one more write');
    } finally {
      faults.on = false;
      await store.close();
    }
  });
}

t.test('a background write failure of the open container is not mistaken for an empty container at close', async (t) => {
  // The open container holds committed records; a later background flush of it fails and
  // nothing else is appended before the store closes.
  const dir = tmpDir(t);
  const faults = new Faults('write', 'ENOSPC');
  setFaultPlan(faults);
  t.teardown(() => setFaultPlan(undefined));
  const rng = new Rng(12);
  let store = await SegmentStore.open(dir, { workers: 1 });
  const committed = await put(store, generate(rng, 'random', 300_000));
  faults.on = true;
  const raw = rng.bytes(1 << 20);
  // One record past the flush threshold: the writer starts a background write, which fails.
  internalsOf(store).append(SegmentKind.Data, fingerprint(raw), raw.length, Codec.Raw, raw);
  await new Promise((r) => setTimeout(r, 100));
  t.ok(faults.hits > 0, 'the background write failed');
  faults.on = false;
  await store.close();
  store = await SegmentStore.open(dir, { workers: 1 });
  try {
    t.equal(await readOutcome(store, committed.version, committed.content), 'identical', 'the committed version survives the close');
    t.same((await store.verify({ full: true })).problems, [], 'verify finds nothing wrong');
    const more = await put(store, generate(rng, 'text', 2_000_000));
    t.equal(await readOutcome(store, more.version, more.content), 'identical', 'new writes work');
  } finally {
    await store.close();
  }
});
