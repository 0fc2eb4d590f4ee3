// A Map keyed by fingerprint that costs a number key, not a string: 30 bits of the
// fingerprint pick the slot and the full 32 bytes confirm, so colliding keys coexist.

import { fpEquals, fpKey } from '../codec/fingerprint.js';

interface Slot<V> {
  fp: Uint8Array;
  value: V;
}

export class FpMap<V> {
  private readonly map = new Map<number, Slot<V> | Slot<V>[]>();
  private n = 0;

  get size(): number {
    return this.n;
  }

  get(fp: Uint8Array, off = 0): V | undefined {
    const s = this.map.get(fpKey(fp, off));
    if (s === undefined) return undefined;
    if (!Array.isArray(s)) return fpEquals(s.fp, 0, fp, off) ? s.value : undefined;
    for (const x of s) if (fpEquals(x.fp, 0, fp, off)) return x.value;
    return undefined;
  }

  /** Stores value under fp; `fp` must not change afterwards (it is kept, not copied). */
  set(fp: Uint8Array, value: V): void {
    const k = fpKey(fp);
    const s = this.map.get(k);
    if (s === undefined) {
      this.map.set(k, { fp, value });
      this.n++;
      return;
    }
    const list = Array.isArray(s) ? s : [s];
    for (const x of list) {
      if (fpEquals(x.fp, 0, fp, 0)) {
        x.value = value;
        return;
      }
    }
    list.push({ fp, value });
    this.map.set(k, list);
    this.n++;
  }

  /** Deletes fp's entry if `pred` accepts its value (so an owner removes only its own). */
  delete(fp: Uint8Array, pred?: (v: V) => boolean): boolean {
    const k = fpKey(fp);
    const s = this.map.get(k);
    if (s === undefined) return false;
    if (!Array.isArray(s)) {
      if (!fpEquals(s.fp, 0, fp, 0) || (pred && !pred(s.value))) return false;
      this.map.delete(k);
      this.n--;
      return true;
    }
    const i = s.findIndex((x) => fpEquals(x.fp, 0, fp, 0) && (!pred || pred(x.value)));
    if (i < 0) return false;
    s.splice(i, 1);
    if (s.length === 1) this.map.set(k, s[0]);
    this.n--;
    return true;
  }

  clear(): void {
    this.map.clear();
    this.n = 0;
  }

  *entries(): IterableIterator<[Uint8Array, V]> {
    for (const s of this.map.values()) {
      if (Array.isArray(s)) for (const x of s) yield [x.fp, x.value];
      else yield [s.fp, s.value];
    }
  }

  *values(): IterableIterator<V> {
    for (const s of this.map.values()) {
      if (Array.isArray(s)) for (const x of s) yield x.value;
      else yield s.value;
    }
  }
}
