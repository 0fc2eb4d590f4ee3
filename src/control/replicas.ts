// The receiving side of clone copies (issue 14): another appliance, holding a replication token
// (agent-tokens.ts, scope "replication"), sends a restore point's files through the transfer
// protocol into a share of ours, then asks us to snapshot it under the point's name with the
// point's retention lock, and to check what it wrote. A replication token may write only into
// shares it made here as clone targets: the record of which token owns which share is
// `<data>/replicas.json` (below). It cannot touch any other share, not even to read it.
//
// File format, version 1: {"version": 1, "shares": [{"share", "owner" (token name),
// "created" (ISO 8601)}]}, written atomically (files/atomic-file.ts). A version above 1 is
// UNSUPPORTED_FORMAT. Without the file (a new appliance) nobody owns a share.
//
// Segments by fingerprint (GET /replicas/segments/{fp}, POST /replicas/segments: best-copy
// restore and repair on the sending appliance) are served to a replication token only when a
// snapshot of a share it owns names them (a node or data segment of a point it sent): a
// fingerprint outside that set is answered as absent, as one the store lacks, so a token learns
// nothing of other shares' data, not even whether a segment exists. The set is built per share
// by walking its snapshots' trees (nodes only; data is not read) and kept until the share's
// snapshot list changes. The admin token is served any segment.

import fs from 'node:fs/promises';
import path from 'node:path';
import { fromSystemError, isVmvaultError, vmError } from '../errors.js';
import { writeFileAtomic } from '../files/atomic-file.js';
import { runVerify, type VerifyRun } from '../namespace/maintenance.js';
import type { Namespace } from '../namespace/namespace.js';
import { validateName } from '../namespace/names.js';
import { forEachSnapshotSegment, shareFiles, snapshotFiles } from '../namespace/snapshot-files.js';
import { FingerprintSet } from './fingerprint-set.js';

export const REPLICAS_FILE = 'replicas.json';
const FORMAT_VERSION = 1;

interface Owned {
  share: string;
  owner: string;
  created: string;
}

export interface ReplicaFile {
  path: string;
  size: number;
  /** The file's segment-tree root fingerprint (hex) and height: equal roots, equal bytes. */
  root: string;
  height: number;
}

export interface ReplicaSnapshot {
  share: string;
  name: string;
  created: string;
  lockedUntil?: string;
  files: ReplicaFile[];
  verify?: { problems: VerifyRun['problems']; segmentsChecked: number; bytesRead: number };
}

/** Who is asking: the admin token (owner undefined: any share) or a replication token by name. */
export type ReplicaCaller = { admin: true } | { admin: false; name: string };

/** The segments a share's snapshots name, for the snapshot list `key` (binary: fingerprint-set.ts). */
interface Granted {
  key: string;
  fps: Promise<FingerprintSet>;
}

export class ReplicaService {
  private owned = new Map<string, Owned>();
  private tail: Promise<unknown> = Promise.resolve();
  private readonly granted = new Map<string, Granted>();

  private constructor(
    private readonly ns: Namespace,
    private readonly file: string | undefined,
    private readonly now: () => number,
  ) {}

  static async open(ns: Namespace, dataDir: string | undefined, opts: { now?: () => number } = {}): Promise<ReplicaService> {
    const r = new ReplicaService(ns, dataDir === undefined ? undefined : path.join(dataDir, REPLICAS_FILE), opts.now ?? Date.now);
    await r.read();
    return r;
  }

  private async read(): Promise<void> {
    if (!this.file) return;
    let text: string;
    try {
      text = await fs.readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw fromSystemError(err, `reading ${this.file}`);
    }
    let doc: { version?: unknown; shares?: unknown };
    try {
      doc = JSON.parse(text) as typeof doc;
    } catch {
      throw vmError('CORRUPT_RECORD', `${this.file} is not valid JSON`);
    }
    if (typeof doc.version !== 'number' || doc.version > FORMAT_VERSION) throw vmError('UNSUPPORTED_FORMAT', `${this.file} has format version ${String(doc.version)}; this appliance reads ${FORMAT_VERSION}`);
    if (!Array.isArray(doc.shares)) throw vmError('CORRUPT_RECORD', `${this.file}: "shares" is not a list`);
    for (const s of doc.shares as Owned[]) {
      if (typeof s?.share !== 'string' || typeof s.owner !== 'string') throw vmError('CORRUPT_RECORD', `${this.file}: a share entry is malformed`);
      this.owned.set(s.share, { share: s.share, owner: s.owner, created: String(s.created ?? '') });
    }
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const r = this.tail.then(fn, fn);
    this.tail = r.catch(() => {});
    return r;
  }

  /** The owner of a share, if a replication token made it. */
  ownerOf(share: string): string | undefined {
    return this.owned.get(share)?.owner;
  }

  /** Throws FORBIDDEN unless the caller may write and snapshot `share`. */
  authorize(caller: ReplicaCaller, share: string): void {
    if (caller.admin) return;
    const o = this.owned.get(share);
    if (o?.owner !== caller.name) {
      throw vmError('FORBIDDEN', `replication token ${caller.name} may not write share ${share}: it writes only the clone targets it made (POST /replicas/shares)`);
    }
  }

  /** Makes `share` as a clone target of the caller, or confirms it owns it already. */
  claim(caller: ReplicaCaller, share: string): Promise<{ share: string; created: boolean }> {
    validateName('share', share);
    return this.serial(async () => {
      const o = this.owned.get(share);
      if (o !== undefined) {
        this.authorize(caller, share);
        return { share, created: false };
      }
      const exists = (await this.ns.shares.list()).some((s) => s.name === share);
      if (exists) {
        if (!caller.admin) throw vmError('FORBIDDEN', `share ${share} exists here and is not a clone target of replication token ${caller.name}`);
        return { share, created: false };
      }
      await this.ns.shares.create(share);
      if (!caller.admin) {
        const next = new Map(this.owned);
        next.set(share, { share, owner: caller.name, created: new Date(this.now()).toISOString() });
        await this.write(next);
      }
      return { share, created: true };
    });
  }

  private async write(next: Map<string, Owned>): Promise<void> {
    if (this.file) {
      const doc = { version: FORMAT_VERSION, shares: [...next.values()].sort((a, b) => a.share.localeCompare(b.share)) };
      await writeFileAtomic(this.file, JSON.stringify(doc, null, 1) + '\n', `writing ${this.file}`);
    }
    this.owned = next;
  }

  /**
   * Snapshots the share as `name` (the point's name) and locks it until `lockedUntil` (the
   * point's lock on the sender; this appliance enforces it as its own). Idempotent: a snapshot
   * of that name that exists is kept (a re-run after a failure), only its lock is extended.
   * `files`: the point's file paths; a file of the share not among them (one an earlier point
   * had: a disk since removed from the VM) is removed before the snapshot, so the snapshot
   * holds the point's files and no others.
   */
  async snapshot(caller: ReplicaCaller, share: string, name: string, lockedUntil?: string, files?: string[]): Promise<ReplicaSnapshot> {
    validateName('share', share);
    validateName('snapshot', name);
    this.authorize(caller, share);
    let until: number | undefined;
    if (lockedUntil !== undefined) {
      until = Date.parse(lockedUntil);
      if (!Number.isFinite(until)) throw vmError('INVALID_ARGUMENT', `lockedUntil ${JSON.stringify(lockedUntil.slice(0, 80))} is not an ISO 8601 time`);
    }
    if (files !== undefined && (!Array.isArray(files) || files.some((f) => typeof f !== 'string'))) throw vmError('INVALID_ARGUMENT', 'files must be a list of paths');
    const names = await this.ns.installer.snapshotNames(share);
    if (!names.includes(name)) {
      if (files !== undefined) {
        const keep = new Set(files);
        for (const f of await shareFiles(this.ns, share)) if (!keep.has(f.path)) await this.ns.fs.unlink(`/${share}/${f.path}`);
      }
      await this.ns.snapshots.create(share, name);
    }
    if (until !== undefined && until > this.now()) await this.ns.snapshots.lock(share, name, until);
    return this.describe(caller, share, name);
  }

  /**
   * A snapshot's files and roots; with `verify`, its trees checked here: 'quick', every segment
   * they name is in the store; 'full', every segment read and re-hashed.
   */
  async describe(caller: ReplicaCaller, share: string, name: string, verify?: 'quick' | 'full'): Promise<ReplicaSnapshot> {
    validateName('share', share);
    validateName('snapshot', name);
    this.authorize(caller, share);
    const info = await this.ns.snapshots.get(share, name);
    const files = (await snapshotFiles(this.ns, share, name)).map((f) => ({ path: f.path, size: f.version.size, root: f.version.root.toString('hex'), height: f.version.height }));
    const out: ReplicaSnapshot = { share, name, created: info.created, ...(info.lockedUntil ? { lockedUntil: info.lockedUntil } : {}), files };
    if (verify !== undefined) {
      const run = await runVerify(this.ns, { share, snapshot: name, full: verify === 'full' });
      out.verify = { problems: run.problems, segmentsChecked: run.segmentsChecked, bytesRead: run.bytesRead };
    }
    return out;
  }

  async list(caller: ReplicaCaller, share: string): Promise<Array<{ name: string; created: string; lockedUntil?: string }>> {
    validateName('share', share);
    this.authorize(caller, share);
    return (await this.ns.snapshots.list(share)).map((s) => ({ name: s.name, created: s.created, ...(s.lockedUntil ? { lockedUntil: s.lockedUntil } : {}) }));
  }

  /**
   * The fingerprints of every segment the snapshots of `share` name. Rebuilt when the share's
   * snapshot list changed (a point added or deleted); concurrent callers share a build. Held as
   * 32-byte keys in one table, not hex strings: a third of the memory for a big share.
   */
  private async segmentsOfShare(share: string): Promise<FingerprintSet> {
    const snaps = await this.ns.snapshots.list(share);
    const key = snaps.map((x) => `${x.name}\u0000${x.created}`).join('\u0001');
    let g = this.granted.get(share);
    if (g?.key !== key) {
      const fps = (async () => {
        const out = new FingerprintSet();
        for (const x of snaps) {
          await forEachSnapshotSegment(this.ns, share, x.name, (fp) => out.add(fp));
        }
        return out;
      })();
      g = { key, fps };
      this.granted.set(share, g);
      // A failed build (a damaged node) is not kept: the next request tries again.
      fps.catch(() => {
        if (this.granted.get(share) === g) this.granted.delete(share);
      });
    }
    return g.fps;
  }

  /**
   * Which of `hexes` the caller may be served: all for the admin token; for a replication
   * token those a snapshot of one of its shares names. FORBIDDEN when it owns no share here.
   */
  private async grantedTo(caller: ReplicaCaller, hexes: string[]): Promise<boolean[]> {
    if (caller.admin) return hexes.map(() => true);
    const shares = [...this.owned.values()].filter((o) => o.owner === caller.name).map((o) => o.share);
    if (shares.length === 0) throw vmError('FORBIDDEN', `replication token ${caller.name} owns no clone target here`);
    const sets: FingerprintSet[] = [];
    for (const share of shares) {
      try {
        sets.push(await this.segmentsOfShare(share));
      } catch (err) {
        // A share of the token's removed by the admin grants nothing.
        if (!isVmvaultError(err, 'NOT_FOUND')) throw err;
      }
    }
    return hexes.map((h) => {
      const fp = Buffer.from(h, 'hex');
      return sets.some((x) => x.has(fp));
    });
  }

  /**
   * A segment's plain bytes by fingerprint (re-hashed on read), or null when this store lacks
   * it or the caller may not have it (a replication token: not named by its points).
   */
  async segment(caller: ReplicaCaller, fpHex: string): Promise<Buffer | null> {
    if (!/^[0-9a-f]{64}$/.test(fpHex)) throw vmError('INVALID_ARGUMENT', `${JSON.stringify(fpHex.slice(0, 80))} is not a fingerprint (64 hex digits)`);
    const [may] = await this.grantedTo(caller, [fpHex]);
    if (!may) return null;
    const [got] = await this.ns.store.readSegments([Buffer.from(fpHex, 'hex')]);
    return got;
  }

  /**
   * Several segments by fingerprint (POST /replicas/segments): the plain bytes of each, in
   * order, null where this store lacks it, holds it damaged (the caller asks its next copy), or
   * the caller may not have it (as segment()).
   * Answers a prefix of the list when the bytes would pass `maxBytes` (at least one answer).
   */
  async segments(caller: ReplicaCaller, hexes: string[], maxBytes: number): Promise<Array<Buffer | null>> {
    for (const h of hexes) if (typeof h !== 'string' || !/^[0-9a-f]{64}$/.test(h)) throw vmError('INVALID_ARGUMENT', `${JSON.stringify(String(h).slice(0, 80))} is not a fingerprint (64 hex digits)`);
    const may = await this.grantedTo(caller, hexes);
    const asked = hexes.flatMap((h, i) => (may[i] ? [i] : []));
    const fps = asked.map((i) => Buffer.from(hexes[i], 'hex'));
    let read: Array<Buffer | null>;
    try {
      read = await this.ns.store.readSegments(fps);
    } catch (err) {
      if (!isVmvaultError(err) || !['CORRUPT_SEGMENT', 'IO', 'MISSING_SEGMENT'].includes(err.code)) throw err;
      // One damaged here fails the batch: read each, a damaged one is not served.
      read = await Promise.all(fps.map((fp) => this.ns.store.readSegments([fp]).then(([b]) => b, () => null)));
    }
    const got: Array<Buffer | null> = hexes.map(() => null);
    asked.forEach((i, k) => (got[i] = read[k]));
    let bytes = 0;
    let n = 0;
    while (n < got.length && (n === 0 || bytes + (got[n]?.length ?? 0) <= maxBytes)) bytes += got[n++]?.length ?? 0;
    return got.slice(0, n);
  }
}
