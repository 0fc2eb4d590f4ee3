// A group backup (issue 13): every VM of a group captured at one moment, then copied
// busiest-first, each VM's fleecing released the moment its own copy ends.
//
// Each VM runs its own single-VM backup (BackupService.backup, its workflow, its point, its
// record) with the BackupPhases seams, and this coordinator ties them together:
//   (a) prepare   each VM: QMP, describe, fleecing nodes (the service); here a first
//                 query-blockstats sample and a temporary dirty bitmap per disk, then a barrier:
//                 every VM prepared (or failed). A second sample at least loadWindowMs after the
//                 first gives the load: the guest's write rate (blockstats) and the rate of newly
//                 dirtied bytes (the bitmap; what a held point's scratch image takes in).
//   (b) quiesce   each VM's workflow runs its quiesce steps (the engine, as for one VM).
//   (c) moment    each VM's snapshot step waits at a barrier until every live VM reached it, then
//                 all transactions are fired at once, one per QEMU. The skew (latest minus
//                 earliest transaction completion, overall and per host) goes into the job log.
//   (d) unquiesce each VM's workflow thaws right after its own transaction.
//   (e) copies    each VM's copy step joins a queue; once every live VM has joined, the queue
//                 runs `parallel` copies at a time in the chosen order: busiest-first (write
//                 rate, then bytes to read: an incremental's dirty count, a full disk's size),
//                 largest-first, or alphabetical. The first VM of the order, when it has a write
//                 load, is copied alone on its reader (its host's agent, or the appliance) until
//                 its fleecing is released, so the busiest VM holds its point the shortest time;
//                 other hosts' copies run beside it.
//   (f) release   each VM releases its scratch, NBD export and job as soon as its copy has read
//                 everything (release 'early'), before its point is made; 'end' holds every
//                 release until all copies ended (the bench's baseline). A copy's slot is free
//                 at its copy's end, the head's that runs alone once its release is done. Each
//                 release is an event and a job log line.
// A VM that fails leaves every barrier and the queue, so the others go on: it fails alone.
// All points of a run carry the same name (the run's start, unique across the group's shares).
// A VM's transaction is one QMP command on its own QEMU; a per-host batch through a relayed QMP
// channel (hosts part) would replace the per-VM fire without changing the barrier.

import { setMaxListeners } from 'node:events';
import fs from 'node:fs/promises';
import { type ErrorCode, isVmvaultError, vmError } from '../errors.js';
import type { BackupPhases, BackupProgress, BackupRecord } from './backup-service.js';
import { sampleWrites, startDirtyProbe, type WriteSample, writeRate } from './io-load.js';
import { pointName, uniquePointName } from './point-name.js';

export type CopyOrder = 'busiest' | 'largest' | 'alphabetical';
export const COPY_ORDERS: readonly CopyOrder[] = ['busiest', 'largest', 'alphabetical'];
export const DEFAULT_PARALLEL = 2;
export const MAX_PARALLEL = 64;
/** Long enough for two blockstats samples to show a rate, short beside any copy. */
export const DEFAULT_LOAD_WINDOW_MS = 1000;

/** What the coordinator needs of the backup service (BackupService satisfies it). */
export interface GroupBackupEngine {
  backup(name: string, opts: { workflow?: string; full?: boolean }, p: BackupProgress, phases: BackupPhases): Promise<BackupRecord>;
  pointNames(name: string): Promise<Set<string>>;
}

export interface GroupMember {
  name: string;
  /** The host whose agent reaches the VM (skew per host); absent: 'local'. */
  host?: string;
}

export interface GroupBackupOptions {
  workflow?: string;
  full?: boolean;
  /** Copies at once; default 2. */
  parallel?: number;
  order?: CopyOrder;
  release?: 'early' | 'end';
  loadWindowMs?: number;
  /** Names the point (time is an input). */
  now?: () => Date;
  /**
   * Runs once after every transaction completed and before the first copy starts (tests and the
   * bench write into the disks here, after the moment). Not for production use.
   */
  afterMoment?: () => Promise<void>;
}

export type GroupEventKind = 'prepared' | 'transaction' | 'copy-start' | 'copy-end' | 'released' | 'point' | 'failed';

export interface GroupEvent {
  /** ms since the run started. */
  t: number;
  vm: string;
  event: GroupEventKind;
  detail?: string;
}

export interface GroupVmResult {
  vm: string;
  host: string;
  ok: boolean;
  point?: string;
  kind?: 'full' | 'incremental';
  bytesRead?: number;
  error?: { code: string; message: string };
  /**
   * Measured before the moment: the guest devices' write rate (query-blockstats), the rate of
   * newly dirtied bytes (a temporary dirty bitmap), both bytes/s; and the bytes the copy reads.
   * Busiest = the larger of the two rates.
   */
  load?: { writeBytesPerSec: number; dirtyBytesPerSec: number; bytesToRead: number };
  /** 1-based place in the copy order. */
  copyRank?: number;
  /** ms since the run started. */
  transactionAt?: number;
  copyStartAt?: number;
  copyEndAt?: number;
  releasedAt?: number;
  /** Transaction completed until fleecing released, ms: how long QEMU kept the point. */
  lifetimeMs?: number;
  /** Allocated bytes of the VM's scratch images just before their release. */
  scratchBytes?: number;
  /**
   * What the scratch images took in while the point was held: scratchBytes less their
   * allocation when made (a new qcow2's header and tables, the same in every run).
   */
  scratchGrowthBytes?: number;
  log: string[];
}

export interface GroupBackupResult {
  group: string;
  point: string;
  order: CopyOrder;
  parallel: number;
  release: 'early' | 'end';
  succeeded: number;
  failed: number;
  /** Latest minus earliest transaction completion, ms (null: fewer than two transactions). */
  skewMs: number | null;
  /** Latest minus earliest transaction sent, ms: the appliance's own share of the skew. */
  sendSkewMs: number | null;
  skewMsByHost: Record<string, number | null>;
  /** VM names in the order their copies were started. */
  copyOrder: string[];
  vms: GroupVmResult[];
  events: GroupEvent[];
}

export function checkParallel(n: unknown): number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > MAX_PARALLEL) {
    throw vmError('INVALID_ARGUMENT', `parallel must be a whole number from 1 to ${MAX_PARALLEL}, not ${JSON.stringify(n)}`);
  }
  return n;
}

export function checkOrder(o: unknown): CopyOrder {
  if (typeof o !== 'string' || !(COPY_ORDERS as readonly string[]).includes(o)) throw vmError('INVALID_ARGUMENT', `order must be one of ${COPY_ORDERS.join(', ')}, not ${JSON.stringify(o)}`);
  return o as CopyOrder;
}

/**
 * A barrier over the live members: arrive() resolves once every member still alive has arrived.
 * A member that fails leaves (the coordinator removes it from `live` and calls check()).
 */
class Gate {
  private readonly arrived = new Set<string>();
  private readonly waiting: Array<{ resolve: () => void; reject: (e: unknown) => void }> = [];
  opened = false;

  constructor(private readonly live: Set<string>, private readonly onOpen?: () => void) {}

  arrive(vm: string, signal: AbortSignal): Promise<void> {
    this.arrived.add(vm);
    if (signal.aborted) return Promise.reject(vmError('CANCELLED', 'the group backup was cancelled'));
    const p = new Promise<void>((resolve, reject) => {
      const onAbort = () => reject(vmError('CANCELLED', 'the group backup was cancelled'));
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiting.push({
        resolve: () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        },
        reject,
      });
    });
    this.check();
    return p;
  }

  check(): void {
    if (this.opened) {
      for (const w of this.waiting.splice(0)) w.resolve();
      return;
    }
    for (const v of this.live) if (!this.arrived.has(v)) return;
    this.opened = true;
    this.onOpen?.();
    for (const w of this.waiting.splice(0)) w.resolve();
  }
}

interface VmRun {
  member: GroupMember;
  result: GroupVmResult;
  first?: WriteSample;
  probe?: () => Promise<{ at: number; dirtyBytes: number; startedAt: number }>;
  /** When its transaction was sent, ms since the run started. */
  sentAt?: number;
  copy?: { run: () => Promise<void>; resolve: () => void; reject: (e: unknown) => void };
  /** The scratch images' allocation when made (before the moment). */
  scratchAtStart?: number;
  /** Its copy runs alone on its reader (the head of the order, under write load). */
  alone?: boolean;
  /** Frees the copy's slot in the queue (once). */
  freeSlot?: () => void;
  total: number;
}

export async function runGroupBackup(engine: GroupBackupEngine, group: string, members: GroupMember[], opts: GroupBackupOptions, p: BackupProgress): Promise<GroupBackupResult> {
  if (members.length === 0) throw vmError('INVALID_ARGUMENT', `group ${group} has no VM to back up`, { group });
  const parallel = checkParallel(opts.parallel ?? DEFAULT_PARALLEL);
  const order = checkOrder(opts.order ?? 'busiest');
  const release = opts.release ?? 'early';
  const windowMs = opts.loadWindowMs ?? DEFAULT_LOAD_WINDOW_MS;
  // Every VM's backup (its engine, copy, NBD reads) and the barriers listen to the one job signal.
  setMaxListeners(Math.max(10, members.length * 8 + 10), p.signal);
  const t0 = performance.now();
  const now = () => Math.round((performance.now() - t0) * 10) / 10;
  const events: GroupEvent[] = [];
  const event = (vm: string, kind: GroupEventKind, detail?: string, line?: string) => {
    events.push({ t: now(), vm, event: kind, ...(detail !== undefined ? { detail } : {}) });
    if (line !== undefined) p.log(`+${now().toFixed(0)} ms ${vm}: ${line}`);
  };

  p.phase('prepare');
  // One name for every point of the run, free in every member's share.
  const taken = new Set<string>();
  for (const m of members) {
    try {
      for (const n of await engine.pointNames(m.name)) taken.add(n);
    } catch {
      // An unknown VM fails in its own backup below, with its own reason.
    }
  }
  const point = uniquePointName(pointName(opts.now?.() ?? new Date()), taken);
  p.log(`group ${group}: ${members.length} VM(s), point ${point}, ${parallel} cop${parallel === 1 ? 'y' : 'ies'} at once, ${order} first, release ${release === 'early' ? 'as each copy ends' : 'at the end'}`);

  const runs = new Map<string, VmRun>(members.map((m) => [m.name, { member: m, total: 0, result: { vm: m.name, host: m.host ?? 'local', ok: false, log: [] } }]));
  const live = new Set(runs.keys());
  const prepared = new Gate(live, () => p.phase('moment'));
  const moment = new Gate(live);
  const copiesDone = new Gate(live);
  let running = 0;
  let queue: VmRun[] | undefined;
  const copyOrder: string[] = [];
  let skewMs: number | null = null;
  let sendSkewMs: number | null = null;
  const skewMsByHost: Record<string, number | null> = {};
  let afterMoment: Promise<void> | undefined;

  const rankKey = (r: VmRun): [number, number] => [Math.max(r.result.load?.writeBytesPerSec ?? 0, r.result.load?.dirtyBytesPerSec ?? 0), r.result.load?.bytesToRead ?? 0];
  const sortRuns = (list: VmRun[]): VmRun[] =>
    list.sort((a, b) => {
      if (order === 'alphabetical') return a.member.name < b.member.name ? -1 : 1;
      const [ra, sa] = rankKey(a);
      const [rb, sb] = rankKey(b);
      if (order === 'busiest' && ra !== rb) return rb - ra;
      if (sa !== sb) return sb - sa;
      if (order === 'largest' && ra !== rb) return rb - ra;
      return a.member.name < b.member.name ? -1 : 1;
    });

  const measureSkew = () => {
    const done = [...runs.values()].filter((r) => r.result.transactionAt !== undefined);
    const spread = (list: VmRun[]) => (list.length < 2 ? null : Math.max(...list.map((r) => r.result.transactionAt!)) - Math.min(...list.map((r) => r.result.transactionAt!)));
    skewMs = spread(done) === null ? null : Math.round(spread(done)! * 10) / 10;
    const sent = done.map((r) => r.sentAt!);
    sendSkewMs = sent.length < 2 ? null : Math.round((Math.max(...sent) - Math.min(...sent)) * 10) / 10;
    const hosts = new Set(done.map((r) => r.result.host));
    for (const h of hosts) {
      const s = spread(done.filter((r) => r.result.host === h));
      skewMsByHost[h] = s === null ? null : Math.round(s * 10) / 10;
    }
    p.log(
      `moment: ${done.length} transaction(s), skew ${skewMs === null ? '-' : `${skewMs} ms`} (sent within ${sendSkewMs ?? '-'} ms)` +
        (hosts.size > 1 ? ` (per host: ${[...hosts].map((h) => `${h} ${skewMsByHost[h] ?? '-'}`).join(', ')})` : ''),
    );
  };

  // The copy queue starts once every live VM has joined it; then `parallel` at a time, except
  // that the head of the order, when a write load was measured on it, has its reader (its host's
  // agent, or this appliance for a local VM) to itself until its fleecing is released: a copy
  // beside it on the same reader would share that reader's bandwidth and could end first, and
  // every second it is held its scratch takes in the busiest writes of the group. Copies read by
  // other hosts' agents go on beside it.
  let headReader: string | undefined;
  const readerOf = (r: VmRun): string => r.member.host ?? 'local';
  const pump = () => {
    if (queue === undefined) return;
    while (running < parallel && queue.length > 0) {
      const i = headReader === undefined ? 0 : queue.findIndex((q) => readerOf(q) !== headReader);
      if (i < 0) return;
      const r = queue.splice(i, 1)[0];
      const job = r.copy!;
      const alone = copyOrder.length === 0 && parallel > 1 && rankKey(r)[0] > 0;
      if (alone) headReader = readerOf(r);
      r.alone = alone;
      running++;
      copyOrder.push(r.member.name);
      r.result.copyRank = copyOrder.length;
      r.result.copyStartAt = now();
      const l = r.result.load;
      event(
        r.member.name,
        'copy-start',
        undefined,
        `copy ${copyOrder.length} starts${l ? ` (writes ${fmtRate(l.writeBytesPerSec)}, dirties ${fmtRate(l.dirtyBytesPerSec)}, ${l.bytesToRead} bytes to read)` : ''}` +
          (alone ? `, alone on its reader (${headReader}) until its fleecing is released` : ''),
      );
      // The slot is free at the copy's end (beforeRelease), or for the head that runs alone once
      // its fleecing is released (the run below includes the release).
      let slotHeld = true;
      r.freeSlot = () => {
        if (!slotHeld) return;
        slotHeld = false;
        running--;
        if (alone) headReader = undefined;
        pump();
      };
      job.run().then(
        () => {
          copyEnded(r);
          job.resolve();
        },
        (err) => {
          copyEnded(r, err as Error);
          job.reject(err);
        },
      ).finally(() => r.freeSlot!());
    }
  };
  const copyEnded = (r: VmRun, err?: Error) => {
    if (r.result.copyEndAt !== undefined || r.result.copyStartAt === undefined) return;
    r.result.copyEndAt = now();
    if (err === undefined) event(r.member.name, 'copy-end', undefined, 'copy ended');
    else event(r.member.name, 'copy-end', err.message, `copy failed: ${err.message}`);
  };
  const maybeStartQueue = () => {
    if (queue !== undefined) return;
    for (const v of live) if (runs.get(v)!.copy === undefined) return;
    const waiting = [...runs.values()].filter((r) => r.copy !== undefined && live.has(r.member.name));
    queue = sortRuns(waiting);
    measureSkew();
    p.phase('copy');
    p.log(`copy order (${order}): ${queue.map((r) => r.member.name).join(', ') || '-'}`);
    afterMoment = (opts.afterMoment?.() ?? Promise.resolve()).catch((e) => p.log(`after the moment: ${(e as Error).message}`));
    void afterMoment.then(pump);
  };

  const leave = (vm: string) => {
    live.delete(vm);
    prepared.check();
    moment.check();
    copiesDone.check();
    maybeStartQueue();
  };

  const phasesFor = (r: VmRun): BackupPhases => {
    const vm = r.member.name;
    return {
      point,
      prepared: async ({ qmp, disks, bytesToRead, scratchBytes }) => {
        r.scratchAtStart = await scratchBytes().catch(() => undefined);
        try {
          r.first = await sampleWrites(qmp);
        } catch (err) {
          r.result.log.push(`query-blockstats failed, load taken as 0: ${(err as Error).message}`);
        }
        try {
          r.probe = await startDirtyProbe(qmp, disks.map((d) => d.node));
        } catch (err) {
          r.result.log.push(`the dirty-bytes probe failed, taken as 0: ${(err as Error).message}`);
        }
        event(vm, 'prepared');
        await prepared.arrive(vm, p.signal);
        let rate = 0;
        let dirtyRate = 0;
        const since = r.first?.at ?? performance.now();
        const wait = windowMs - (performance.now() - since);
        if (wait > 0) await sleep(wait, p.signal);
        if (r.first !== undefined) {
          try {
            rate = writeRate(r.first, await sampleWrites(qmp));
          } catch (err) {
            r.result.log.push(`query-blockstats failed, load taken as 0: ${(err as Error).message}`);
          }
        }
        if (r.probe !== undefined) {
          try {
            const d = await r.probe();
            dirtyRate = d.at > d.startedAt ? d.dirtyBytes / ((d.at - d.startedAt) / 1000) : 0;
          } catch (err) {
            r.result.log.push(`the dirty-bytes probe failed, taken as 0: ${(err as Error).message}`);
          }
        }
        r.result.load = { writeBytesPerSec: Math.round(rate), dirtyBytesPerSec: Math.round(dirtyRate), bytesToRead };
      },
      pointInTime: async (fire) => {
        await moment.arrive(vm, p.signal);
        r.sentAt = performance.now() - t0;
        await fire();
        r.result.transactionAt = now();
        event(vm, 'transaction', undefined, 'transaction done');
      },
      copy: (run) =>
        new Promise<void>((resolve, reject) => {
          r.copy = { run, resolve, reject };
          if (queue !== undefined) {
            // Joined after the queue started (cannot happen: the queue waits for every live VM).
            queue.push(r);
            pump();
          } else maybeStartQueue();
        }),
      beforeRelease: async ({ ok, scratchFiles, scratchBytes }) => {
        // Called as the copy has read everything (ok), inside the copy's slot. The slot is free
        // now, the release goes on beside the next copies; only the head that runs alone keeps
        // its reader until its release is done, so no copy beside it can end before it.
        if (ok) copyEnded(r);
        if (!r.alone || release === 'end') r.freeSlot?.();
        if (release === 'end') await copiesDone.arrive(vm, p.signal).catch(() => {});
        // What the held point cost: measured at the release, after any hold; over QMP, since a
        // VM on a host has its scratch files there (issue 13), else from the files here.
        r.result.scratchBytes = await scratchBytes().catch(() => allocatedBytes(scratchFiles));
        if (r.scratchAtStart !== undefined) r.result.scratchGrowthBytes = Math.max(0, r.result.scratchBytes - r.scratchAtStart);
      },
      released: ({ error }) => {
        r.result.releasedAt = now();
        if (r.result.transactionAt !== undefined) r.result.lifetimeMs = Math.round((r.result.releasedAt - r.result.transactionAt) * 10) / 10;
        event(
          vm,
          'released',
          error,
          error === undefined
            ? `fleecing released${r.result.lifetimeMs !== undefined ? ` (point held ${r.result.lifetimeMs.toFixed(0)} ms, scratch ${r.result.scratchBytes ?? 0} bytes)` : ''}`
            : `fleecing release failed: ${error}`,
        );
      },
    };
  };

  let grandTotal = 0;
  const vmProgress = (r: VmRun): BackupProgress => ({
    signal: p.signal,
    phase: () => {},
    total: (n) => {
      grandTotal += n - r.total;
      r.total = n;
      p.total(grandTotal, 'bytes');
    },
    advance: (n) => p.advance(n),
    log: (line) => r.result.log.push(line),
  });

  await Promise.all(
    [...runs.values()].map(async (r) => {
      const vm = r.member.name;
      try {
        const rec = await engine.backup(vm, { ...(opts.workflow !== undefined ? { workflow: opts.workflow } : {}), ...(opts.full ? { full: true } : {}) }, vmProgress(r), phasesFor(r));
        Object.assign(r.result, { ok: true, point: rec.point, kind: rec.kind, bytesRead: rec.bytesRead });
        event(vm, 'point', rec.point, `point ${rec.point} (${rec.kind}, ${rec.bytesRead} bytes read)`);
      } catch (err) {
        const code: ErrorCode | string = isVmvaultError(err) ? err.code : 'INTERNAL';
        r.result.error = { code, message: (err as Error).message };
        event(vm, 'failed', (err as Error).message, `failed: ${(err as Error).message}`);
      } finally {
        leave(vm);
      }
    }),
  );
  await afterMoment;

  const vms = [...runs.values()].map((r) => r.result);
  const succeeded = vms.filter((v) => v.ok).length;
  p.log(`group ${group}: ${succeeded} of ${vms.length} VM(s) made point ${point}`);
  const result: GroupBackupResult = {
    group,
    point,
    order,
    parallel,
    release,
    succeeded,
    failed: vms.length - succeeded,
    skewMs,
    sendSkewMs,
    skewMsByHost,
    copyOrder,
    vms,
    events,
  };
  if (p.signal.aborted) throw vmError('CANCELLED', 'the group backup was cancelled', { result });
  if (succeeded === 0) {
    throw vmError('IO', `group ${group}: no VM made a point (${vms.map((v) => `${v.vm}: ${v.error?.message ?? '?'}`).join('; ')})`, { result });
  }
  return result;
}

function fmtRate(bps: number): string {
  return bps >= 1 << 20 ? `${(bps / (1 << 20)).toFixed(1)} MiB/s` : `${Math.round(bps / 1024)} KiB/s`;
}

async function allocatedBytes(files: string[]): Promise<number> {
  let n = 0;
  for (const f of files) {
    const st = await fs.stat(f).catch(() => null);
    if (st) n += st.blocks * 512;
  }
  return n;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(vmError('CANCELLED', 'the group backup was cancelled'));
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(vmError('CANCELLED', 'the group backup was cancelled'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
