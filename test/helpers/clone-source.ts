// A source appliance's data for clone-copy tests, in process: a store and namespace with a VM's
// share (vda.raw, vm.json) and restore points made as the backup service makes them (write the
// files through the namespace, then snapshot the share), and a CloneService over it. The VM
// registry and backup list are the share's own snapshots: what clone copies read of them.

import crypto from 'node:crypto';
import path from 'node:path';
import type { Namespace } from '../../src/namespace/namespace.js';
import { CloneService } from '../../src/policy/clone-service.js';
import type { SegmentStore } from '../../src/store/store.js';
import { openNs } from './ns.js';
import { tmpDir } from './tmpdir.js';

interface Teardown {
  teardown(fn: () => unknown): void;
}

/** Seeded pseudo-random bytes (incompressible), reproducible. */
export function noise(seed: string, bytes: number): Buffer {
  const out = Buffer.alloc(bytes);
  let at = 0;
  let n = 0;
  while (at < bytes) {
    const h = crypto.createHash('sha512').update(`${seed}:${n++}`).digest();
    at += h.copy(out, at);
  }
  return out;
}

/** A 24 MiB "disk": data regions and zero runs. */
export function day1Disk(): Buffer {
  const d = Buffer.alloc(24 * 1024 * 1024);
  noise('base-a', 8 * 1024 * 1024).copy(d, 0);
  noise('base-b', 6 * 1024 * 1024).copy(d, 12 * 1024 * 1024);
  return d;
}

/** Day 2: day 1 with about 1.1 MiB rewritten in three places. */
export function day2Disk(day1: Buffer): Buffer {
  const d = Buffer.from(day1);
  noise('day2-a', 512 * 1024).copy(d, 1 * 1024 * 1024 + 333);
  noise('day2-b', 256 * 1024).copy(d, 13 * 1024 * 1024 + 77);
  noise('day2-c', 384 * 1024).copy(d, 20 * 1024 * 1024); // into a zero run
  return d;
}

export interface CloneSource {
  dir: string;
  store: SegmentStore;
  ns: Namespace;
  clones: CloneService;
  /** Writes the VM's files and snapshots the share as `point` (locked until `lockedUntil`, ms). */
  point(vm: string, point: string, disk: Buffer, lockedUntil?: number): Promise<void>;
}

export async function cloneSource(t: Teardown): Promise<CloneSource> {
  const dir = tmpDir(t, 'vmvault-clone-src-');
  const { store, ns } = await openNs(t, path.join(dir, 'store'));
  const clones = await CloneService.open({
    dataDir: dir,
    ns,
    vms: { get: (name: string) => ({ name, share: name }) },
    listBackups: async (vm) => (await ns.snapshots.list(vm)).map((s) => ({ point: s.name })),
    policiesUsing: () => [],
    log: () => {},
  });
  return {
    dir,
    store,
    ns,
    clones,
    async point(vm, point, disk, lockedUntil) {
      if (!(await ns.shares.list()).some((s) => s.name === vm)) await ns.shares.create(vm);
      for (const [name, data] of [
        ['vda.raw', disk],
        ['vm.json', Buffer.from(JSON.stringify({ version: 1, name: vm, point }) + '\n')],
      ] as const) {
        const w = await store.writeBuffer(data);
        const target = `${vm}/${name}`;
        await ns.installer.install(target, w.version, w.deps, await ns.installer.current(target));
      }
      await ns.snapshots.create(vm, point);
      if (lockedUntil !== undefined) await ns.snapshots.lock(vm, point, lockedUntil);
    },
  };
}

/** The distinct data segments (fingerprint hex -> length) of a file of a snapshot. */
export async function segmentsOf(ns: Namespace, share: string, snap: string, file: string): Promise<Map<string, number>> {
  const { snapshotFiles } = await import('../../src/namespace/snapshot-files.js');
  const f = (await snapshotFiles(ns, share, snap)).find((x) => x.path === file);
  if (!f) throw new Error(`no ${file} in ${share}/${snap}`);
  const out = new Map<string, number>();
  for await (const p of ns.store.view(f.version).leaves(0, f.version.size)) if (!p.entry.zero) out.set(p.entry.fp.toString('hex'), p.entry.len);
  return out;
}
