// Returning free malloc memory to the system after checkpoints: malloc's heaps hold freed
// medium blocks (table encodes, batch arrays, LevelDB's memtable) between live ones, resident
// for good unless given back (measured: ~60 MiB of an ingest to 1 M segments).

import { nativeCodec } from './native.js';

/** Least time between two returns of free malloc memory to the system. */
const TRIM_MS = 1000;

export class MemoryTrim {
  private last = 0;

  /** At most every TRIM_MS. */
  maybeTrim(): void {
    const t = Date.now();
    if (t - this.last < TRIM_MS) return;
    this.last = t;
    nativeCodec?.mallocTrim();
  }
}
