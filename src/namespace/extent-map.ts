// Dirty extents of an open file: non-overlapping byte ranges written but not yet committed,
// sorted by offset. A later write replaces what it overlaps. Sequential writes append into a
// growing buffer so a stream of 128 KiB FUSE writes becomes a few large extents.
//
// A file's first extent starts at the size of its first write and doubles as writes append
// (up to APPEND_CHUNK); only an extent that follows another one (a stream) starts at
// APPEND_CHUNK. A small file written in one go used to get a whole APPEND_CHUNK: 1 MiB of
// external memory per 4 KiB file, which made V8 run a mark-compact every few dozen files
// (issue 10: ~100 mark-compacts while creating 2,000 files).

const APPEND_CHUNK = 1024 * 1024;

export interface Extent {
  off: number;
  /** buf[0, len) holds the bytes; capacity beyond len is room to append (only if exclusive). */
  buf: Buffer;
  len: number;
  /** buf was allocated here: it may be replaced by a larger copy to append (never a caller's or a view). */
  grows?: boolean;
}

export class ExtentMap {
  private exts: Extent[] = [];
  private total = 0;
  /**
   * Owners' releases of buffers handed over (write's `release`), called when the map is retired
   * and no read holds it: only then is no view of those buffers read any more (an overwrite or
   * a truncate keeps views of what they spare, so nothing is released earlier).
   */
  private releases: Array<() => void> | undefined;
  private holds = 0;
  private retired = false;

  /** Bytes held (not counting spare capacity). */
  get bytes(): number {
    return this.total;
  }

  get empty(): boolean {
    return this.exts.length === 0;
  }

  /** Number of extents (few and large for a sequential stream, many for scattered writes). */
  get count(): number {
    return this.exts.length;
  }

  /** Where the first extent starts (0 when empty). */
  get start(): number {
    return this.exts[0]?.off ?? 0;
  }

  get end(): number {
    const last = this.exts[this.exts.length - 1];
    return last ? last.off + last.len : 0;
  }

  /**
   * Copies `src` in at `off`. With `owned` the caller hands `src` over (it never touches it
   * again): a new extent then holds it as is, without a copy (a backup's NBD reads, each a fresh
   * buffer, were copied here: 1.35 s of main-thread CPU over a bench:backup run's backups).
   * `release` is kept for retire().
   */
  write(off: number, src: Uint8Array, owned = false, release?: () => void): void {
    if (release) {
      if (this.retired) throw new Error('internal: write into a retired extent map');
      (this.releases ??= []).push(release);
    }
    const n = src.length;
    if (n === 0) return;
    const source = Buffer.isBuffer(src) ? src : Buffer.from(src.buffer, src.byteOffset, src.byteLength);
    const last = this.exts[this.exts.length - 1];
    if (last && off === last.off + last.len && this.room(last, n)) {
      source.copy(last.buf, last.len);
      last.len += n;
      this.total += n;
      return;
    }
    const end = off + n;
    let i = this.firstEndingAfter(off);
    // Appending to an extent that is not the last one (a table at the head of the file that
    // grows in small steps, e.g. a VMDK grain table, while data streams in further on): use
    // its spare room when nothing follows within the new bytes.
    const before = this.exts[i - 1];
    if (before && off === before.off + before.len && (i === this.exts.length || this.exts[i].off >= end) && this.room(before, n)) {
      source.copy(before.buf, before.len);
      before.len += n;
      this.total += n;
      return;
    }
    const replaced: Extent[] = [];
    while (i + replaced.length < this.exts.length && this.exts[i + replaced.length].off < end) {
      replaced.push(this.exts[i + replaced.length]);
    }
    const insert: Extent[] = [];
    for (const e of replaced) this.total -= e.len;
    const first = replaced[0];
    if (first && first.off < off) {
      // Exact-size views: a kept piece must never be appended into (it shares memory).
      const head = first.buf.subarray(0, off - first.off);
      insert.push({ off: first.off, buf: head, len: head.length });
    }
    const prev = insert.length === 0 ? this.exts[i - 1] : undefined;
    const sequential = (prev && prev.off + prev.len === off) || (!prev && i === this.exts.length && off === this.end);
    let buf: Buffer;
    if (owned) {
      // Exact size (a view's length is n): never appended into, so never written through.
      buf = source.length === n ? source : source.subarray(0, n);
    } else {
      // After another extent: a stream, given a whole chunk at once. Otherwise the exact size,
      // doubled as writes append (room()).
      buf = Buffer.allocUnsafe(sequential && prev ? Math.max(n, APPEND_CHUNK) : n);
      source.copy(buf, 0);
    }
    insert.push(owned ? { off, buf, len: n } : { off, buf, len: n, grows: sequential });
    const lastRep = replaced[replaced.length - 1];
    if (lastRep && lastRep.off + lastRep.len > end) {
      const tail = lastRep.buf.subarray(end - lastRep.off, lastRep.len);
      insert.push({ off: end, buf: tail, len: tail.length });
    }
    for (const e of insert) this.total += e.len;
    this.exts.splice(i, replaced.length, ...insert);
  }

  /**
   * Whether `e` can take `n` more bytes at its end: in its spare room, or in a buffer of twice
   * its size (at most APPEND_CHUNK) that replaces it, when it was allocated here.
   */
  private room(e: Extent, n: number): boolean {
    const need = e.len + n;
    if (need <= e.buf.length) return true;
    if (!e.grows || need > APPEND_CHUNK) return false;
    const bigger = Buffer.allocUnsafe(Math.min(APPEND_CHUNK, Math.max(need, 2 * e.buf.length)));
    e.buf.copy(bigger, 0, 0, e.len);
    e.buf = bigger;
    return true;
  }

  /**
   * The map is done with (its commit is built, or its bytes were copied elsewhere): the owners'
   * releases run now, or when the last read that holds it lets go.
   */
  retire(): void {
    this.retired = true;
    if (this.holds === 0) this.runReleases();
  }

  /** A read will still lay this map over its result after an await: keep its buffers. */
  hold(): void {
    this.holds++;
  }

  unhold(): void {
    if (--this.holds === 0 && this.retired) this.runReleases();
  }

  private runReleases(): void {
    const r = this.releases;
    if (!r) return;
    this.releases = undefined;
    for (const fn of r) fn();
  }

  /** Drops everything at or beyond `size`. */
  truncate(size: number): void {
    let i = this.firstEndingAfter(size);
    if (i < this.exts.length && this.exts[i].off < size) {
      const e = this.exts[i];
      const keep = size - e.off;
      this.total -= e.len - keep;
      this.exts[i] = { off: e.off, buf: e.buf.subarray(0, keep), len: keep };
      i++;
    }
    for (let k = i; k < this.exts.length; k++) this.total -= this.exts[k].len;
    this.exts.length = i;
  }

  /** Copies the dirty bytes overlapping [pos, pos + out.length) into out. Returns bytes covered. */
  overlay(out: Buffer, pos: number): number {
    const end = pos + out.length;
    let covered = 0;
    for (let i = this.firstEndingAfter(pos); i < this.exts.length && this.exts[i].off < end; i++) {
      const e = this.exts[i];
      const from = Math.max(pos, e.off);
      const to = Math.min(end, e.off + e.len);
      e.buf.copy(out, from - pos, from - e.off, to - e.off);
      covered += to - from;
    }
    return covered;
  }

  /** True when dirty bytes cover all of [pos, end). */
  covers(pos: number, end: number): boolean {
    let at = pos;
    for (let i = this.firstEndingAfter(pos); i < this.exts.length && at < end; i++) {
      const e = this.exts[i];
      if (e.off > at) return false;
      at = e.off + e.len;
    }
    return at >= end;
  }

  /** The extents as (offset, bytes), sorted; the bytes are views, valid until the next write. */
  list(): Array<{ offset: number; data: Buffer }> {
    return this.exts.map((e) => ({ offset: e.off, data: e.buf.subarray(0, e.len) }));
  }

  /** Index of the first extent whose end is beyond `off`. */
  private firstEndingAfter(off: number): number {
    let lo = 0;
    let hi = this.exts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const e = this.exts[mid];
      if (e.off + e.len <= off) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
