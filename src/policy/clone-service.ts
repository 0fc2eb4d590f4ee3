// Clone copies (issue 14 part B) as the control plane sees them: destinations (add, list, show,
// remove, verify), one copy of a VM's point to a destination (`vmvault clone VM --to DEST`, and
// the policies' scheduled copies), and the record of copies with the roster's `copiesOf` and
// `openSource` for restore from the best copy.

import { vmError } from '../errors.js';
import type { Namespace } from '../namespace/namespace.js';
import { archivePoint, type ArchiveProblem, type ArchiveReport, verifyArchive } from './archive.js';
import { cloneToAppliance, connectAppliance, type CloneReport } from './clone-appliance.js';
import { type CopyRecord, CopyRecords, openPoint, openSource } from './copies.js';
import type { PointSource } from '../backup/restore.js';
import { DestinationRegistry, type DestinationView, type NewDestination } from './destinations.js';
import type { SegmentSource } from './segment-source.js';

export interface CloneServiceOptions {
  dataDir: string;
  ns: Namespace;
  vms: { get(name: string): { name: string; share: string } };
  /** Restore points of a VM, oldest first (BackupService.listBackups). */
  listBackups(vm: string): Promise<Array<{ point: string }>>;
  /** The policies that name a destination (refuses its removal). */
  policiesUsing(destination: string): string[];
  log?: (l: string) => void;
}

export interface CloneProgress {
  signal?: AbortSignal;
  progress?(done: number, total: number): void;
  log?(line: string): void;
}

export type CloneResult = { vm: string; point: string; destination: string; kind: 'appliance' | 'dir' } & (
  | { appliance: CloneReport }
  | { archive: ArchiveReport }
);

export interface DestinationVerify {
  destination: string;
  kind: 'appliance' | 'dir';
  points: number;
  problems: Array<ArchiveProblem | { kind: string; message: string; point?: string }>;
}

export class CloneService {
  private constructor(
    private readonly o: CloneServiceOptions,
    readonly destinations: DestinationRegistry,
    readonly copies: CopyRecords,
  ) {}

  static async open(o: CloneServiceOptions): Promise<CloneService> {
    return new CloneService(o, await DestinationRegistry.open(o.dataDir), await CopyRecords.open(o.dataDir));
  }

  // ---- destinations --------------------------------------------------------------------------

  addDestination(req: NewDestination): Promise<DestinationView> {
    return this.destinations.add(req);
  }

  listDestinations(): DestinationView[] {
    return this.destinations.list();
  }

  showDestination(name: string): DestinationView & { copies: CopyRecord[]; policies: string[] } {
    const d = this.destinations.get(name);
    const view = this.destinations.list().find((x) => x.name === d.name)!;
    return { ...view, copies: this.copies.list().filter((c) => c.destination === name), policies: this.o.policiesUsing(name) };
  }

  removeDestination(name: string): Promise<void> {
    return this.destinations.remove(name, (n) => this.o.policiesUsing(n));
  }

  /** Checks what a destination holds: a directory's archive whole (or one point), an appliance's recorded copies. */
  async verifyDestination(name: string, point?: string): Promise<DestinationVerify> {
    const d = this.destinations.get(name);
    if (d.kind === 'dir') {
      const r = await verifyArchive(d.path, point === undefined ? undefined : { point });
      return { destination: name, kind: 'dir', points: r.points, problems: r.problems };
    }
    const copies = this.copies.list().filter((c) => c.destination === name && (point === undefined || c.point === point));
    if (point !== undefined && copies.length === 0) throw vmError('NOT_FOUND', `destination ${name} holds no recorded copy of point ${point}`);
    const problems: DestinationVerify['problems'] = [];
    const conn = await connectAppliance(d);
    try {
      for (const c of copies) {
        const r = await conn.json<{ verify?: { problems: Array<{ message: string }> } }>('GET', `/api/v1/replicas/shares/${encodeURIComponent(c.share)}/snapshots/${encodeURIComponent(c.point)}?verify=full`);
        for (const p of r.verify?.problems ?? []) problems.push({ kind: 'corrupt-segment', point: `${c.share}/${c.point}`, message: `point ${c.share}/${c.point} on ${name}: ${p.message}` });
      }
    } finally {
      await conn.close();
    }
    return { destination: name, kind: 'appliance', points: copies.length, problems };
  }

  // ---- copies --------------------------------------------------------------------------------

  /** The newest point of a VM, or the one named (which must be one of its points). */
  async pickPoint(vm: string, point?: string): Promise<{ share: string; point: string }> {
    const share = this.o.vms.get(vm).share;
    const points = await this.o.listBackups(vm);
    if (points.length === 0) throw vmError('NOT_FOUND', `VM ${vm} has no restore point to copy yet (vmvault backup ${vm})`, { vm });
    if (point === undefined) return { share, point: points[points.length - 1].point };
    if (!points.some((p) => p.point === point)) throw vmError('NOT_FOUND', `VM ${vm} has no restore point ${point}`, { vm, point });
    return { share, point };
  }

  /** Checks a copy can start (VM, point, destination) before a job is made for it. */
  async check(vm: string, destination: string, point?: string): Promise<void> {
    this.destinations.get(destination);
    await this.pickPoint(vm, point);
  }

  /** Copies one point of a VM to a destination, verifies it there, records it. */
  async clone(vm: string, destination: string, point: string | undefined, ctx: CloneProgress = {}): Promise<CloneResult> {
    const d = this.destinations.get(destination);
    const p = await this.pickPoint(vm, point);
    ctx.log?.(`copying ${vm} point ${p.point} (share ${p.share}) to ${d.kind === 'dir' ? `directory ${d.path}` : `appliance ${d.url}`}`);
    const progress = (done: number, total: number) => ctx.progress?.(done, total);
    if (d.kind === 'appliance') {
      const r = await cloneToAppliance(this.o.ns, d, p.share, p.point, { signal: ctx.signal, onProgress: progress, log: ctx.log ?? this.o.log });
      await this.copies.record({ vm, share: p.share, point: p.point, destination, kind: 'appliance', at: new Date().toISOString(), verifiedAt: r.verifiedAt, bytesSent: r.bytesSent });
      return { vm, point: p.point, destination, kind: 'appliance', appliance: r };
    }
    const r = await archivePoint(this.o.ns, d.path, vm, p.share, p.point, { signal: ctx.signal, onProgress: progress });
    await this.copies.record({ vm, share: p.share, point: p.point, destination, kind: 'dir', at: new Date().toISOString(), verifiedAt: r.verifiedAt, bytesSent: r.bytesWritten });
    ctx.log?.(`archived ${p.share}/${p.point} in ${d.path}: ${r.skipped ? 'already there' : `${r.segmentsWritten} of ${r.segments} segments written`}, verified`);
    return { vm, point: p.point, destination, kind: 'dir', archive: r };
  }

  /** Roster contract: the verified copies of a point. */
  copiesOf(vm: string, point: string): { destination: string; kind: 'appliance' | 'dir'; verifiedAt?: string }[] {
    return this.copies.copiesOf(vm, point);
  }

  /** Roster contract: another copy's segments, by fingerprint. */
  openSource(destination: string, vm: string, point: string): Promise<SegmentSource> {
    return openSource(this.destinations, this.copies, destination, vm, point);
  }

  /** Roster contract: a whole point on a destination, for a point the primary no longer holds. */
  openPoint(destination: string, vm: string, point: string): Promise<PointSource> {
    return openPoint(this.destinations, this.copies, this.o.ns, destination, vm, point);
  }
}
