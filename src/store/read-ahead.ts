// Read-ahead for small sequential reads (FUSE hands a large copy to the store as read() calls
// of 128 KiB at increasing offsets). Once a version has been read twice in a row where the
// previous read ended, the store reads the next window (4 MiB) in one piece, in the background
// and decoded in place like a stream read, and serves the following small reads by copying
// out of it: one codec round trip per window instead of one per read. Versions never change,
// so a window stays valid as long as it is kept.

import { fpKey } from './fingerprint.js';
import type { TreeView } from './tree-reader.js';

const WINDOW = 4 * 1024 * 1024;
/** Windows read ahead of a sequential reader (as many as TreeView.stream keeps in flight). */
const AHEAD = 3;
/** Sequential readers followed at once; each holds at most AHEAD + 1 windows (16 MiB). */
const MAX_STREAMS = 4;
/** VMVAULT_NO_READAHEAD=1 turns it off, for comparisons. */
const OFF = process.env.VMVAULT_NO_READAHEAD === '1';

interface Window {
  start: number;
  end: number;
  bytes: Promise<Buffer>;
}

interface Stream {
  /** Where the last read ended. */
  next: number;
  /** Reads in a row that started where the one before ended. */
  run: number;
  windows: Window[];
}

export class ReadAhead {
  private readonly streams = new Map<string, Stream>();

  /**
   * Bytes [off, off + len) of `view` (clipped to its size), from a read-ahead window when one
   * covers them; else undefined, and the caller reads them itself.
   */
  read(view: TreeView, off: number, len: number): Promise<Buffer> | undefined {
    const v = view.version;
    if (OFF || v.height === 0 || len <= 0 || off >= v.size) return undefined;
    const end = Math.min(v.size, off + len);
    const key = `${fpKey(v.root)}:${fpKey(v.root, 4)}:${v.size}`;
    let s = this.streams.get(key);
    if (s) this.streams.delete(key); // re-inserted below: most recent last
    if (!s || s.next !== off) s = { next: end, run: 0, windows: s?.windows ?? [] };
    else {
      s.next = end;
      s.run++;
    }
    this.streams.set(key, s);
    if (this.streams.size > MAX_STREAMS) this.streams.delete(this.streams.keys().next().value!);
    if (s.run < 2) return undefined;
    // Windows behind the reader are dropped; new ones keep AHEAD windows beyond the reader.
    s.windows = s.windows.filter((w) => w.end > off);
    if (s.windows.length === 0 || s.windows[0].start > off) s.windows = [];
    let last = s.windows[s.windows.length - 1] ?? this.open(s, view, off);
    while (s.windows.length <= AHEAD && last.end < v.size) last = this.open(s, view, last.end);
    // The windows covering [off, end), if they do without a gap.
    const use: Window[] = [];
    let at = off;
    for (const w of s.windows) {
      if (w.start <= at && w.end > at) {
        use.push(w);
        at = w.end;
        if (at >= end) break;
      }
    }
    if (at < end) return undefined;
    return Promise.all(use.map((w) => w.bytes)).then((bufs) => {
      const out = Buffer.allocUnsafe(end - off);
      let pos = off;
      bufs.forEach((b, k) => {
        const w = use[k];
        const to = Math.min(end, w.end);
        b.copy(out, pos - off, pos - w.start, to - w.start);
        pos = to;
      });
      return out;
    });
  }

  private open(s: Stream, view: TreeView, from: number): Window {
    const end = Math.min(view.version.size, from + WINDOW);
    const w: Window = { start: from, end, bytes: view.read(from, end - from) };
    // A failed window is dropped; the read that needs those bytes then meets the error itself.
    w.bytes.catch(() => {
      s.windows = s.windows.filter((x) => x !== w);
    });
    s.windows.push(w);
    return w;
  }
}
