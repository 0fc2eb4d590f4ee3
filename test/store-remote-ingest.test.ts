// The store's doors for segments cut elsewhere (remote-ingest.ts): which it lacks, accepting
// by fingerprint with a re-hash, and building a version from a recipe of stored segments.

import t from 'tap';
import { randomBytes } from 'node:crypto';
import { SegmentStore } from '../src/store/store.js';
import { encodePayload } from '../src/store/codec/codec.js';
import { fingerprint } from '../src/store/codec/fingerprint.js';
import { EMPTY_VERSION } from '../src/store/store.js';
import { tmpDir } from './helpers/tmpdir.js';
import type { TestT } from './helpers/tap-types.js';

async function open(t: TestT) {
  const store = await SegmentStore.open(tmpDir(t));
  t.teardown(() => store.close());
  return store;
}

t.test('missingSegments: one answer per fingerprint, known or not', async (t) => {
  const store = await open(t);
  const a = randomBytes(5000);
  const deps = new Set<number>();
  await store.acceptSegment(fingerprint(a), a.length, false, a, deps);
  const unknown = [randomBytes(32), randomBytes(32), randomBytes(32)];
  const answer = await store.missingSegments([unknown[0], fingerprint(a), unknown[1], unknown[2]]);
  t.same(answer, [true, false, true, true], 'every entry answered (no holes)');
  t.equal(answer.length, 4);
  for (let i = 0; i < answer.length; i++) t.equal(typeof answer[i], 'boolean', `entry ${i} is a boolean`);
});

t.test('acceptSegment re-hashes, refuses a mismatch naming the fingerprint, and stores a duplicate at no cost', async (t) => {
  const store = await open(t);
  const raw = Buffer.alloc(20000, 'abc');
  const fp = fingerprint(raw);
  const deps = new Set<number>();
  const lz4 = encodePayload(raw);
  t.same(await store.acceptSegment(fp, raw.length, true, Buffer.from(lz4.payload), deps), { stored: true });
  await store.commit([], deps);
  const before = (await store.stats()).storedBytes;
  t.same(await store.acceptSegment(fp, raw.length, false, raw, deps), { stored: false }, 'a duplicate');
  t.equal((await store.stats()).storedBytes, before, 'costs no space');
  const other = randomBytes(4096);
  const victim = fingerprint(randomBytes(4096));
  await t.rejects(store.acceptSegment(victim, other.length, false, other, deps), { code: 'SEGMENT_MISMATCH', message: new RegExp(victim.toString('hex')) });
  t.same(await store.missingSegments([victim]), [true], 'nothing under the claimed fingerprint');
  await t.rejects(store.acceptSegment(fingerprint(other), other.length, true, randomBytes(100), deps), { code: 'SEGMENT_MISMATCH' }, 'a payload that does not decompress');
});

t.test('recipeWriter: stored segments by reference give the version writing the bytes gives', async (t) => {
  const store = await open(t);
  const a = randomBytes(3 << 20);
  const direct = await store.writeBuffer(a);
  // The store's own leaves of `a`, as a sender with the same segmenter would name them.
  const refs: Array<{ fp: Buffer; len: number }> = [];
  for await (const { entry } of store.view(direct.version).leaves(0, a.length)) refs.push({ fp: Buffer.from(entry.fp), len: entry.len });
  const w = store.recipeWriter(EMPTY_VERSION);
  await w.segments(refs);
  const r = await w.finish();
  t.ok(r.version.root.equals(direct.version.root), 'the same tree');
  t.ok((await store.read(r.version, 0, a.length)).equals(a));
  const w2 = store.recipeWriter(EMPTY_VERSION);
  await t.rejects(w2.segments([{ fp: randomBytes(32), len: 100 }]), { code: 'NOT_FOUND' }, 'a segment the store lacks');
  await w2.abort();
  const w3 = store.recipeWriter(EMPTY_VERSION);
  await t.rejects(w3.segments([{ fp: refs[0].fp, len: refs[0].len + 1 }]), { code: 'INVALID_ARGUMENT' }, 'a length that lies');
  await w3.abort();
});
