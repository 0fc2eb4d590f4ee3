// Looking into a store from a test: which segments a version uses, the index as a plain map,
// how a read ended (identical, typed error, or wrong bytes), and a "crash" that stops an open
// store without sealing or marking it clean, as SIGKILL would after the last commit.

import { isVmvaultError } from '../../src/errors.js';
import { fpHex, isZeroFp } from '../../src/store/codec/fingerprint.js';
import { encodeLocation } from '../../src/store/index/segment-index.js';
import type { FileVersion, SegmentStore } from '../../src/store/store.js';
import { childFp } from '../../src/store/tree/node.js';
import { internalsOf } from '../../src/store/internals.js';

export interface Use {
  start: number;
  len: number;
}

/** The data segments of a version: fingerprint (hex) -> where in the file it is used. */
export async function dataUses(store: SegmentStore, v: FileVersion): Promise<Map<string, Use[]>> {
  const out = new Map<string, Use[]>();
  for await (const p of store.view(v).leaves(0, v.size)) {
    if (p.entry.zero) continue;
    const k = fpHex(p.entry.fp);
    const list = out.get(k) ?? [];
    list.push({ start: p.start, len: p.entry.len });
    out.set(k, list);
  }
  return out;
}

/** The tree nodes of a version (hex fingerprints), root included. */
export async function nodeFps(store: SegmentStore, v: FileVersion): Promise<Set<string>> {
  const out = new Set<string>();
  const walk = async (fp: Buffer, height: number): Promise<void> => {
    if (height === 0 || out.has(fpHex(fp))) return;
    out.add(fpHex(fp));
    const n = await store.reader.node(fp);
    if (n.level > 1) for (let i = 0; i < n.count; i++) await walk(childFp(n, i), n.level - 1);
  };
  if (!(v.height === 0 && isZeroFp(v.root))) await walk(v.root, v.height);
  return out;
}

/** The whole segment index: fingerprint (hex) -> encoded location (hex). */
export async function indexSnapshot(store: SegmentStore): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const [fp, loc] of internalsOf(store).index.entries()) out.set(fpHex(fp), encodeLocation(loc).toString('hex'));
  return out;
}

export type Outcome = 'identical' | 'WRONG BYTES' | string;

/**
 * Reads [off, off + len) and says how it ended: 'identical', the VmvaultError code, or
 * 'WRONG BYTES'. Anything that is not a VmvaultError is rethrown (an untyped failure is a bug).
 */
export async function readOutcome(store: SegmentStore, v: FileVersion, expected: Buffer, off = 0, len = v.size): Promise<Outcome> {
  try {
    const got = await store.read(v, off, len);
    return got.equals(expected.subarray(off, off + len)) ? 'identical' : 'WRONG BYTES';
  } catch (err) {
    if (isVmvaultError(err)) return err.code;
    throw err;
  }
}

/** The error a promise rejects with, or undefined if it resolves. */
export async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
    return undefined;
  } catch (err) {
    return err;
  }
}

/**
 * Stops an open store the way a crash would after its last commit: nothing sealed, no clean
 * mark, no checkpoint; open container files are left as they are on disk.
 */
export async function crashClose(store: SegmentStore): Promise<void> {
  const core = internalsOf(store);
  for (const w of core.writers.values()) await w.abandon();
  await core.pool.close();
  await core.files.closeAll();
  await core.db.close();
}
