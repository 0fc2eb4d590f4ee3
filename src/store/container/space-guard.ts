// Keeps the data disk from filling up completely. LevelDB cannot write its log on a full disk
// and then refuses every write until reopened, so deletes and garbage collection, the way to
// free space, would fail too. New data is therefore refused (NO_SPACE) once free space falls
// to a reserve; deletes, metadata and GC's copy-forward may still use the reserve (GC down to
// a quarter of it).
//
// statfs of the data directory is a cheap system call on a local disk (never our own mount),
// so it is made synchronously: after every few MiB appended, and whenever the estimate says
// the reserve is reached, so space freed meanwhile is seen at once.

import fs from 'node:fs';
import { vmError } from '../../errors.js';

const CHECK_EVERY_BYTES = 4 * 1024 * 1024;
const MiB = 1024 * 1024;

export class SpaceGuard {
  readonly reserveBytes: number;
  private free = 0;
  private since = 0;

  constructor(
    private readonly dir: string,
    reserveBytes?: number,
  ) {
    const total = this.statfs().total;
    // 1% of the disk, at least 64 MiB and at most 2 GiB, but never a quarter of a small disk.
    this.reserveBytes = reserveBytes ?? Math.min(Math.max(64 * MiB, total / 100), 2048 * MiB, total / 4);
    this.refresh();
  }

  private statfs(): { total: number; free: number } {
    const st = fs.statfsSync(this.dir);
    return { total: st.blocks * st.bsize, free: st.bavail * st.bsize };
  }

  private refresh(): void {
    this.free = this.statfs().free;
    this.since = 0;
  }

  /** Throws NO_SPACE if `bytes` more would eat into the reserve. */
  take(bytes: number, privileged = false): void {
    const floor = privileged ? this.reserveBytes / 4 : this.reserveBytes;
    if (this.since >= CHECK_EVERY_BYTES || this.free - this.since - bytes < floor) this.refresh();
    if (this.free - this.since - bytes < floor) {
      throw vmError(
        'NO_SPACE',
        `the data disk is full: ${Math.floor(this.free / MiB)} MiB free, ${Math.floor(this.reserveBytes / MiB)} MiB kept in reserve for deletes and garbage collection; delete files or snapshots, then run \`vmvault gc\``,
        { freeBytes: this.free, reserveBytes: this.reserveBytes },
      );
    }
    this.since += bytes;
  }
}
