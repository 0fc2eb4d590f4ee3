// The policy layer's files: the lock clock's high-water mark (a clock set backwards is detected
// and does not shorten a lock, across a restart), policies.json (atomic, versioned; a damaged or
// newer file is refused with a clear error, never read as empty), and the bounded run history.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { isVmvaultError } from '../src/errors.js';
import { LockClock } from '../src/policy/lock-clock.js';
import { PolicyRegistry } from '../src/policy/policies.js';
import { RunHistory } from '../src/policy/run-history.js';
import { tmpDir } from './helpers/tmpdir.js';

const DAY = 86_400_000;
const T0 = Date.parse('2026-12-05T12:00:00Z');

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    return isVmvaultError(err) ? `${err.code}: ${err.message}` : `bug: ${String(err)}`;
  }
}

t.test('a clock set backwards does not shorten a lock, also after a restart', async (t) => {
  const dir = tmpDir(t, 'vmvault-lockclock-');
  let wall = T0;
  const lines: string[] = [];
  let c = await LockClock.open(dir, { now: () => wall, log: (l) => lines.push(l) });
  t.equal(await c.lockUntil(7 * DAY), T0 + 7 * DAY);
  wall = T0 + DAY;
  t.equal(await c.lockUntil(7 * DAY), T0 + 8 * DAY, 'time moving forward moves the lock start');
  // Someone sets the clock back three days, and the appliance restarts.
  wall = T0 - 2 * DAY;
  c = await LockClock.open(dir, { now: () => wall, log: (l) => lines.push(l) });
  t.equal(c.mark, T0 + DAY, 'the high-water mark was persisted');
  t.equal(await c.lockUntil(7 * DAY), T0 + 8 * DAY, 'a lock made now runs from the highest time seen, not the wall clock');
  t.match(lines.at(-1), /is behind the highest time this appliance has seen .* it was set backwards; locks run from the later time/);
  // A few seconds back (an NTP step) is no news.
  wall = T0 + DAY - 2000;
  const n = lines.length;
  await c.observe();
  t.equal(lines.length, n, 'a step within the slack is not reported');
  // The file is versioned.
  const f = JSON.parse(fs.readFileSync(path.join(dir, 'policy-clock.json'), 'utf8'));
  t.same(f, { version: 1, highWater: T0 + DAY });
  fs.writeFileSync(path.join(dir, 'policy-clock.json'), JSON.stringify({ version: 9, highWater: 1 }));
  t.match(await code(LockClock.open(dir)), /^UNSUPPORTED_FORMAT: .*policy-clock.json has format version 9/);
});

t.test('policies.json: kept across opens, damaged or newer refused, failed writes change nothing', async (t) => {
  const dir = tmpDir(t, 'vmvault-policies-');
  const r = await PolicyRegistry.open(dir, { maxLockMs: 30 * DAY });
  await r.create({ name: 'gold', backup: '0 */4 * * *', keep: 'daily=7', lock: '7d', workflow: 'crash-consistent' }, new Date(T0));
  await r.assign('gold', 'web01');
  await r.create({ name: 'silver', backup: '0 2 * * *' }, new Date(T0));
  t.match(await code(r.assign('silver', 'web01')), /^CONFLICT: VM web01 is assigned to policy gold; unassign it there first/);
  const again = await PolicyRegistry.open(dir);
  t.same(again.list(), r.list());
  t.same(again.get('gold'), { name: 'gold', backup: '0 */4 * * *', keep: { daily: 7 }, lockMs: 7 * DAY, workflow: 'crash-consistent', vms: ['web01'], createdAt: new Date(T0).toISOString() });
  t.equal(again.policyOf('web01')?.name, 'gold');
  t.match(await code(Promise.resolve().then(() => again.get('nosuch'))), /^NOT_FOUND: no policy named nosuch \(policies: gold, silver\)/);
  t.match(await code(again.unassign('silver', 'web01')), /^NOT_FOUND: VM web01 is not assigned to policy silver/);
  const file = path.join(dir, 'policies.json');
  t.equal(JSON.parse(fs.readFileSync(file, 'utf8')).version, 1);
  fs.writeFileSync(file, '{"version": 1, "policies": [');
  t.match(await code(PolicyRegistry.open(dir)), /^CORRUPT_RECORD: .*policies.json is not valid JSON/);
  fs.writeFileSync(file, JSON.stringify({ version: 2, policies: [] }));
  t.match(await code(PolicyRegistry.open(dir)), /^UNSUPPORTED_FORMAT: .*policies.json has format version 2; this appliance reads up to 1/);
  // A write that fails (the directory made read-only... as root, replace the file by a directory)
  // leaves the registry in memory as it was.
  fs.rmSync(file);
  fs.mkdirSync(file);
  t.match(await code(r.create({ name: 'bronze', backup: '0 3 * * *' })), /^IO: writing .*policies.json/);
  t.same(r.list().map((p) => p.name), ['gold', 'silver'], 'the failed create left nothing behind');
});

t.test('the run history is bounded and survives a reopen', async (t) => {
  const dir = tmpDir(t, 'vmvault-runs-');
  const h = await RunHistory.open(dir, { limit: 5 });
  for (let i = 0; i < 8; i++) await h.add({ at: new Date(T0 + i).toISOString(), policy: 'gold', vm: `vm${i}`, event: 'succeeded' });
  await h.setTicks({ gold: T0 });
  const again = await RunHistory.open(dir, { limit: 5 });
  t.same(again.list().map((r) => r.vm), ['vm3', 'vm4', 'vm5', 'vm6', 'vm7'], 'the newest 5 are kept');
  t.equal(again.lastTick('gold'), T0);
  await again.forget('gold');
  t.equal((await RunHistory.open(dir)).lastTick('gold'), undefined);
});
