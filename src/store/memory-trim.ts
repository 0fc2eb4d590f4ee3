// Returning free malloc memory to the system after checkpoints: malloc's heaps hold freed
// medium blocks (table encodes, batch arrays, LevelDB's memtable) between live ones, resident
// for good unless given back (measured: ~60 MiB of an ingest to 1 M segments).
//
// malloc_trim runs on the main thread and walks every heap: 0.7 s of a full backup's CPU when
// it ran after every checkpoint (at most once a second) while a stream was committing. It now
// waits until checkpoints pause for QUIET_MS, and during a long stream of them runs at most
// every BUSY_MS, so memory is still given back while a big ingest goes on.

import { nativeCodec } from './native.js';

/** A trim waits until no checkpoint came for this long. */
const QUIET_MS = 1000;
/** ... or until this long has passed since the last trim (a stream that never pauses). */
const BUSY_MS = 10_000;

export class MemoryTrim {
  private lastTrim = Date.now();
  private lastAsk = 0;
  private timer: NodeJS.Timeout | undefined;

  /** After a checkpoint: trims once things are quiet (or every BUSY_MS at the least). */
  maybeTrim(): void {
    this.lastAsk = Date.now();
    if (this.timer) return;
    this.schedule(QUIET_MS);
  }

  /** Drops a pending trim (the store closes). */
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(ms: number): void {
    this.timer = setTimeout(() => this.check(), ms);
    this.timer.unref();
  }

  private check(): void {
    this.timer = undefined;
    const now = Date.now();
    const quiet = now - this.lastAsk >= QUIET_MS;
    if (quiet || now - this.lastTrim >= BUSY_MS) {
      this.lastTrim = now;
      nativeCodec?.mallocTrim();
      return;
    }
    this.schedule(Math.min(QUIET_MS - (now - this.lastAsk), BUSY_MS - (now - this.lastTrim)));
  }
}
