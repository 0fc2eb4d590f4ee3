// The audit record's target (issue 12): a transfer frame's body is a Buffer of up to
// LIMITS.frameBytes; reading it as a record of fields walked every byte (millions of
// [key, value] pairs per request: the appliance stalled in GC and grew to GiBs). Bounded by
// counts here: fields read per body, and no byte of a binary body becomes a "field".

import t from 'tap';
import { auditTarget, FIELDS } from '../src/control/audit-target.js';

t.test('a binary body (a transfer frame) adds no fields', async (t) => {
  const frame = Buffer.alloc(1 << 20, 7);
  const out = auditTarget({ id: 'abc' }, frame, {});
  t.same(out, { id: 'abc' }, 'only the route parameter');
  t.notOk('0' in out, 'no byte index became a field');
  t.same(auditTarget({}, new Uint8Array(1 << 16), {}), {}, 'nor of a typed array');
});

t.test('a body with many fields: at most FIELDS are read, not all of them', async (t) => {
  const big: Record<string, number> = {};
  for (let i = 0; i < 100_000; i++) big[`k${i}`] = i;
  let gets = 0;
  const counted = new Proxy(big, {
    get(target, key, recv) {
      gets++;
      return Reflect.get(target, key, recv) as unknown;
    },
    getOwnPropertyDescriptor(target, key) {
      gets++;
      return Reflect.getOwnPropertyDescriptor(target, key);
    },
  });
  const out = auditTarget({}, counted, {});
  t.equal(Object.keys(out).length, FIELDS, `${FIELDS} fields kept`);
  t.ok(gets <= 4 * FIELDS, `${gets} property reads for a body of 100000 fields`);
});

t.test('names, flags and cut strings as before; secrets never', async (t) => {
  const out = auditTarget({ name: 'vms' }, { force: true, password: 'x', comment: 'y'.repeat(1000) }, { n: 3 });
  t.same(out, { n: 3, force: true, comment: 'y'.repeat(256), name: 'vms' });
});
