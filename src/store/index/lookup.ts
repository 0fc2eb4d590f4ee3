// Where a segment is: records appended but not yet indexed (pending), the locality cache, and
// the LevelDB index, loading a whole container's table on an index hit (SISL locality).

import { readTableBytes } from '../container/table.js';
import type { ContainerFiles } from '../container/files.js';
import type { RecordMeta } from '../container/format.js';
import type { Pending } from '../container/placement.js';
import type { ContainerWriter } from '../container/writer.js';
import { FpMap } from './fp-map.js';
import { type LocalityCache, toLocation } from './locality-cache.js';
import type { Location, SegmentIndex } from './segment-index.js';

/** lookupMany's probing rounds, and index reads per round. */
const PROBE_ROUNDS = 3;
const PROBE_MAX = 16;

export class Lookup {
  /** Records appended but not yet in the LevelDB index, findable here until they are. */
  readonly pending = new FpMap<Pending>();
  /** Container tables being read into the locality cache. */
  private readonly loading = new Map<number, Promise<void>>();

  constructor(
    private readonly index: SegmentIndex,
    private readonly cache: LocalityCache,
    private readonly files: ContainerFiles,
    /** Unsealed or sealing containers by id. */
    private readonly writers: Map<number, ContainerWriter>,
  ) {}

  /** Where a segment is, from memory only (pending records, locality cache). */
  lookupMem(fp: Uint8Array, off = 0): Location | undefined {
    const p = this.pending.get(fp, off);
    if (p) return toLocation(p.cid, p.meta);
    return this.cache.get(fp, off);
  }

  /** The container of a segment known in memory, or -1: lookupMem without making a Location. */
  memCid(fp: Uint8Array, off = 0): number {
    const p = this.pending.get(fp, off);
    if (p) return p.cid;
    return this.cache.cidOf(fp, off);
  }

  /** Bytes of a record still only in memory (not yet written out), or undefined. */
  memPayload(loc: Location): Buffer | undefined {
    const w = this.writers.get(loc.cid);
    if (!w || w.failed) return undefined;
    return w.payload({ offset: loc.offset, storedLen: loc.storedLen } as RecordMeta);
  }

  /**
   * Locates many segments: memory first, then the index, loading the record table of every
   * container hit (locality) so neighbours resolve from memory. A stream's segments sit
   * together in few containers, so the index is first asked only for the start of each run
   * of misses, a few rounds, each round's tables answering most of the rest; whatever is
   * still missing then goes to the index in one batch.
   */
  async lookupMany(fps: Uint8Array[]): Promise<Array<Location | undefined>> {
    const out: Array<Location | undefined> = new Array(fps.length);
    let miss: number[] = [];
    for (let i = 0; i < fps.length; i++) {
      out[i] = this.lookupMem(fps[i]);
      if (!out[i]) miss.push(i);
    }
    for (let round = 0; round < PROBE_ROUNDS && miss.length > PROBE_MAX; round++) {
      const starts: number[] = [];
      for (let k = 0; k < miss.length && starts.length < PROBE_MAX; k++) {
        if (k === 0 || miss[k - 1] !== miss[k] - 1) starts.push(miss[k]);
      }
      await this.lookupIndex(fps, starts, out);
      miss = miss.filter((i) => !out[i] && !(out[i] = this.lookupMem(fps[i])));
    }
    if (miss.length > 0) await this.lookupIndex(fps, miss, out);
    return out;
  }

  private async lookupIndex(fps: Uint8Array[], which: number[], out: Array<Location | undefined>): Promise<void> {
    const found = await this.index.getMany(which.map((i) => fps[i]));
    const load = new Set<number>();
    for (let j = 0; j < which.length; j++) {
      const loc = found[j];
      // A record indexed while we waited is in memory now; prefer that answer.
      out[which[j]] = this.lookupMem(fps[which[j]]) ?? loc;
      if (loc && !this.cache.has(loc.cid) && !this.writers.has(loc.cid)) load.add(loc.cid);
    }
    await Promise.all([...load].map((cid) => this.loadTable(cid)));
  }

  private loadTable(cid: number): Promise<void> {
    let p = this.loading.get(cid);
    if (!p) {
      p = readTableBytes(this.files, cid).then(
        (table) => this.cache.insert(cid, table),
        () => {
          // The index answer stands; a damaged table only costs locality (verify reports it).
        },
      );
      this.loading.set(cid, p);
      void p.then(() => this.loading.delete(cid));
    }
    return p;
  }
}
