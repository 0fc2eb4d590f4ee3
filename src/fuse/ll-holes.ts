// The holes of open files that the addon answers by itself (native/src/fuse3/holes.c): a read
// wholly inside a zero run the store keeps (never stored) gets zeros on libfuse's thread, with
// no hop to this thread and no copy in JavaScript. A recovered VM's disk is mostly holes.
//
// The runs come from the file's segment tree, a chunk at a time as a reader moves on (the
// first read of an open asks for the first chunk; a read reaching JavaScript near the end of
// what is known asks for the next), only while the file reads as its committed version. Any
// change of the file's bytes or size (OpenFile's change listeners, called before the change is
// acknowledged) drops the runs of every open of it at once, so no read begun after the change
// gets stale zeros (they are learnt again RELEARN_MS later); release drops them before the fh
// can be reused.
//
// A chunk's runs are kept by the version they were walked in (its root fingerprint, size and
// height name its bytes for good), so another open of the same version (a snapshot's image
// opened again: each qemu-img run, each reader's pass) takes them without walking the tree
// again: the walk of a 1 GiB image cost its JS thread ~25 ms per open, more than the rest of a
// 64 MiB read of it through the mount (tools/PERFORMANCE.md, imageread).

import type { OpenFile } from '../namespace/open-file.js';
import type { FileVersion, Namespace } from '../namespace/namespace.js';
import type { LlSession } from './ll/session.js';

/** Tree walked per step (a VM disk's segment tree for 1 GiB: a few hundred node reads at most). */
const CHUNK = 1024 * 1024 * 1024;
/** The next chunk is asked for when a read comes this close to the end of the known one. */
const LEAD = 256 * 1024 * 1024;
/** Runs shorter than a read request seldom hold one whole. */
const MIN_RUN = 128 * 1024;
/** (start, end) pairs kept per open at most: a badly fragmented file is read through JavaScript. */
const MAX_PAIRS = 1 << 16;
/**
 * After a change, the holes are learnt again only this much later: a running VM writes every few
 * seconds, and each write would otherwise cost a walk of the tree at its next read.
 */
const RELEARN_MS = 5000;
/** Chunks whose runs are kept by version (the least recently used go first). */
const KEPT_CHUNKS = 16;

/** The chunk from `from` of `v`: bytes that never change once committed. */
function chunkKey(v: FileVersion, from: number): string {
  return `${v.root.toString('hex')}/${v.size}/${v.height}/${from}`;
}

interface Open {
  ino: bigint;
  fh: number;
  file: OpenFile;
  /** Known up to here (from 0). */
  covered: number;
  runs: number[];
  /** The addon holds runs of this open. */
  registered: boolean;
  /** Not learnt again before this (Date.now()), after a change. */
  quietUntil: number;
  busy: boolean;
  listener: () => void;
}

export class HoleTable {
  private readonly opens = new Map<number, Open>();
  /** Zero runs of a chunk (from, to, MIN_RUN) by chunkKey, in insertion order for eviction. */
  private readonly kept = new Map<string, number[]>();

  constructor(private readonly ns: Namespace) {}

  /** A read of (ino, fh) at `offset` reached JavaScript: learn more of the file's holes if due. */
  onRead(s: LlSession, ino: bigint, fh: number, offset: number): void {
    let o = this.opens.get(fh);
    if (!o) {
      if (ino > BigInt(Number.MAX_SAFE_INTEGER)) return;
      let file: OpenFile;
      try {
        file = this.ns.fs.handle(fh).file;
      } catch {
        return;
      }
      const open: Open = { ino, fh, file, covered: 0, runs: [], registered: false, quietUntil: 0, busy: false, listener: () => this.changed(s, open) };
      file.changeListeners.add(open.listener);
      this.opens.set(fh, open);
      o = open;
    }
    if (o.ino !== ino || o.busy || !o.file.clean || o.covered >= o.file.size || offset + LEAD < o.covered || o.runs.length >= MAX_PAIRS) return;
    if (o.quietUntil !== 0 && Date.now() < o.quietUntil) return;
    const from = o.covered;
    const to = from + CHUNK;
    const key = chunkKey(o.file.base, from);
    const known = this.kept.get(key);
    if (known) {
      // The file reads as that version now (clean, checked above), with nothing in between.
      this.keep(key, known);
      this.learnt(s, o, from, to, known);
      return;
    }
    o.busy = true;
    const open = o;
    this.ns.nodes.zeroRuns(fh, from, to, MIN_RUN).then(
      (got) => {
        open.busy = false;
        if (!got) return;
        // zeroRuns took the version synchronously from this call: `key` names what it walked.
        this.keep(key, got.runs);
        // Checked here, with nothing between this and setHoles: the file is as it was walked.
        if (this.opens.get(fh) !== open || open.covered !== from || open.file.changes !== got.changes) return;
        this.learnt(s, open, from, to, got.runs);
      },
      () => {
        // The walk failed (damage): reads go through JavaScript, which reports it.
        open.busy = false;
        open.runs.length = MAX_PAIRS;
      },
    );
  }

  /** Zero runs of [from, to) of the version `o` reads as now are known: the addon takes them. */
  private learnt(s: LlSession, o: Open, from: number, to: number, runs: number[]): void {
    const r = o.runs;
    for (let k = 0; k < runs.length; k += 2) {
      if (r.length > 0 && r[r.length - 1] === runs[k]) r[r.length - 1] = runs[k + 1];
      else r.push(runs[k], runs[k + 1]);
    }
    o.covered = Math.min(to, o.file.size);
    if (s.setHoles(o.ino, o.fh, Float64Array.from(r))) o.registered = true;
    else o.runs.length = MAX_PAIRS; // not taken: stop asking
  }

  /** Keeps `runs` as the most recently used chunk, the least recently used going past KEPT_CHUNKS. */
  private keep(key: string, runs: number[]): void {
    this.kept.delete(key);
    this.kept.set(key, runs);
    if (this.kept.size > KEPT_CHUNKS) this.kept.delete(this.kept.keys().next().value!);
  }

  /** Called before the handle goes: its runs must not outlive its fh. */
  release(s: LlSession, ino: bigint, fh: number): void {
    const o = this.opens.get(fh);
    if (!o) return;
    this.opens.delete(fh);
    o.file.changeListeners.delete(o.listener);
    s.clearHoles(ino, fh);
  }

  /** The file's bytes change: nothing known holds any more. */
  private changed(s: LlSession, o: Open): void {
    if (o.registered) s.clearHoles(o.ino, o.fh);
    o.registered = false;
    o.runs = [];
    o.covered = 0;
    o.quietUntil = Date.now() + RELEARN_MS;
  }
}
