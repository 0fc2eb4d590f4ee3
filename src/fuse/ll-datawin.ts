// Data reads the addon answers by itself (native/src/fuse3/datawin.c): a sequential read of
// stored data is answered on libfuse's thread from the store's read-ahead windows, decoded and
// verified bytes this thread already holds, with no hop to this thread and the copy into the
// kernel done there, in parallel, instead of here one reply after another.
//
// The store tells this table of each window as it becomes ready and before its buffer is reused
// (WindowWatcher): a ready window is registered for every open that reads as that version and
// whose reads reached this thread; a retired one is dropped everywhere first (the addon waits
// for any reply still copying out of it). Any change of a file's bytes or size (OpenFile's
// change listeners, called before the change is acknowledged) drops the windows of every open
// of it at once, so no read begun after the change gets old bytes; release drops them before
// the fh can be reused. The addon answers a read only while a later window of the same open is
// registered: reads in the last one come here, so the read-ahead follows the reader.

import type { FileVersion, Namespace, WindowWatcher } from '../namespace/namespace.js';
import type { OpenFile } from '../namespace/open-file.js';
import type { LlSession } from './ll/session.js';

/** VMVAULT_NO_DATAWIN=1 keeps every data read on this thread, for comparisons. */
const OFF = process.env.VMVAULT_NO_DATAWIN === '1';

interface Open {
  ino: bigint;
  fh: number;
  file: OpenFile;
  listener: () => void;
}

function sameVersion(a: FileVersion, b: FileVersion): boolean {
  return a === b || (a.size === b.size && a.height === b.height && a.root.equals(b.root));
}

export class DataWindows implements WindowWatcher {
  private readonly opens = new Map<number, Open>();
  /** Window buffers the addon may hold (registered for some open): retire must drop them. */
  private readonly held = new Set<ArrayBufferLike>();
  private session: LlSession | undefined;

  constructor(private readonly ns: Namespace) {}

  /** Stops taking windows and forgets every one the addon holds (at unmount). */
  stop(): void {
    if (!this.session) return;
    this.ns.watchReadAhead(undefined);
    for (const o of this.opens.values()) this.forget(o);
    this.opens.clear();
    this.session = undefined;
  }

  /** A read of (ino, fh) reached this thread: windows read for its version from now on are offered. */
  onRead(s: LlSession, ino: bigint, fh: number): void {
    if (OFF || this.opens.has(fh) || ino > BigInt(Number.MAX_SAFE_INTEGER)) return;
    if (this.session !== s) {
      // The first read of this mount: the store tells this table of its windows from now on.
      this.stop();
      this.session = s;
      this.ns.watchReadAhead(this);
    }
    let file: OpenFile;
    try {
      file = this.ns.fs.handle(fh).file;
    } catch {
      return;
    }
    const o: Open = { ino, fh, file, listener: () => this.session?.clearDataWindows(o.ino, o.fh) };
    file.changeListeners.add(o.listener);
    this.opens.set(fh, o);
  }

  /** Called before the handle goes: its windows must not outlive its fh. */
  release(ino: bigint, fh: number): void {
    const o = this.opens.get(fh);
    if (!o || o.ino !== ino) return;
    this.opens.delete(fh);
    this.forget(o);
  }

  wants(version: FileVersion): boolean {
    for (const o of this.opens.values()) if (o.file.clean && sameVersion(o.file.base, version)) return true;
    return false;
  }

  ready(version: FileVersion, start: number, end: number, buf: Buffer): void {
    const s = this.session;
    if (!s) return;
    for (const o of this.opens.values()) {
      // The window's bytes are this open's only while the file reads exactly as that version;
      // a later change clears them (listener) before it is acknowledged.
      if (!o.file.clean || !sameVersion(o.file.base, version)) continue;
      if (s.setDataWindow(o.ino, o.fh, start, buf)) this.held.add(buf.buffer);
    }
  }

  retire(buf: Buffer): void {
    if (!this.held.delete(buf.buffer)) return;
    this.session?.dropDataWindow(buf);
  }

  private forget(o: Open): void {
    o.file.changeListeners.delete(o.listener);
    this.session?.clearDataWindows(o.ino, o.fh);
  }
}
