// The VM image set through the doors a user takes, each into a fresh store, for the vmset
// bench: `cp --sparse=always` through a real mount (an appliance in a child process, as
// bench:fuse runs it), and the same copy pattern straight into the namespace in this process
// (vmset-namespace.ts) to tell the namespace's cost from the kernel's. The sequence is a
// nightly backup's: day 1, a snapshot, day 2 copied over it, the second VM; then a GC.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runGc } from '../../src/namespace/maintenance.js';
import { Namespace } from '../../src/namespace/namespace.js';
import { SegmentStore } from '../../src/store/store.js';
import { run, startBenchAppliance } from './fuse-appliance.js';
import { note } from './store-io.js';
import { copySparse } from './vmset-namespace.js';

export interface DoorResult {
  /** storedBytes after each step: day1, day2, vm2 (before GC). */
  steps: number[];
  /** storedBytes after a GC. */
  afterGc: number;
  segments: number;
  treeNodes?: number;
}

interface Stats {
  storedBytes: number;
  segments: number;
}

export async function viaMount(files: string[], work: string): Promise<DoorResult> {
  const app = await startBenchAppliance(work);
  try {
    const stats = async (): Promise<Stats> => (await app.api('GET', '/stats')).body as Stats;
    const ok = (r: { status: number; body: unknown }, what: string) => {
      if (r.status >= 300) throw new Error(`${what}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
      return r.body as { job?: string };
    };
    ok(await app.api('POST', '/shares', { name: 'vms' }), 'create share');
    const share = path.join(app.mount, 'vms');
    const steps: number[] = [];
    const copy = async (src: string, dest: string) => {
      const r = await run('cp', ['--sparse=always', src, path.join(share, dest)]);
      await run('sync', []);
      const s = await stats();
      steps.push(s.storedBytes);
      note(`mount: cp ${path.basename(src)} -> vms/${dest} in ${r.seconds.toFixed(1)} s, stored ${s.storedBytes} B, ${s.segments} segments`);
    };
    await copy(files[0], 'vm1.raw');
    ok(await app.api('POST', '/shares/vms/snapshots', { name: 'day1' }), 'snapshot');
    await copy(files[1], 'vm1.raw');
    await copy(files[2], 'vm2.raw');
    const job = ok(await app.api('POST', '/gc', {}), 'gc').job!;
    for (;;) {
      const j = (await app.api('GET', `/jobs/${job}`)).body as { state: string; result: unknown; error: unknown };
      if (j.state === 'succeeded') {
        note(`mount: gc ${JSON.stringify(j.result)}`);
        break;
      }
      if (j.state !== 'queued' && j.state !== 'running') throw new Error(`gc ${j.state}: ${JSON.stringify(j.error)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const s = await stats();
    return { steps, afterGc: s.storedBytes, segments: s.segments };
  } finally {
    await app.stop();
  }
}

export async function viaNamespace(files: string[], work: string): Promise<DoorResult> {
  const store = await SegmentStore.open(path.join(work, 'data'));
  const ns = await Namespace.open(store, { log: (l) => note(l) });
  try {
    await ns.shares.create('vms');
    const steps: number[] = [];
    const copy = async (src: string, dest: string) => {
      await copySparse(ns, src, `/vms/${dest}`);
      await ns.flushAll();
      const s = await store.stats();
      steps.push(s.storedBytes);
      note(`namespace: ${path.basename(src)} -> vms/${dest}, stored ${s.storedBytes} B, ${s.segments} segments (${s.treeNodes} nodes)`);
    };
    await copy(files[0], 'vm1.raw');
    await ns.snapshots.create('vms', 'day1');
    await copy(files[1], 'vm1.raw');
    await copy(files[2], 'vm2.raw');
    const g = await runGc(ns);
    note(`namespace: gc reclaimed ${g.reclaimedBytes} B, ${g.deadSegments} dead segments, ${g.deadBytesKept} dead bytes kept`);
    const s = await store.stats();
    return { steps, afterGc: s.storedBytes, segments: s.segments, treeNodes: s.treeNodes };
  } finally {
    await ns.close();
    await store.close();
  }
}

export function workDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}
