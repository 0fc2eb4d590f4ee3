// The JavaScript side of the write ring (native/src/fuse3/ring.c): a write request whose payload
// the addon copied into a ring block arrives with `ringSlot` and `size` instead of `data`; here
// it gets `data`, a view of that block in the one Buffer over the ring (made once), and
// `release`, which gives the block back. No ArrayBuffer is made per write, so writing adds
// nothing to V8's external memory and starts no collection (see ring.c for the measurements).
import type { Fuse3Addon, WriteRingStats } from './native.js';
import { loadFuse3 } from './native.js';

let ring: Buffer | null = null;
let blockBytes = 0;

interface RingWrite {
  op: string;
  ringSlot?: number;
  size?: number;
  data?: Buffer;
  release?: () => void;
}

/** Gives every write request of a batch that came in a ring block its view and its release. */
export function ringViews(addon: Fuse3Addon, reqs: ReadonlyArray<{ op: string }>): void {
  for (const req of reqs) {
    const r = req as RingWrite;
    if (r.op !== 'write' || r.ringSlot === undefined) continue;
    const slot = r.ringSlot;
    if (!ring) {
      // The addon hands out slots only once its region exists, so this is never null here.
      ring = addon.writeRing()!;
      blockBytes = addon.ringStats().blockBytes;
    }
    const at = slot * blockBytes;
    r.data = ring.subarray(at, at + r.size!);
    let done = false;
    r.release = () => {
      if (done) return;
      done = true;
      addon.releaseWrite(slot);
    };
  }
}

/** The ring's counters (all sessions of the process share it). */
export function writeRingStats(): WriteRingStats {
  return loadFuse3().ringStats();
}
