// Writes in progress, as garbage collection must see them. A write (a file's commit, a stream
// of a whole disk, an agent's send) appends segments to containers before any file names them:
// until its version is reachable from GC's roots, nothing else keeps those segments live, and a
// GC that starts meanwhile seals the open container and may sweep it (tools/PERFORMANCE.md and
// test/gc-writes-in-flight.test.ts: an agent's send lost its first half this way).
//
// So each write holds every container from the one its first append may land in: GC sweeps only
// containers older than the oldest hold (gc.ts). Nothing is walked or copied for it, and a
// container a hold kept is swept by a later run. A hold ends when its version is a root (in an
// open file's versions or an inode) or when the write gives up; a hold never released only
// keeps garbage, and the GC report counts the containers it kept (containersHeld).

export interface WriteHold {
  /** Ends the hold (idempotent). */
  release(): void;
}

export class WriteHolds {
  private readonly held = new Map<number, number>();
  private seq = 0;

  /** `firstCid`: the id of the container the next append lands in (the open one, or the next). */
  constructor(private readonly firstCid: () => number) {}

  take(): WriteHold {
    const id = ++this.seq;
    this.held.set(id, this.firstCid());
    return { release: () => void this.held.delete(id) };
  }

  /** The lowest container id a write in progress may have appended to; Infinity when none runs. */
  horizon(): number {
    let h = Infinity;
    for (const cid of this.held.values()) if (cid < h) h = cid;
    return h;
  }

  get size(): number {
    return this.held.size;
  }
}
