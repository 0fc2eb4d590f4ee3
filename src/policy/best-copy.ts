// Restore from the best available copy, and repair of the primary from the others (issue 14).
//
// The choice, per point: the primary, read through a rescue (store/repair/read-rescue.ts)
// that holds the point's other copies in order: clone copies on other appliances, then
// directory archives, then the DR copy (those verified most recently first within a kind). The
// read is the check: every segment it reads is re-hashed against its name, so a restore that
// met no damage has verified the primary's copy of every byte it restored, and the job log
// says so at the end. Damage met while reading switches only the affected segments to
// the next copy that holds them, without starting over; every switch is logged with its
// reason ("primary segment 3f2a… in container 0000000c failed verification; read from clone
// site-b"). Afterwards the primary's damaged segments are repaired from the bytes the copies
// served (re-hashed before they replace anything), so damage does not stay.
//
// Copies are opened lazily: a restore of a healthy primary never contacts another appliance.
// Where the copies come from is the clone/DR record's business (CopyCatalog: clone's
// `policy/copies.ts` provides it); this file only needs a SegmentSource per copy.

import { isVmvaultError, vmError } from '../errors.js';
import { type Damage, ReadRescue, type SegmentFetcher } from '../namespace/damage.js';
import { runVerify } from '../namespace/maintenance.js';
import type { Namespace } from '../namespace/namespace.js';
import type { Problem, RepairItem, RepairResult } from '../namespace/damage.js';
import type { CopyPlan, CopyPlanner, PointSource } from '../backup/restore.js';
import { fetchAll, type SegmentSource } from './segment-source.js';

/** One recorded copy of a point (clone's `copiesOf`, plus DR copies). */
export interface PointCopy {
  destination: string;
  kind: 'appliance' | 'dir' | 'dr';
  verifiedAt?: string;
}

/** Where a point's other copies are and how to read one (clone's policy/copies.ts). */
export interface CopyCatalog {
  copiesOf(vm: string, point: string): PointCopy[] | Promise<PointCopy[]>;
  openSource(destination: string, vm: string, point: string): Promise<SegmentSource>;
  /**
   * The whole point as it is on `destination`, for a point the primary no longer holds (its
   * snapshot deleted or lost). Optional: without it such a point is not restored from copies.
   */
  openPoint?(destination: string, vm: string, point: string): Promise<PointSource>;
}

/** Bytes of healthy segments held for one synced repair batch at most. */
const REPAIR_BATCH_BYTES = 64 * 1024 * 1024;

const KIND_ORDER: Record<PointCopy['kind'], number> = { appliance: 0, dir: 1, dr: 2 };

/** The order copies are asked in: clone on an appliance, archive, DR; newest verification first. */
export function orderCopies(copies: PointCopy[]): PointCopy[] {
  return [...copies].sort((a, b) => KIND_ORDER[a.kind] - KIND_ORDER[b.kind] || (b.verifiedAt ?? '').localeCompare(a.verifiedAt ?? ''));
}

/** How a copy is named in the job log. */
export function copyName(c: PointCopy): string {
  return c.kind === 'dr' ? `DR copy ${c.destination}` : c.kind === 'dir' ? `archive ${c.destination}` : `clone ${c.destination}`;
}

/** A copy opened on first use; a copy that cannot be opened answers every fetch with that error. */
class LazySource implements SegmentFetcher {
  private opened: Promise<SegmentSource> | undefined;

  constructor(
    readonly name: string,
    private readonly open: () => Promise<SegmentSource>,
  ) {}

  async fetch(fp: Buffer): Promise<Buffer | null> {
    this.opened ??= this.open();
    return (await this.opened).fetch(fp);
  }

  /** One request for many: the source's batch form where it has one (segment-source.ts). */
  async fetchMany(fps: Buffer[]): Promise<Array<Buffer | null>> {
    this.opened ??= this.open();
    return fetchAll(await this.opened, fps);
  }

  async close(): Promise<void> {
    if (!this.opened) return;
    const s = await this.opened.catch(() => undefined);
    await s?.close().catch(() => {});
  }
}

/** The sentence a switch to another copy is logged with. */
export function damageLine(d: Damage): string {
  const seg = `primary segment ${d.fingerprint.slice(0, 16)}…`;
  const where = d.container !== undefined ? ` in container ${d.container.toString(16).padStart(8, '0')}` : '';
  const what = d.code === 'CORRUPT_SEGMENT' ? 'failed verification' : d.code === 'IO' ? 'could not be read (I/O error)' : 'is missing';
  const passed = d.passedOver.length > 0 ? ` (passed over: ${d.passedOver.map((p) => `${p.source} ${p.why}`).join('; ')})` : '';
  return `${seg}${where} ${what}; read from ${d.servedBy}${passed}`;
}

export interface BestCopyOptions {
  /** Repair the primary's damaged segments after a restore met them (default true). */
  repair?: boolean;
  /** Segments repaired per synced batch (default 1024; bounded by REPAIR_BATCH_BYTES too). */
  repairBatch?: number;
  /**
   * Also walk the point's tree beside the read and look every reference up in the index, and
   * log whether all are present (default false: the read itself re-hashes every segment it
   * restores; the walk cost 10-20% of a 2 GiB restore when it ran first).
   */
  precheck?: boolean;
}

export interface RepairSummary {
  repaired: number;
  /** Segments found healthy already (repaired meanwhile). */
  healthy: number;
  /** Segments no copy could give healthy bytes for, with the reason. */
  failed: Array<{ fingerprint: string; why: string }>;
}

export class BestCopy {
  constructor(
    private readonly ns: Namespace,
    private readonly copies: CopyCatalog,
    private readonly opts: BestCopyOptions = {},
  ) {}

  /** For BackupService.setCopyPlanner. */
  readonly planner: CopyPlanner = (vm, share, point, log) => this.plan(vm, share, point, log);

  /** The fetchers of a point's copies, in the order they are asked. */
  async sources(vm: string, point: string): Promise<LazySource[]> {
    const list = orderCopies(await this.copies.copiesOf(vm, point));
    return list.map((c) => new LazySource(copyName(c), () => this.copies.openSource(c.destination, vm, point)));
  }

  async plan(vm: string, share: string, point: string, log: (line: string) => void): Promise<CopyPlan> {
    if (!(await this.primaryHolds(share, point))) return this.planFromCopy(vm, point, log);
    const sources = await this.sources(vm, point);
    const names = sources.map((s) => s.name);
    if (sources.length === 0) log(`restoring ${vm} ${point} from the primary; no other copy of this point is recorded`);
    else log(`restoring ${vm} ${point} from the primary; a damaged segment met on the way is read from ${names.join(', then ')}`);
    // No check before reading: the read needs nothing from one (damage met is rescued either
    // way) and re-hashes every segment, which a quick check of references does not. The
    // optional reference walk runs beside the read; finish() waits for it.
    const check = this.opts.precheck ? this.checkReferences(share, point, log) : Promise.resolve();
    const rescue = new ReadRescue(sources, { onDamage: (d) => log(damageLine(d)) });
    return {
      rescue,
      finish: async (restored) => {
        try {
          await check;
          if (rescue.damage.length === 0) {
            if (restored) log(`restored ${vm} ${point} from the primary alone: every segment read verified against its fingerprint`);
            return;
          }
          const by = new Map<string, number>();
          for (const d of rescue.damage) by.set(d.servedBy, (by.get(d.servedBy) ?? 0) + 1);
          log(`${restored ? 'restored' : 'read'} with ${rescue.damage.length} segment(s) from other copies (${[...by].map(([n, k]) => `${k} from ${n}`).join(', ')}); the rest from the primary`);
          if (this.opts.repair ?? true) {
            const r = await this.repair(rescue, log);
            log(`repair of the primary: ${r.repaired} segment(s) repaired, ${r.healthy} already healthy, ${r.failed.length} not repaired`);
          }
        } finally {
          await Promise.all(sources.map((s) => s.close()));
        }
      },
    };
  }

  /** Logs whether every reference of the point is present in the primary; never throws. */
  private async checkReferences(share: string, point: string, log: (line: string) => void): Promise<void> {
    try {
      const check = await runVerify(this.ns, { share, snapshot: point, full: false });
      const bad = check.problems.filter((p) => p.fingerprint !== undefined);
      log(
        bad.length === 0
          ? `check of ${point} on the primary: its references are all present`
          : `check of ${point} on the primary: ${bad.length} segment(s) of it are missing from the primary (first: ${bad[0].message}); those are read from the other copies`,
      );
    } catch (err) {
      log(`check of ${point} on the primary could not run: ${(err as Error).message}`);
    }
  }

  private async primaryHolds(share: string, point: string): Promise<boolean> {
    try {
      await this.ns.snapshots.get(share, point);
      return true;
    } catch (err) {
      if (isVmvaultError(err, 'NOT_FOUND')) return false;
      throw err;
    }
  }

  /**
   * A point the primary no longer holds (its snapshot deleted before its lock, or lost): read
   * whole from the first recorded copy that opens, in the usual order; the log says which and
   * why the others were passed over. Nothing is repaired (there is no primary point to repair).
   */
  private async planFromCopy(vm: string, point: string, log: (line: string) => void): Promise<CopyPlan> {
    const list = orderCopies(await this.copies.copiesOf(vm, point));
    const gone = `the primary no longer holds ${vm} point ${point}`;
    if (list.length === 0) throw vmError('NOT_FOUND', `${gone}, and no clone or archive copy of it is recorded`, { vm, point });
    if (!this.copies.openPoint) throw vmError('NOT_FOUND', `${gone}; its copies (${list.map(copyName).join(', ')}) can only mend damage, not serve a whole point`, { vm, point });
    const passed: string[] = [];
    for (const c of list) {
      let source: PointSource;
      try {
        source = await this.copies.openPoint(c.destination, vm, point);
      } catch (err) {
        passed.push(`${copyName(c)}: ${(err as Error).message}`);
        continue;
      }
      log(`${gone}; restoring it from ${copyName(c)}${passed.length > 0 ? ` (passed over: ${passed.join('; ')})` : ''}`);
      return {
        rescue: new ReadRescue([]),
        source,
        finish: async (restored) => {
          try {
            if (restored) log(`restored ${vm} ${point} from ${copyName(c)}`);
          } finally {
            await source.close().catch(() => {});
          }
        },
      };
    }
    throw vmError('NOT_FOUND', `${gone}, and none of its copies could be opened: ${passed.join('; ')}`, { vm, point });
  }

  /**
   * Repairs the primary's segments a rescue served, from the bytes it kept (the others are
   * fetched again, in batches), in a few synced batches of the store (repairSegments), not one
   * each.
   */
  async repair(rescue: ReadRescue, log: (line: string) => void): Promise<RepairSummary> {
    const out: RepairSummary = { repaired: 0, healthy: 0, failed: [] };
    const list = rescue.damage;
    const batch = Math.max(1, this.opts.repairBatch ?? 1024);
    for (let from = 0; from < list.length; ) {
      // A batch: up to `batch` segments and REPAIR_BATCH_BYTES of their bytes.
      const part: Array<{ d: Damage; item: RepairItem; from: string }> = [];
      const refetch: Damage[] = [];
      let bytes = 0;
      for (; from < list.length && part.length + refetch.length < batch && bytes < REPAIR_BATCH_BYTES; from++) {
        const d = list[from];
        const fp = Buffer.from(d.fingerprint, 'hex');
        const kept = rescue.known(fp);
        if (kept) {
          part.push({ d, item: { fp, plain: kept, kind: d.kind }, from: d.servedBy });
          bytes += kept.length;
        } else refetch.push(d);
      }
      if (refetch.length > 0) {
        const again = await rescue.refetchMany(refetch.map((d) => Buffer.from(d.fingerprint, 'hex')));
        refetch.forEach((d, k) => {
          const g = again[k];
          if (g) part.push({ d, item: { fp: Buffer.from(d.fingerprint, 'hex'), plain: g.bytes, kind: d.kind }, from: g.source });
          else out.failed.push({ fingerprint: d.fingerprint, why: 'no copy gave healthy bytes a second time' });
        });
      }
      let results: Array<RepairResult | Error>;
      try {
        results = await this.ns.store.repairSegments(part.map((p) => p.item));
      } catch (err) {
        for (const p of part) out.failed.push({ fingerprint: p.d.fingerprint, why: (err as Error).message });
        log(`could not repair ${part.length} primary segment(s): ${(err as Error).message}`);
        continue;
      }
      const cn = (c: number | undefined) => (c === undefined ? 'none' : c.toString(16).padStart(8, '0'));
      results.forEach((r, k) => {
        const { d, from: source } = part[k];
        if (r instanceof Error) {
          out.failed.push({ fingerprint: d.fingerprint, why: r.message });
          log(`could not repair primary segment ${d.fingerprint.slice(0, 16)}…: ${r.message}`);
        } else if (r.repaired) {
          out.repaired++;
          log(`repaired primary segment ${d.fingerprint.slice(0, 16)}… from ${source} (container ${cn(r.from?.container)} -> ${cn(r.to?.container)})`);
        } else out.healthy++;
      });
    }
    return out;
  }

  /**
   * `verify --repair`: the damaged segments verify found (problems with a fingerprint and the
   * root they were found under) are repaired from the copies of the points that reach them.
   * `pointOf` maps a snapshot (share, name) to its VM and point, if it is one.
   */
  async repairProblems(problems: ReadonlyArray<Pick<Problem, 'fingerprint' | 'root'> & { kind: string }>, pointOf: (share: string, snapshot: string) => { vm: string; point: string } | undefined, log: (line: string) => void): Promise<RepairSummary> {
    const out: RepairSummary = { repaired: 0, healthy: 0, failed: [] };
    const done = new Set<string>();
    const byPoint = new Map<string, { vm: string; point: string; fps: Map<string, 'data' | 'node'> }>();
    const unplaced = new Set<string>();
    for (const p of problems) {
      if (!p.fingerprint || p.kind === 'index-mismatch' || p.kind === 'corrupt-container') continue;
      const m = p.root ? /^snapshot ([^/]+)\/(.+?), file /.exec(p.root) : null;
      const at = m ? pointOf(m[1], m[2]) : undefined;
      if (!at) {
        unplaced.add(p.fingerprint);
        continue;
      }
      const key = `${at.vm}\u0000${at.point}`;
      let e = byPoint.get(key);
      if (!e) byPoint.set(key, (e = { ...at, fps: new Map() }));
      e.fps.set(p.fingerprint, 'data');
    }
    for (const { vm, point, fps } of byPoint.values()) {
      const sources = await this.sources(vm, point);
      try {
        const rescue = new ReadRescue(sources);
        const want = [...fps].filter(([hex]) => !done.has(hex));
        const got = await rescue.refetchMany(want.map(([hex]) => Buffer.from(hex, 'hex')));
        // Perhaps another point's copies have those not found here.
        const part = want.flatMap(([hex, kind], k) => (got[k] ? [{ hex, from: got[k].source, item: { fp: Buffer.from(hex, 'hex'), plain: got[k].bytes, kind } }] : []));
        for (let from = 0; from < part.length; from += this.opts.repairBatch ?? 1024) {
          const slice = part.slice(from, from + (this.opts.repairBatch ?? 1024));
          let results: Array<RepairResult | Error>;
          try {
            // The kind matters only for a segment the index lost entirely: a node's own read tells.
            results = await this.ns.store.repairSegments(slice.map((p) => p.item));
          } catch (err) {
            if (!isVmvaultError(err)) throw err;
            log(`could not repair ${slice.length} segment(s): ${err.message}`);
            continue;
          }
          results.forEach((r, k) => {
            const { hex, from: source } = slice[k];
            if (r instanceof Error) {
              if (!isVmvaultError(r)) throw r;
              log(`could not repair segment ${hex.slice(0, 16)}…: ${r.message}`);
              return;
            }
            done.add(hex);
            if (r.repaired) {
              out.repaired++;
              log(`repaired segment ${hex.slice(0, 16)}… of ${vm} ${point} from ${source}`);
            } else out.healthy++;
          });
        }
      } finally {
        await Promise.all(sources.map((s) => s.close()));
      }
    }
    for (const { fps } of byPoint.values()) for (const hex of fps.keys()) if (!done.has(hex)) out.failed.push({ fingerprint: hex, why: 'no copy of a point reaching it holds it' });
    for (const hex of unplaced) if (!done.has(hex)) out.failed.push({ fingerprint: hex, why: 'not reached from any restore point' });
    return out;
  }
}
