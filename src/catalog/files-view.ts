// `<image>.files/` in `.snapshots/<point>/`: each cataloged disk image's volumes as a read-only
// tree (`p1/`, `lvm-vg0-root/`, ...). Listings and attributes come from the point's catalog
// (SQLite, instant); file bytes are read by the recorded extents through the namespace, never
// the mount. Implements the libfuse3 binding's VirtualTree (fuse/ll-virtual.ts).
//
// Node ids come from the range namespace/node-id.ts reserves (volume 0, inode >= 2^32), handed
// out as entries are first seen and kept for the process's life (one small object per entry
// seen, so memory grows with what was browsed, not with the catalogs' size).
// Guest permissions, owners and times are shown as the catalog holds them, without write bits.

import { vmError } from '../errors.js';
import type { FileVersion, Namespace } from '../namespace/namespace.js';
import type { NodeAttr } from '../namespace/node-ops.js';
import { isVirtualNode, parseNode, VIRTUAL_NODE_BASE, VIRTUAL_NODE_END } from '../namespace/node-id.js';
import { NodeType, ROOT_INO } from '../namespace/records.js';
import type { CatalogService } from './catalog-service.js';
import type { FileRow, VolumeRow } from './catalog-db.js';
import type { Extent } from './extents-codec.js';

export const FILES_SUFFIX = '.files';

/**
 * Read-ahead of a sequential reader (issue 15): the kernel asks in 128 KiB requests, each of which
 * answered alone cost a catalog read through the namespace (files.read_vs_extents 0.38). A reader
 * at the start of a file or just past its previous read gets WINDOW-aligned windows of WINDOW bytes
 * read once, and the next window is read while it consumes the current one. Random readers read
 * only what they ask. Memory: at most 2 windows per file, MAX_STREAMS files (32 MiB in all).
 */
export const READ_WINDOW = 1024 * 1024;
const MAX_STREAMS = 16;

interface Window {
  start: number;
  end: number;
  data: Promise<Buffer>;
}

interface Stream {
  windows: Window[];
  /** End of the last request answered: a request near it is sequential. */
  last: number;
}

type Target =
  | { kind: 'top'; share: string; point: string; image: string; created: number }
  | { kind: 'vol'; share: string; point: string; image: string; vol: VolumeRow; created: number }
  | { kind: 'row'; share: string; point: string; image: string; vol: VolumeRow; row: FileRow; content?: { extents?: Extent[]; inline?: Buffer }; direct?: boolean };

export class CatalogFilesView {
  private readonly nodes = new Map<bigint, Target>();
  private readonly ids = new Map<string, bigint>();
  private next = VIRTUAL_NODE_BASE;
  /** Stored volume id -> the snapshot it is (share, point, created), or null. */
  private readonly snaps = new Map<number, { share: string; point: string; created: number } | null>();
  /** Read-ahead per file node being read, least recently used first. */
  private readonly streams = new Map<bigint, Stream>();

  constructor(
    private readonly ns: Namespace,
    private readonly catalog: CatalogService,
  ) {}

  owns(node: bigint): boolean {
    return isVirtualNode(node);
  }

  private idOf(key: string, t: Target): bigint {
    let id = this.ids.get(key);
    if (id === undefined) {
      if (this.next >= VIRTUAL_NODE_END) throw vmError('NO_SPACE', 'the catalog view ran out of node ids; restart the appliance');
      id = this.next++;
      this.ids.set(key, id);
    }
    this.nodes.set(id, t);
    return id;
  }

  private target(node: bigint): Target {
    const t = this.nodes.get(node);
    if (!t) throw vmError('NOT_FOUND', `node ${node} of the catalog view is not known (any more)`);
    return t;
  }

  private async snapshotOf(node: bigint): Promise<{ share: string; point: string; created: number } | null> {
    let ref;
    try {
      ref = parseNode(node);
    } catch {
      return null;
    }
    if (ref.kind !== 'vol' || ref.ino !== ROOT_INO) return null;
    if (this.snaps.has(ref.vol)) return this.snaps.get(ref.vol)!;
    let found: { share: string; point: string; created: number } | null = null;
    try {
      const v = await this.ns.ctx.volume(ref.vol);
      if (v.shareVol !== undefined) found = { share: (await this.ns.ctx.volume(v.shareVol)).name, point: v.name, created: v.created };
    } catch {
      found = null;
    }
    this.snaps.set(ref.vol, found);
    return found;
  }

  async hosts(node: bigint): Promise<boolean> {
    return (await this.snapshotOf(node)) !== null;
  }

  async extra(node: bigint): Promise<Array<{ name: string; attr: NodeAttr }>> {
    const snap = await this.snapshotOf(node);
    if (!snap) return [];
    const reader = this.catalog.reader(snap.share, snap.point);
    if (!reader) return [];
    return reader
      .images()
      .filter((i) => !i.path.includes('/'))
      .map((i) => {
        const t: Target = { kind: 'top', share: snap.share, point: snap.point, image: i.path, created: snap.created };
        const id = this.idOf(`${snap.share}\0${snap.point}\0${i.path}`, t);
        return { name: i.path + FILES_SUFFIX, attr: this.attrOf(id, t) };
      });
  }

  private dirAttr(ino: bigint, time: number, nlink = 2): NodeAttr {
    return { ino, type: NodeType.Dir, mode: 0o040555, uid: 0, gid: 0, nlink, size: 0, atime: time, mtime: time, ctime: time, generation: 1 };
  }

  private attrOf(id: bigint, t: Target): NodeAttr {
    if (t.kind !== 'row') return this.dirAttr(id, t.created);
    const r = t.row;
    const perm = r.mode & 0o7777 & ~0o222;
    const type = r.type === 'dir' ? NodeType.Dir : r.type === 'symlink' ? NodeType.Symlink : NodeType.File;
    const mode = (type === NodeType.Dir ? 0o040000 : type === NodeType.Symlink ? 0o120000 : 0o100000) | (type === NodeType.Symlink ? 0o777 : perm);
    const size = type === NodeType.Symlink ? Buffer.byteLength(r.target ?? '') : type === NodeType.Dir ? 0 : r.size;
    return { ino: id, type, mode, uid: r.uid, gid: r.gid, nlink: type === NodeType.Dir ? 2 : 1, size, atime: r.mtimeMs, mtime: r.mtimeMs, ctime: r.mtimeMs, generation: 1 };
  }

  async getattr(node: bigint): Promise<NodeAttr> {
    return this.attrOf(node, this.target(node));
  }

  private reader(t: Target) {
    const r = this.catalog.reader(t.share, t.point);
    if (!r) throw vmError('NOT_FOUND', `the catalog of ${t.share} point ${t.point} is gone`);
    return r;
  }

  private rowTarget(t: Target, vol: VolumeRow, row: FileRow): { name: string; attr: NodeAttr } {
    const nt: Target = { kind: 'row', share: t.share, point: t.point, image: t.image, vol, row };
    const id = this.idOf(`${t.share}\0${t.point}\0${t.image}\0${row.id}`, nt);
    return { name: row.name, attr: this.attrOf(id, nt) };
  }

  async readdir(node: bigint): Promise<Array<{ name: string; attr: NodeAttr }>> {
    const t = this.target(node);
    const reader = this.reader(t);
    if (t.kind === 'top') {
      const img = reader.images().find((i) => i.path === t.image);
      if (!img) return [];
      return reader.volumes(img.id).map((vol) => {
        if (vol.root !== null) {
          const root = reader.get(vol.root);
          if (root) return { ...this.rowTarget(t, vol, root), name: vol.name };
        }
        const vt: Target = { kind: 'vol', share: t.share, point: t.point, image: t.image, vol, created: t.created };
        const id = this.idOf(`${t.share}\0${t.point}\0${t.image}\0vol\0${vol.id}`, vt);
        return { name: vol.name, attr: this.attrOf(id, vt) };
      });
    }
    if (t.kind === 'vol' || t.row.type !== 'dir') return [];
    return reader
      .list(t.row.id)
      .filter((r) => r.type !== 'other')
      .map((r) => this.rowTarget(t, t.vol, r));
  }

  async lookup(parent: bigint, name: string): Promise<NodeAttr> {
    const t = this.target(parent);
    if (name === '.') return this.getattr(parent);
    if (t.kind === 'top' || name === '..') {
      const hit = (await this.readdir(parent)).find((e) => e.name === name);
      if (!hit) throw vmError('NOT_FOUND', `${name} is not in ${t.image}${FILES_SUFFIX}`);
      return hit.attr;
    }
    if (t.kind === 'vol' || t.row.type !== 'dir') throw vmError('NOT_FOUND', `${name} is not there`);
    const row = this.reader(t).lookup(t.row.id, name);
    if (!row || row.type === 'other') throw vmError('NOT_FOUND', `${name} is not in the catalog of ${t.share} point ${t.point}`);
    return this.rowTarget(t, t.vol, row).attr;
  }

  async readlink(node: bigint): Promise<string> {
    const t = this.target(node);
    if (t.kind !== 'row' || t.row.type !== 'symlink') throw vmError('INVALID_ARGUMENT', 'not a symbolic link');
    return t.row.target ?? '';
  }

  async read(node: bigint, offset: number, size: number): Promise<Buffer> {
    const t = this.target(node);
    if (t.kind !== 'row' || t.row.type !== 'file') throw vmError('IS_DIRECTORY', 'not a regular file');
    // A file readWith serves: what reaches here is a rare request readWith could not take (one
    // across extents or holes before the image was open), and the next goes to readWith again; a
    // window read ahead would be read for nothing.
    if (t.direct) return this.readRange(t, offset, size);
    const fileSize = t.row.size;
    const end = Math.min(offset + size, fileSize);
    if (offset >= end) return Buffer.alloc(0);
    let st = this.streams.get(node);
    if (st) this.streams.delete(node);
    st ??= { windows: [], last: -1 };
    this.streams.set(node, st);
    while (this.streams.size > MAX_STREAMS) this.streams.delete(this.streams.keys().next().value as bigint);
    const sequential = offset === 0 || (st.last >= 0 && Math.abs(offset - st.last) <= 2 * READ_WINDOW);
    st.last = end;
    const first = Math.floor(offset / READ_WINDOW) * READ_WINDOW;
    if (!sequential || end > first + READ_WINDOW) return this.readRange(t, offset, end - offset);
    const win = (start: number): Window => {
      let w = st.windows.find((x) => x.start === start);
      if (!w) {
        const data = this.readRange(t, start, Math.min(start + READ_WINDOW, fileSize) - start);
        data.catch(() => undefined); // a read ahead nobody waits for must not be an unhandled rejection
        w = { start, end: Math.min(start + READ_WINDOW, fileSize), data };
      }
      return w;
    };
    const cur = win(first);
    // Keep the current window and the next one only: memory stays at 2 windows per file.
    st.windows = cur.end < fileSize ? [cur, win(cur.end)] : [cur];
    let buf: Buffer;
    try {
      buf = await cur.data;
    } catch (err) {
      st.windows = st.windows.filter((x) => x !== cur);
      throw err;
    }
    return buf.subarray(offset - cur.start, end - cur.start);
  }

  /**
   * A read answered without a buffer of our own (CatalogService.readWith): the bytes go from the
   * store's read-ahead window into the FUSE reply. Reads of one extent of a file on a raw disk's
   * partition, the common case, and (the image open) requests across its extents' edges and
   * holes, put together from the same read-ahead; false for the rest, which read() serves (with
   * its windows).
   * Before this, every 1 MiB request cost a zeroed 1 MiB buffer and two copies, and the view's
   * windows (3 in flight per batch of the kernel's 4 requests) ran beside the store's own
   * read-ahead: files.read_vs_extents 0.25-0.28.
   */
  readWith(node: bigint, offset: number, size: number, use: (b: Buffer) => void): boolean | Promise<void> {
    const t = this.target(node);
    if (t.kind !== 'row' || t.row.type !== 'file') throw vmError('IS_DIRECTORY', 'not a regular file');
    const reader = this.reader(t);
    t.content ??= reader.content(t.row.id);
    const r = this.catalog.readWith({ share: t.share, point: t.point, image: t.image, vol: t.vol, row: t.row, reader, content: t.content }, offset, size, use);
    // A sequential reader that goes on through read() (a hole, an extent's edge) starts there.
    if (r !== false) {
      t.direct = true;
      this.streams.delete(node);
    }
    return r;
  }

  /**
   * Where a file's bytes lie in its image's stored version (CatalogService.mapping): the mount's
   * addon answers sequential reads of them from the store's read-ahead windows of the image, on
   * libfuse's threads, as it does the image's own reads (fuse/ll-datawin.ts). Asked at open.
   */
  async mapping(node: bigint): Promise<{ version: FileVersion; pieces: Array<{ at: number; from: number; length: number }> } | undefined> {
    const t = this.target(node);
    if (t.kind !== 'row' || t.row.type !== 'file') return undefined;
    const reader = this.reader(t);
    t.content ??= reader.content(t.row.id);
    return this.catalog.mapping({ share: t.share, point: t.point, image: t.image, vol: t.vol, row: t.row, reader, content: t.content });
  }

  /** Drops the read-ahead of a file once a handle on it is released. */
  release(node: bigint): void {
    this.streams.delete(node);
  }

  private readRange(t: Extract<Target, { kind: 'row' }>, offset: number, size: number): Promise<Buffer> {
    const reader = this.reader(t);
    t.content ??= reader.content(t.row.id);
    return this.catalog.read({ share: t.share, point: t.point, image: t.image, vol: t.vol, row: t.row, reader, content: t.content }, offset, size);
  }
}
