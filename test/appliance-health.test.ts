// The store half of /health (issue 10), on a real store and namespace without a mount: open and
// writable when all is well; not writable when a file cannot be written in the data directory
// (here: the probe's own name taken by a directory); not open once the store is closed. Either
// makes the overall status "degraded" with a detail saying which.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { HealthProbe } from '../src/appliance-health.js';
import { Namespace } from '../src/namespace/namespace.js';
import { SegmentStore } from '../src/store/store.js';
import { tmpDir } from './helpers/tmpdir.js';

t.test('store health: open, writable, and what breaks each', async (t) => {
  const dir = tmpDir(t);
  const store = await SegmentStore.open(dir);
  const ns = await Namespace.open(store, { log: () => {} });
  let closed = false;
  t.teardown(async () => {
    if (!closed) {
      await ns.close();
      await store.close();
    }
  });
  const probe = new HealthProbe(ns, undefined, undefined);
  t.same(await probe.report(), { status: 'ok', store: { open: true, writable: true } });
  t.notOk(fs.existsSync(path.join(dir, '.health-probe')), 'the probe file is removed again');

  fs.mkdirSync(path.join(dir, '.health-probe'));
  await sleep(1100); // past the one-second cache
  const ro = await probe.report();
  t.match(ro, { status: 'degraded', store: { open: true, writable: false } });
  t.match(ro.detail, /the store cannot be written/);
  fs.rmdirSync(path.join(dir, '.health-probe'));
  await sleep(1100);
  t.match(await probe.report(), { status: 'ok' });

  await ns.close();
  await store.close();
  closed = true;
  await sleep(1100);
  const shut = await probe.report();
  t.match(shut, { status: 'degraded', store: { open: false, writable: false } });
  t.match(shut.detail, /the store is not open/);
});
