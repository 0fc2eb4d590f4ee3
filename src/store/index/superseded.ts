// Records a repair replaced (FORMAT.md, `r` keys): a damaged record stays in its sealed
// container (sealed containers never change) after repair/repair.ts wrote a healthy copy
// elsewhere and pointed the index at it. Whatever reads container tables rather than the index
// (the locality cache, an index rebuild, GC's sweep) must not take that old record for the
// segment's home again. Few (one per repaired segment until GC removes its container), so the
// whole set lives in memory; empty, it costs one size check per container table loaded.

import type { Db, DbOp } from '../../kv/db.js';
import { FP_BYTES } from '../codec/fingerprint.js';
import { FpMap } from './fp-map.js';

export const SUPERSEDED_PREFIX = 0x72; // 'r'

/** `r` + fingerprint + container id u32 BE (37 bytes); the value is the record's offset, u32 LE. */
export function supersededKey(fp: Uint8Array, cid: number): Buffer {
  const k = Buffer.allocUnsafe(1 + FP_BYTES + 4);
  k[0] = SUPERSEDED_PREFIX;
  k.set(fp.subarray(0, FP_BYTES), 1);
  k.writeUInt32BE(cid, 1 + FP_BYTES);
  return k;
}

export class Superseded {
  /** fp -> containers whose record of fp was replaced. */
  private readonly map = new FpMap<number[]>();

  get size(): number {
    return this.map.size;
  }

  static async load(db: Db): Promise<Superseded> {
    const s = new Superseded();
    for await (const k of db.keys({ gte: Buffer.from([SUPERSEDED_PREFIX]), lt: Buffer.from([SUPERSEDED_PREFIX + 1]) })) {
      // A key of another length is not ours to interpret (and cannot be a record we wrote).
      if (k.length !== 1 + FP_BYTES + 4) continue;
      s.add(Buffer.from(k.subarray(1, 1 + FP_BYTES)), k.readUInt32BE(1 + FP_BYTES));
    }
    return s;
  }

  /** The record of fp in container cid is no longer the segment's home. */
  add(fp: Uint8Array, cid: number): void {
    const list = this.map.get(fp);
    if (list) {
      if (!list.includes(cid)) list.push(cid);
    } else {
      this.map.set(Buffer.from(fp.subarray(0, FP_BYTES)), [cid]);
    }
  }

  /** Undoes add() (a repair whose batch was not written). */
  remove(fp: Uint8Array, cid: number): void {
    const list = this.map.get(fp);
    if (!list) return;
    const i = list.indexOf(cid);
    if (i >= 0) list.splice(i, 1);
  }

  has(fp: Uint8Array, cid: number, off = 0): boolean {
    if (this.map.size === 0) return false;
    return this.map.get(fp, off)?.includes(cid) ?? false;
  }

  putOp(fp: Uint8Array, cid: number, offset: number): DbOp {
    const v = Buffer.allocUnsafe(4);
    v.writeUInt32LE(offset, 0);
    return { type: 'put', key: supersededKey(fp, cid), value: v };
  }
}
