// One store writer kept across the commits of a file written as a stream (dd, cp or a VM image
// copied into the mount): each commit only appends bytes at the end of the version the last one
// built, and takes its version from the writer's checkpoint() instead of an edit.
//
// Why: such a file commits every few MiB (Namespace, streamCommitBytes), and each commit was an
// edit of the file's tree by a fresh store writer: the segment at the previous commit's end read
// back, decoded and cut again, a new cutting and hashing pipeline started and drained before
// the version was built, the old tree walked to reuse its subtrees. The checkpoint gives the same
// version (the tree is canonical: tree/builder.ts), the cuts go on where they stood.
//
// Anything but an append at the end of the writer's last version (a write elsewhere, a
// truncation, a reverted round, another writer's version adopted) drops the writer; the commit
// then edits as before, and a later stream of appends starts a new writer from that version.
// So does a stream that pauses with its file still open (Namespace's tick, `streamIdleMs`): a
// kept writer holds an 8 MiB slab and holds every container from its last checkpoint's on from
// garbage collection (store/gc/write-holds.ts), and an NFS server or a hypervisor may keep an
// image open for days after writing it.

import type { FileVersion, SegmentStore, TreeWriter, WriteResult } from '../store/store.js';

/** An append of at least this much starts a writer; one continuing a live writer takes it whatever its size. */
export const APPEND_STREAM_MIN_BYTES = 1024 * 1024;

export class AppendStream {
  private w: TreeWriter | undefined;
  /** The version the writer's content is now (its last checkpoint, or the one it started from). */
  private at: FileVersion | undefined;
  /** When the writer last committed (Date.now()). */
  private usedAt = 0;

  constructor(private readonly store: SegmentStore) {}

  /** Whether a writer is kept (for tests and statistics). */
  get live(): boolean {
    return this.w !== undefined;
  }

  /** Whether a writer is kept and has not committed for `ms`. */
  idleFor(ms: number, now = Date.now()): boolean {
    return this.w !== undefined && now - this.usedAt >= ms;
  }

  /**
   * The version of `base` with `extents` (sorted, not overlapping: ExtentMap.list) written and
   * the size `size`, when they append exactly [base.size, size) to it; undefined, with nothing
   * done, otherwise. On a failure the writer is dropped and the error thrown: the caller keeps
   * the bytes and a later commit starts afresh.
   */
  async commit(base: FileVersion, extents: ReadonlyArray<{ offset: number; data: Uint8Array }>, size: number): Promise<WriteResult | undefined> {
    if (!appends(base, extents, size) || (this.at !== base && size - base.size < APPEND_STREAM_MIN_BYTES)) {
      this.drop();
      return undefined;
    }
    try {
      if (this.at !== base || !this.w) {
        this.drop();
        this.w = await this.store.appender(base);
        this.at = base;
      }
      for (const e of extents) if (e.data.length > 0) await this.w.write(e.data);
      const r = await this.w.checkpoint();
      this.at = r.version;
      this.usedAt = Date.now();
      return r;
    } catch (err) {
      this.drop();
      throw err;
    }
  }

  /**
   * Lets the writer go (its work in flight finishes on its own; nothing it stored is referenced
   * by it any more). Called only between commits or after one failed: no call of it is running.
   */
  drop(): void {
    const w = this.w;
    this.w = undefined;
    this.at = undefined;
    if (w) void w.discard().catch(() => {});
  }
}

function appends(base: FileVersion, extents: ReadonlyArray<{ offset: number; data: Uint8Array }>, size: number): boolean {
  if (extents.length === 0) return false;
  let pos = base.size;
  for (const e of extents) {
    if (e.offset !== pos) return false;
    pos += e.data.length;
  }
  return pos === size && size > base.size;
}
