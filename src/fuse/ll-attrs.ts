// Directory attributes the addon answers by itself (native/src/fuse3/attrs.c): a getattr of a
// stored directory whose attributes this thread has vouched for is answered on libfuse's thread,
// with no hop here. The kernel drops a directory's cached attributes after each create, unlink
// or rename in it and asks again at the next path walk (default_permissions checks its mode):
// one getattr per file made or removed, two per file rsync copies, half of an unlink's requests.
//
// The discipline is holes.c's: attributes are offered only when current, and dropped
// synchronously before any change to the node is acknowledged (an offer may come at any time,
// also after a change's reply). The namespace's cache tells of every transaction it learns
// (Meta.watchTxns, called before the transaction's maker is answered) with the inodes it
// changed and the directories whose entries it changed; a transaction that may change anything
// (raw records, a volume forgotten) drops them all.
// Offers are made against a count of changes taken before their attributes were read: if any
// change was learnt meanwhile, the offer is not made (the attributes may predate it).
//
// Only directories of stored volumes: a file's size and times move with its open handles'
// writes (OpenFile), which this table does not follow; the virtual nodes (the mount's top,
// `.snapshots`, the catalog's views) change without a stored record.

import type { Meta, TxnWatcher } from '../namespace/meta.js';
import type { NodeAttr } from '../namespace/node-ops.js';
import { parseNode } from '../namespace/node-id.js';
import { NodeType } from '../namespace/records.js';
import type { LlSession } from './ll/session.js';
import type { LlAttr } from './ll/types.js';

/** Nodes whose attributes the addon may hold at once: its table's size (attrs.c, NSLOTS). */
const MAX_HELD = 4096;

export class AttrTable {
  /** Nodes offered to the addon and not dropped since: "vol/ino" (the namespace's key) -> node id. */
  private readonly held = new Map<string, bigint>();
  /** Changes learnt so far (any node). */
  private changes = 0;
  private session: LlSession | undefined;
  private readonly unwatch: () => void;

  constructor(meta: Meta) {
    // From the start: an offer's count must see every change after it was taken.
    this.unwatch = meta.watchTxns((t) => this.changed(t));
  }

  /** Taken before reading attributes to offer. */
  mark(): number {
    return this.changes;
  }

  /** The addon may answer getattr of `a.ino` with `attr` if nothing changed since `mark`. */
  offer(s: LlSession, a: NodeAttr, attr: LlAttr, timeout: number, mark: number): void {
    if (mark !== this.changes || a.type !== NodeType.Dir) return;
    const ref = parseNode(a.ino);
    if (ref.kind !== 'vol') return;
    const key = `${ref.vol}/${ref.ino}`;
    if (!this.held.has(key) && this.held.size >= MAX_HELD) {
      // The addon's table is direct-mapped; past its size, forget the oldest offered here.
      const [[old, node]] = this.held;
      this.held.delete(old!);
      s.clearAttr(node!);
    }
    this.session = s;
    if (s.setAttr(attr, timeout)) this.held.set(key, a.ino);
  }

  /** At unmount. */
  close(): void {
    this.unwatch();
    this.held.clear();
    this.session = undefined;
  }

  private changed(t: Parameters<TxnWatcher>[0]): void {
    this.changes++;
    const s = this.session;
    if (!s || this.held.size === 0) return;
    if (t === null || t.hasRaw) {
      this.held.clear();
      s.clearAttrs();
      return;
    }
    for (const k of t.inodes.keys()) this.drop(s, k);
    for (const k of t.dirs) this.drop(s, k);
  }

  private drop(s: LlSession, k: string): void {
    const node = this.held.get(k);
    if (node === undefined) return;
    this.held.delete(k);
    s.clearAttr(node);
  }
}
