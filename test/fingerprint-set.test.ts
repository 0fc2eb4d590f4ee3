// The replication tokens' segment scope (src/control/fingerprint-set.ts) answers as the Set of hex
// strings it replaced: the same members, the same non-members (random ones and near misses that
// share a prefix or the hash bytes), the same size, through several growths, duplicates included.

import t from 'tap';
import { randomBytes } from 'node:crypto';
import { FingerprintSet } from '../src/control/fingerprint-set.js';

t.test('answers as a Set of hex strings', async (t) => {
  const ref = new Set<string>();
  const set = new FingerprintSet(4); // small on purpose: it grows many times
  const added: Buffer[] = [];
  for (let i = 0; i < 100_000; i++) {
    // Every tenth is a duplicate of an earlier one.
    const fp = i % 10 === 9 ? added[(i * 7919) % added.length]! : randomBytes(32);
    added.push(fp);
    set.add(fp);
    ref.add(fp.toString('hex'));
  }
  t.equal(set.size, ref.size, `the same size (${ref.size})`);
  let wrong = 0;
  for (const fp of added) if (set.has(fp) !== ref.has(fp.toString('hex'))) wrong++;
  t.equal(wrong, 0, 'every member found');
  let falsePos = 0;
  for (let i = 0; i < 100_000; i++) {
    const other = randomBytes(32);
    const near = Buffer.from(added[i % added.length]!);
    near[31 - (i % 28)] ^= 1 << (i % 8); // same hash bytes (0-3), one bit off elsewhere
    for (const q of [other, near]) if (set.has(q) !== ref.has(q.toString('hex'))) falsePos++;
  }
  t.equal(falsePos, 0, 'no non-member found, near misses included');
  t.notOk(set.has(Buffer.alloc(31)), 'a wrong-length key is no member');
  t.throws(() => set.add(Buffer.alloc(16)), RangeError, 'and cannot be added');
  t.ok(set.bytes <= 33 * set.size * 2 / 0.75 + 1024, `table ${set.bytes} bytes for ${set.size} fingerprints`);
});
