// The copy of one backup run: export every fleecing node over NBD and write each disk into the
// share's `<device>.raw` through the namespace.
//
// Per disk, incremental only when all of these hold, else full with the reason logged and recorded:
// the fleecing export carries a dirty bitmap (Fleece found the previous checkpoint), the previous
// point has this disk, and its size is unchanged. An incremental starts from the previous point's
// file, put back by fastcopy from its snapshot (by reference, instant): whatever a failed run left
// in the share's file is discarded, so the dirty extents alone make the whole image.

import path from 'node:path';
import { isVmvaultError, vmError } from '../errors.js';
import type { Namespace } from '../namespace/namespace.js';
import type { Fleece, FleeceExport } from '../plugins/qemu/fleece.js';
import { NbdClient } from '../plugins/qemu/nbd-client.js';
import type { AgentPool, TaskResult } from './agent-pool.js';
import type { DiskRecord } from './backup-records.js';
import type { CopyJob } from './copy-plugin.js';
import { BASE_ALLOCATION, copyDisk, SourcePool } from './disk-copy.js';

export interface PreviousPoint {
  point: string;
  disks: Map<string, number>; // device -> size
}

export interface CopyProgress {
  total(n: number, unit: 'bytes'): void;
  advance(n: number): void;
}

export interface BackupCopyOptions {
  ns: Namespace;
  share: string;
  /** The VM's name, for agent tasks and messages (default: the share's). */
  vmName?: string;
  fleece: Fleece;
  socketPath: string;
  previous: PreviousPoint | undefined;
  progress: CopyProgress;
  inFlight?: number;
  /** NBD connections per disk (reads spread over them). Default 1. */
  connections?: number;
  /** The job's log (the workflow engine's log is the appliance's); default: the action's. */
  log?: (line: string) => void;
  /**
   * Hand the disks to the agent pool instead of copying in process (issue 12): the VM's pinned
   * agent, or another live one that reaches the source. `listen` is where QEMU's NBD server
   * listens for the agent (default: socketPath, a UNIX socket an agent on this host or on a
   * shared filesystem reaches); `tcp:HOST:PORT` for an agent across the network.
   */
  agents?: { pool: AgentPool; pinned: string; listen?: string };
}

export class BackupCopy implements CopyJob {
  readonly disks: DiskRecord[] = [];
  bytesRead = 0;
  bytesWritten = 0;
  done = false;
  /** What each agent reported per disk (issue 12), for the job log and the benches. */
  readonly agentReports: Array<TaskResult & { device: string }> = [];

  constructor(private readonly o: BackupCopyOptions) {}

  async run(signal: AbortSignal, actionLog: (line: string) => void): Promise<void> {
    const { ns, share, fleece } = this.o;
    const log = this.o.log ?? actionLog;
    const listen = this.o.agents?.listen ?? this.o.socketPath;
    const exports = await fleece.exportAll(listen);
    this.o.progress.total(exports.reduce((n, e) => n + e.sizeBytes, 0), 'bytes');
    const agentTasks: Array<Promise<void>> = [];
    for (const ex of exports) {
      if (signal.aborted) throw vmError('CANCELLED', 'the backup was cancelled');
      const file = `/${share}/${ex.device}.raw`;
      const prevSize = this.o.previous?.disks.get(ex.device);
      let fullReason: string | undefined;
      if (!ex.dirtyBitmapContext) fullReason = ex.fullReason ?? (this.o.previous ? 'no dirty bitmap was exported' : undefined);
      else if (!this.o.previous) fullReason = 'no previous restore point';
      else if (prevSize === undefined) fullReason = `disk ${ex.device} is not in the previous point ${this.o.previous.point}`;
      else if (prevSize !== ex.sizeBytes) fullReason = `disk ${ex.device} changed size from ${prevSize} to ${ex.sizeBytes} bytes`;
      const incremental = fullReason === undefined && ex.dirtyBitmapContext !== undefined;
      if (fullReason) log(`${ex.device}: full copy: ${fullReason}`);

      const t0 = performance.now();
      await removeIfExists(ns, file);
      if (incremental) {
        await ns.snapshots.fastcopy(share, `.snapshots/${this.o.previous!.point}/${ex.device}.raw`, `${ex.device}.raw`);
      } else {
        await ns.fs.release(await ns.fs.create(file, 0o600));
      }
      const fh = await ns.fs.open(file, 2);
      if (this.o.agents) {
        try {
          await ns.fs.ftruncate(fh, ex.sizeBytes);
        } finally {
          await ns.fs.release(fh);
        }
        log(`${ex.device}: file ready in ${(performance.now() - t0).toFixed(0)} ms; handing it to the agent pool`);
        agentTasks.push(this.viaAgent(ex, listen, incremental, fullReason, signal, log));
        continue;
      }
      let released = false;
      try {
        await ns.fs.ftruncate(fh, ex.sizeBytes);
        log(`${ex.device}: file ready in ${(performance.now() - t0).toFixed(0)} ms`);
        const conns = Math.max(1, this.o.connections ?? 1);
        const opened = await Promise.allSettled(
          Array.from({ length: conns }, () =>
            NbdClient.connect({
              socket: this.o.socketPath,
              exportName: ex.exportName,
              metaContexts: incremental ? [BASE_ALLOCATION, ex.dirtyBitmapContext!] : [BASE_ALLOCATION],
            }),
          ),
        );
        const clients = opened.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
        let r;
        try {
          const failed = opened.find((o) => o.status === 'rejected') as PromiseRejectedResult | undefined;
          if (failed) throw failed.reason;
          const src = new SourcePool(clients);
          if (src.size !== ex.sizeBytes) throw vmError('IO', `NBD export ${ex.exportName} is ${src.size} bytes, the disk ${ex.sizeBytes}`);
          const t0 = performance.now();
          r = await copyDisk(ns, fh, src, {
            dirtyContext: incremental ? ex.dirtyBitmapContext : undefined,
            signal,
            advance: (n) => this.o.progress.advance(n),
            inFlight: this.o.inFlight !== undefined ? this.o.inFlight * conns : 8 * conns,
          });
          log(`${ex.device}: ${incremental ? 'incremental' : 'full'}: read ${r.bytesRead} bytes of ${r.bytesConsidered}, wrote ${r.bytesWritten}, ${(performance.now() - t0).toFixed(0)} ms over ${conns} NBD connection(s)`);
        } finally {
          await Promise.allSettled(clients.map((c) => c.close()));
        }
        released = true;
        const tr = performance.now();
        await ns.fs.release(fh);
        log(`${ex.device}: committed in ${(performance.now() - tr).toFixed(0)} ms`);
        this.bytesRead += r.bytesRead;
        this.bytesWritten += r.bytesWritten;
        this.disks.push({ device: ex.device, sizeBytes: ex.sizeBytes, bytesRead: r.bytesRead, kind: incremental ? 'incremental' : 'full', ...(fullReason ? { fullReason } : {}) });
      } finally {
        if (!released) await ns.fs.release(fh).catch(() => {});
      }
    }
    // Every disk's task runs at once (on one agent's streams or several agents); a failure of one
    // fails the copy, after the others settled (nothing keeps writing into the share behind us).
    const settled = await Promise.allSettled(agentTasks);
    const failed = settled.find((s) => s.status === 'rejected') as PromiseRejectedResult | undefined;
    if (failed) throw failed.reason;
    // Disks the VM no longer has must not show up in this point.
    const keep = new Set(exports.map((e) => `${e.device}.raw`));
    for (const e of await ns.fs.readdir(`/${share}`)) {
      if (e.name.endsWith('.raw') && !keep.has(e.name)) {
        log(`${e.name}: removed from the share, the VM no longer has that disk`);
        await ns.fs.unlink(`/${share}/${e.name}`);
      }
    }
    this.done = true;
  }

  /** One disk through the agent pool: its file is ready (empty at size, or the previous point's). */
  private async viaAgent(ex: FleeceExport, listen: string, incremental: boolean, fullReason: string | undefined, signal: AbortSignal, log: (l: string) => void): Promise<void> {
    const { pool, pinned } = this.o.agents!;
    const t0 = performance.now();
    let advanced = 0;
    const r = await pool.submit(
      {
        vm: this.o.vmName ?? this.o.share,
        device: ex.device,
        source: { kind: 'nbd', address: sourceAddress(listen), exportName: ex.exportName, ...(incremental ? { dirtyContext: ex.dirtyBitmapContext! } : {}) },
        target: { share: this.o.share, path: `${ex.device}.raw`, size: ex.sizeBytes },
        incremental,
      },
      {
        pinned,
        signal,
        onProgress: (rep) => {
          const n = rep.bytesRead ?? 0;
          if (n > advanced) {
            this.o.progress.advance(n - advanced);
            advanced = n;
          }
        },
      },
    );
    const read = r.bytesRead ?? 0;
    if (read > advanced) this.o.progress.advance(read - advanced);
    log(
      `${ex.device}: ${incremental ? 'incremental' : 'full'} by agent ${r.agents.join(' then ')}: read ${read} bytes, ` +
        `${r.bytesSent ?? 0} on the wire (${r.segmentsSent ?? 0} of ${r.segments ?? 0} segments sent, ${r.fingerprintBytes ?? 0} fingerprint bytes), ` +
        `${(performance.now() - t0).toFixed(0)} ms`,
    );
    this.bytesRead += read;
    this.bytesWritten += r.segmentBytesSent ?? 0;
    this.agentReports.push({ device: ex.device, ...r });
    this.disks.push({ device: ex.device, sizeBytes: ex.sizeBytes, bytesRead: read, kind: incremental ? 'incremental' : 'full', ...(fullReason ? { fullReason } : {}) });
  }
}

/** Unix socket paths as the agent's task names them; a tcp: address as it is. */
function sourceAddress(listen: string): string {
  return listen.startsWith('tcp:') || listen.startsWith('unix:') ? listen : `unix:${listen}`;
}

async function removeIfExists(ns: Namespace, file: string): Promise<void> {
  try {
    await ns.fs.unlink(file);
  } catch (err) {
    if (!isVmvaultError(err, 'NOT_FOUND')) throw err;
  }
}

export function socketPathIn(dir: string): string {
  return path.join(dir, 'nbd.sock');
}
