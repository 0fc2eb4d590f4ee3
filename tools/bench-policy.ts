// npm run bench:policy [-- --limit-mib N] [--images DIR] [--work DIR]   (node dist/tools/bench-policy.js)
// Issue 14's clone figures (the recovery figures are tools/bench-recovery.ts). One JSON line per
// figure, {"figure","value","unit"}; notes go to stderr. Each against a baseline in the same run.
//
// The rig: a second appliance (its own process and data directory) in a network namespace,
// HTTPS with a pinned certificate, as a clone destination; the source is this process's store
// and namespace holding vm1's day-1 and day-2 points (the sample images of make-vm-images.sh,
// vm1-day1.raw and vm1-day2.raw, written through the namespace as the backup service writes
// them, then snapshotted). Day 1 is cloned first (not timed).
//
//   clone.bytes_vs_logical  bytes on the wire (both ways) for the clone of day 2 / the point's
//                           logical size; goal <= 0.05
//   clone.time_vs_backup    time of the clone of day 2 / time of the agent-style incremental
//                           backup of the same point to the same appliance over the same link:
//                           the transfer sender (what an agent runs) sending vm1-day2.raw's
//                           changed 64 KiB blocks as an incremental into a share holding day 1;
//                           goal <= 1
// The baseline reads the image file where the agent reads QEMU's NBD export (the same sender,
// the same protocol, the same changed ranges); QEMU is left out so both sides read local files.
//
// Needs root (network namespaces).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openSource } from '../src/agent/sources.js';
import { Namespace } from '../src/namespace/namespace.js';
import { CloneService } from '../src/policy/clone-service.js';
import { SegmentStore } from '../src/store/store.js';
import { TransferConnection } from '../src/transfer/client.js';
import { sendFile } from '../src/transfer/sender.js';
import { makeNetNs } from '../test/helpers/netns.js';
import { nsAppliance } from '../test/helpers/ns-appliance.js';
import { changedRuns } from './bench/backup-day2.js';

const MiB = 2 ** 20;

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const images = arg('--images') ?? process.env.VMVAULT_BENCH_IMAGES ?? '/work/vmimages';
const limitMiB = arg('--limit-mib') === undefined ? undefined : Number(arg('--limit-mib'));
const emit = (figure: string, value: number, unit: string): void => void process.stdout.write(JSON.stringify({ figure, value: Math.round(value * 1000) / 1000, unit }) + '\n');
const note = (l: string): void => void process.stderr.write(`bench:policy: ${l}\n`);

const fns: Array<() => unknown> = [];
const t = { teardown: (fn: () => unknown) => void fns.push(fn) };
const work = arg('--work') ?? fs.mkdtempSync(path.join(os.tmpdir(), 'vmvault-bench-policy-'));

async function ingest(store: SegmentStore, ns: Namespace, file: string, target: string, bytes: number): Promise<void> {
  const w = store.writer();
  const fh = await fs.promises.open(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(8 * MiB);
    for (let at = 0; at < bytes; ) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, bytes - at), at);
      if (bytesRead === 0) throw new Error(`${file}: short read at ${at}`);
      await w.write(Buffer.from(buf.subarray(0, bytesRead)));
      at += bytesRead;
    }
  } finally {
    await fh.close();
  }
  const r = await w.finish();
  await ns.installer.install(target, r.version, r.deps, await ns.installer.current(target));
}

try {
  const day1 = path.join(images, 'vm1-day1.raw');
  const day2 = path.join(images, 'vm1-day2.raw');
  const full = fs.statSync(day1).size;
  const bytes = limitMiB === undefined ? full : Math.min(full, limitMiB * MiB);
  note(`images ${day1}, ${day2}: ${bytes / MiB} MiB each${bytes < full ? ` (of ${full / MiB})` : ''}; work in ${work}`);

  const net = await makeNetNs(t);
  const remote = await nsAppliance(t, net, path.join(work, 'dst'));
  const admin = await TransferConnection.open({ url: remote.url, token: remote.admin, pinSha256: remote.pin });
  t.teardown(() => admin.close());
  const repl = await admin.json<{ token: string }>('POST', '/api/v1/agents/tokens', { name: 'source', scope: 'replication' });
  await admin.json('POST', '/api/v1/shares', { name: 'vm1-agent' });

  // The source: vm1's two points, written through the namespace and snapshotted.
  const store = await SegmentStore.open(path.join(work, 'src', 'store'));
  const ns = await Namespace.open(store, { log: () => {} });
  t.teardown(async () => {
    await ns.close();
    await store.close();
  });
  await ns.shares.create('vm1');
  for (const [point, image] of [
    ['P1', day1],
    ['P2', day2],
  ] as const) {
    const s = Date.now();
    await ingest(store, ns, image, 'vm1/vda.raw', bytes);
    const vmjson = await store.writeBuffer(Buffer.from(JSON.stringify({ version: 1, name: 'vm1', point }) + '\n'));
    await ns.installer.install('vm1/vm.json', vmjson.version, vmjson.deps, await ns.installer.current('vm1/vm.json'));
    await ns.snapshots.create('vm1', point);
    note(`source point ${point} written in ${((Date.now() - s) / 1000).toFixed(1)} s`);
  }
  const clones = await CloneService.open({
    dataDir: path.join(work, 'src'),
    ns,
    vms: { get: (name: string) => ({ name, share: name }) },
    listBackups: async (vm) => (await ns.snapshots.list(vm)).map((s) => ({ point: s.name })),
    policiesUsing: () => [],
    log: note,
  });
  await clones.addDestination({ name: 'site-b', appliance: remote.url, token: repl.token, pin: remote.pin });
  let s = Date.now();
  await clones.clone('vm1', 'site-b', 'P1');
  note(`clone of day 1 (everything crosses): ${((Date.now() - s) / 1000).toFixed(1)} s`);

  // Baseline: the agent's sender, day 1 full (not timed), then day 2's changed blocks timed.
  const d1 = await openSource({ kind: 'file', path: day1 });
  s = Date.now();
  await sendFile(admin, { size: bytes, read: (o, l) => d1.read(o, l) }, { share: 'vm1-agent', path: 'vda.raw', size: bytes });
  await d1.close();
  note(`agent-style full backup of day 1: ${((Date.now() - s) / 1000).toFixed(1)} s`);
  const runs = changedRuns(day1, day2, bytes);
  note(`day 2 differs from day 1 in ${runs.length} runs, ${runs.reduce((a, r) => a + r.length, 0) / MiB} MiB`);
  const d2 = await openSource({ kind: 'file', path: day2 });
  s = Date.now();
  const b = await sendFile(admin, { size: bytes, read: (o, l) => d2.read(o, l) }, { share: 'vm1-agent', path: 'vda.raw', size: bytes, ranges: runs });
  const backupMs = Date.now() - s;
  await d2.close();
  note(`agent-style incremental backup of day 2: ${(backupMs / 1000).toFixed(2)} s, ${b.segmentsSent} segments sent, ${b.bytesSent} bytes on the wire`);

  s = Date.now();
  const c = await clones.clone('vm1', 'site-b', 'P2');
  const cloneMs = Date.now() - s;
  const r = (c as { appliance: { bytesSent: number; logicalBytes: number; segmentsSent: number; segments: number } }).appliance;
  note(`clone of day 2: ${(cloneMs / 1000).toFixed(2)} s, ${r.segmentsSent} of ${r.segments} segments sent, ${r.bytesSent} bytes on the wire for ${r.logicalBytes} logical`);
  emit('clone.bytes_vs_logical', r.bytesSent / r.logicalBytes, 'ratio');
  emit('clone.time_vs_backup', cloneMs / backupMs, 'ratio');
} finally {
  for (const fn of fns.reverse()) await Promise.resolve(fn()).catch((err) => note(`cleanup: ${(err as Error).message}`));
  if (arg('--work') === undefined) fs.rmSync(work, { recursive: true, force: true });
}
