// Moving a running VM's disks to other files with QEMU's blockdev-mirror (live storage
// migration), each step beside its undo, as libvirt's blockcopy does:
//
//   qemu-img create the target (exact virtual size)      target file removed
//   blockdev-add the target node                         blockdev-del of it
//   blockdev-mirror sync=full, one job per disk          block-job-cancel (before the pivot)
//   wait until every job is ready (query-block-jobs)     -
//   block-job-complete each: QEMU pivots the device      (no undo: the VM now writes the target)
//   blockdev-del the old format and file nodes           -
//
// After the pivot the guest writes only the targets. Once the old nodes are deleted QEMU holds no
// file descriptor of the source: the caller checks that with sourcesStillOpen().

import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import { promisify } from 'node:util';
import { vmError } from '../../errors.js';
import type { QmpChannel } from './qmp-channel.js';

const run = promisify(execFile);

export interface MirrorDisk {
  device: string;
  /** The format node the guest's device reads now. */
  node: string;
  /** Its file node (deleted after the pivot), if it is a node of its own. */
  fileNode?: string;
  sizeBytes: number;
  /** The new image file. Must not exist. */
  target: string;
}

export interface MirrorProgress {
  /** Bytes copied and to copy, summed over the disks (query-block-jobs offset and len). */
  bytes(done: number, total: number): void;
  log(line: string): void;
  signal?: AbortSignal;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface JobInfo {
  device: string;
  offset: number;
  len: number;
  ready: boolean;
  status?: string;
  error?: string;
}

/**
 * Mirrors every disk to its target in `format` and pivots the VM onto the targets. Returns the
 * block nodes the devices use afterwards. On failure or cancel before the pivot, the VM keeps
 * running on its sources and the targets are removed.
 */
export async function mirrorDisks(qmp: QmpChannel, disks: MirrorDisk[], format: 'raw' | 'qcow2', p: MirrorProgress, opts: { pollMs?: number; readyTimeoutMs?: number } = {}): Promise<Array<{ device: string; node: string; file: string }>> {
  const pollMs = opts.pollMs ?? 250;
  const made: string[] = [];
  const added: string[] = [];
  const jobs: string[] = [];
  const jobOf = (d: MirrorDisk) => `vmvault-mirror-${d.device}`;
  const targetNode = (d: MirrorDisk) => `${d.device}-target`;
  let pivoted = false;
  try {
    for (const d of disks) {
      await fs.stat(d.target).then(
        () => {
          throw vmError('ALREADY_EXISTS', `${d.target} exists; migrate into files that do not exist yet`, { file: d.target });
        },
        (err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') throw vmError('IO', `${d.target}: ${err.message}`);
        },
      );
      try {
        await run('qemu-img', ['create', '-q', '-f', format, d.target, String(d.sizeBytes)]);
      } catch (err) {
        throw vmError('IO', `qemu-img create ${d.target}: ${((err as { stderr?: string }).stderr ?? (err as Error).message).trim()}`);
      }
      made.push(d.target);
      await qmp.execute('blockdev-add', { driver: format, 'node-name': targetNode(d), file: { driver: 'file', filename: d.target } });
      added.push(targetNode(d));
    }
    qmp.clearEvents('BLOCK_JOB_COMPLETED');
    qmp.clearEvents('BLOCK_JOB_ERROR');
    for (const d of disks) {
      await qmp.execute('blockdev-mirror', { 'job-id': jobOf(d), device: d.node, target: targetNode(d), sync: 'full' });
      jobs.push(jobOf(d));
      p.log(`${d.device}: mirroring to ${d.target} (${format})`);
    }
    // Ready: the bulk copy is done and QEMU keeps writes going to both sides until the pivot.
    const deadline = Date.now() + (opts.readyTimeoutMs ?? 24 * 3600_000);
    for (;;) {
      if (p.signal?.aborted) throw vmError('CANCELLED', 'the migration was cancelled; the VM goes on running from the mount');
      const list = (await qmp.execute<JobInfo[]>('query-block-jobs')).filter((j) => jobs.includes(j.device));
      const gone = jobs.filter((id) => !list.some((j) => j.device === id));
      if (gone.length > 0) {
        const ev = await qmp.waitEvent('BLOCK_JOB_COMPLETED', (e) => gone.includes(e.device), 100).catch(() => null);
        throw vmError('IO', `mirror job ${gone.join(', ')} ended before it was ready${ev?.error ? `: ${ev.error}` : ''}`);
      }
      const failed = list.find((j) => j.error || j.status === 'aborting' || j.status === 'concluded');
      if (failed) throw vmError('IO', `mirror job ${failed.device} failed: ${failed.error ?? failed.status}`);
      p.bytes(list.reduce((n, j) => n + j.offset, 0), list.reduce((n, j) => n + j.len, 0));
      if (list.every((j) => j.ready)) break;
      if (Date.now() > deadline) throw vmError('TIMEOUT', `the mirror jobs were not ready within ${opts.readyTimeoutMs} ms`);
      await sleep(pollMs);
    }
    pivoted = true;
    for (const d of disks) {
      await qmp.execute('block-job-complete', { device: jobOf(d) });
    }
    for (const d of disks) {
      const ev = await qmp.waitEvent('BLOCK_JOB_COMPLETED', (e) => e.device === jobOf(d), 600_000);
      if (ev?.error) throw vmError('IO', `${d.device}: the mirror's pivot failed: ${ev.error}`);
      p.log(`${d.device}: pivoted onto ${d.target}`);
    }
    // The old nodes were added with -blockdev: the monitor holds them until deleted.
    for (const d of disks) {
      for (const n of [d.node, d.fileNode]) {
        if (n === undefined) continue;
        try {
          await qmp.execute('blockdev-del', { 'node-name': n });
        } catch (err) {
          if (!/not found|Cannot find/i.test((err as Error).message)) throw err;
        }
      }
    }
    return disks.map((d) => ({ device: d.device, node: targetNode(d), file: d.target }));
  } catch (err) {
    if (!pivoted) {
      for (const j of jobs) {
        await qmp.execute('block-job-cancel', { device: j, force: true }).catch(() => {});
      }
      for (const j of jobs) {
        await qmp.waitEvent('BLOCK_JOB_CANCELLED', (e) => e.device === j, 30_000).catch(() => {});
      }
      for (const n of added) await qmp.execute('blockdev-del', { 'node-name': n }).catch(() => {});
      for (const f of made) await fs.rm(f, { force: true }).catch(() => {});
    }
    throw err;
  }
}

/** Image files under `root` that QEMU's block graph still names (query-named-block-nodes). */
export async function nodesUnder(qmp: QmpChannel, root: string): Promise<string[]> {
  const nodes = await qmp.execute<Array<{ 'node-name': string; file: string; image?: { filename?: string } }>>('query-named-block-nodes');
  const inside = (f: string | undefined) => f !== undefined && (f === root || f.startsWith(root.endsWith('/') ? root : `${root}/`));
  return [...new Set(nodes.filter((n) => inside(n.file) || inside(n.image?.filename)).map((n) => n.file))];
}
