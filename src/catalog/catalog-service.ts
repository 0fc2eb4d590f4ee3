// The catalog of every restore point: where the per-point databases live
// (`<data>/catalog/<share>/<point>.db`, FORMAT.md), building them, their status, search across
// points, and reading a cataloged file's bytes by its extents through the namespace.
//
// Builds of one share run one at a time (the reuse of the previous point needs it finished).
// Readers are cached (bounded); a rebuilt catalog is a new file, noticed by its inode.

import fs from 'node:fs';
import path from 'node:path';
import { vmError } from '../errors.js';
import { mkdirDurable } from '../files/durable.js';
import { Mutex } from '../kv/mutex.js';
import type { FileVersion, Namespace } from '../namespace/namespace.js';
import { validateName } from '../namespace/names.js';
import { buildCatalog, namespaceSource, type BuildProgress, type BuildResult } from './catalog-build.js';
import { CatalogReader, type FileRow, type VolumeRow } from './catalog-db.js';
import type { Extent } from './extents-codec.js';
import { cachedSource } from './read-cache.js';
import { findVolumes, openDisk, readFileRange, type Disk, type Volume } from './source.js';

export interface CatalogStatus {
  share: string;
  point: string;
  /** ISO 8601: when the point was taken. */
  created: string;
  state: 'cataloged' | 'failed' | 'none';
  files?: number;
  images?: Array<{ path: string; format: string | null; note: string | null; volumes: Array<{ name: string; fs: string; files: number; note: string | null; reusedFrom: string | null }> }>;
  /** Why the last build failed. */
  error?: string;
  built?: string;
}

export interface FindQuery {
  pattern: string;
  shares: string[];
  /** Only points taken at or after this time (ms since epoch). */
  sinceMs?: number;
  pathPrefix?: string;
  minSize?: number;
  maxSize?: number;
  /** At most this many results (default 1000). */
  limit?: number;
}

export interface FindHit {
  share: string;
  point: string;
  image: string;
  volume: string;
  path: string;
  type: string;
  size: number;
  /** ISO 8601. */
  mtime: string;
}

export interface FileVersionHit {
  share: string;
  point: string;
  image: string;
  volume: string;
  path: string;
  size: number;
  mtime: string;
  /** What changed since the previous point that held the file: 'new', 'size', 'mtime', 'content' (extents), or null (unchanged). */
  change: string | null;
}

/** A cataloged file located in a point. */
export interface Located {
  share: string;
  point: string;
  image: string;
  vol: VolumeRow;
  row: FileRow;
  reader: CatalogReader;
  path: string;
}

interface OpenImage {
  release(): Promise<void>;
  /** The namespace handle the image is read through, and its format ('raw': disk bytes = file bytes). */
  fh: number;
  format: Disk['format'];
  vols: Volume[];
  users: number;
  idle?: NodeJS.Timeout;
}

const MAX_READERS = 128;
const MAX_IMAGES = 16;

export class CatalogService {
  private readonly readers = new Map<string, { ino: number; reader: CatalogReader }>();
  private readonly images = new Map<string, Promise<OpenImage>>();
  /** The images of `images` whose opening has finished: readWith serves from them without a hop. */
  private readonly opened = new Map<string, OpenImage>();
  private readonly locks = new Map<string, Mutex>();
  readonly root: string;

  constructor(
    private readonly ns: Namespace,
    private readonly opts: { dataDir: string; mountPath?: () => string | undefined; log?: (line: string) => void },
  ) {
    this.root = path.join(opts.dataDir, 'catalog');
  }

  fileOf(share: string, point: string): string {
    return path.join(this.root, share, `${point}.db`);
  }

  private errorFileOf(share: string, point: string): string {
    return path.join(this.root, share, `${point}.error.json`);
  }

  /** Builds (or rebuilds) the catalog of one point; `images` limits it to those files of the snapshot. */
  async build(share: string, point: string, p: BuildProgress = {}, images?: string[]): Promise<BuildResult> {
    validateName('share', share);
    validateName('snapshot', point);
    const snaps = await this.ns.snapshots.list(share);
    const me = snaps.find((s) => s.name === point);
    if (!me) throw vmError('NOT_FOUND', `share ${share} has no restore point ${point}`);
    let lock = this.locks.get(share);
    if (!lock) this.locks.set(share, (lock = new Mutex()));
    return lock.run(async () => {
      // A catalog reported built must survive a power cut, its share's directory included
      // (CatalogWriter.finish syncs the catalog's own name).
      await mkdirDurable(path.join(this.root, share));
      const earlier = snaps.filter((s) => s.created < me.created || (s.created === me.created && s.name < point)).reverse();
      const prev = earlier.find((s) => fs.existsSync(this.fileOf(share, s.name)));
      try {
        const r = await buildCatalog(
          this.ns,
          {
            share,
            point,
            images,
            file: this.fileOf(share, point),
            previous: prev && { file: this.fileOf(share, prev.name), point: prev.name },
            mountPath: this.opts.mountPath?.(),
            meta: { created: me.created },
          },
          p,
        );
        fs.rmSync(this.errorFileOf(share, point), { force: true });
        this.dropReader(share, point);
        return r;
      } catch (err) {
        if ((err as { code?: string }).code !== 'CANCELLED') {
          fs.writeFileSync(this.errorFileOf(share, point), JSON.stringify({ error: (err as Error).message, at: new Date().toISOString() }) + '\n');
        }
        throw err;
      }
    });
  }

  /**
   * The points of `share` with neither a catalog nor a recorded failed build, oldest first (the
   * order a catch-up builds them in, so each can reuse the one before).
   */
  async uncataloged(share: string): Promise<string[]> {
    const snaps = await this.ns.snapshots.list(share);
    return snaps.filter((s) => !fs.existsSync(this.fileOf(share, s.name)) && !fs.existsSync(this.errorFileOf(share, s.name))).map((s) => s.name);
  }

  private dropReader(share: string, point: string): void {
    const key = this.fileOf(share, point);
    this.readers.get(key)?.reader.close();
    this.readers.delete(key);
  }

  /** The reader of a point's catalog, or undefined when it has none. */
  reader(share: string, point: string): CatalogReader | undefined {
    const file = this.fileOf(share, point);
    let st: fs.Stats;
    try {
      st = fs.statSync(file);
    } catch {
      return undefined;
    }
    const had = this.readers.get(file);
    if (had && had.ino === st.ino) {
      this.readers.delete(file);
      this.readers.set(file, had);
      return had.reader;
    }
    had?.reader.close();
    const reader = new CatalogReader(file);
    this.readers.set(file, { ino: st.ino, reader });
    if (this.readers.size > MAX_READERS) {
      const [k, v] = this.readers.entries().next().value as [string, { reader: CatalogReader }];
      v.reader.close();
      this.readers.delete(k);
    }
    return reader;
  }

  async status(shares: string[]): Promise<CatalogStatus[]> {
    const out: CatalogStatus[] = [];
    for (const share of shares) {
      for (const s of await this.ns.snapshots.list(share)) {
        const st: CatalogStatus = { share, point: s.name, created: s.created, state: 'none' };
        const r = this.reader(share, s.name);
        if (r) {
          const meta = r.meta();
          st.state = 'cataloged';
          st.built = meta.built;
          st.files = Number(meta.files ?? 0);
          const vols = r.volumes();
          st.images = r.images().map((i) => ({
            path: i.path,
            format: i.format,
            note: i.note,
            volumes: vols.filter((v) => v.image === i.id).map((v) => ({ name: v.name, fs: v.fs, files: v.files, note: v.note, reusedFrom: v.reusedFrom })),
          }));
        }
        try {
          const e = JSON.parse(fs.readFileSync(this.errorFileOf(share, s.name), 'utf8')) as { error: string };
          if (!r) st.state = 'failed';
          st.error = e.error;
        } catch {
          // no failure recorded
        }
        out.push(st);
      }
    }
    return out;
  }

  /** The points of `share` that have a catalog, oldest first. */
  private async cataloged(share: string, sinceMs?: number): Promise<Array<{ point: string; created: string; reader: CatalogReader }>> {
    const out: Array<{ point: string; created: string; reader: CatalogReader }> = [];
    let snaps;
    try {
      snaps = await this.ns.snapshots.list(share);
    } catch {
      return out;
    }
    for (const s of snaps) {
      if (sinceMs !== undefined && Date.parse(s.created) < sinceMs) continue;
      const reader = this.reader(share, s.name);
      if (reader) out.push({ point: s.name, created: s.created, reader });
    }
    return out;
  }

  async find(q: FindQuery): Promise<FindHit[]> {
    const limit = q.limit ?? 1000;
    const out: FindHit[] = [];
    const prefix = q.pathPrefix?.replace(/\/+$/, '');
    for (const share of q.shares) {
      for (const { point, reader } of await this.cataloged(share, q.sinceMs)) {
        const vols = new Map(reader.volumes().map((v) => [v.id, v]));
        const imgs = new Map(reader.images().map((i) => [i.id, i.path]));
        // The prefix is applied after the name match: more rows than asked are read then.
        for (const row of reader.findByName(q.pattern, { minSize: q.minSize, maxSize: q.maxSize, limit: prefix ? limit * 20 : limit - out.length })) {
          const p = reader.pathOf(row);
          if (prefix && !(p === prefix || p.startsWith(prefix + '/'))) continue;
          const v = vols.get(row.volume)!;
          out.push({ share, point, image: imgs.get(v.image) ?? '', volume: v.name, path: p, type: row.type, size: row.size, mtime: new Date(row.mtimeMs).toISOString() });
          if (out.length >= limit) return out;
        }
      }
    }
    return out;
  }

  /** Every point of `share` holding `file` (an absolute path in a guest volume), with what changed. */
  async versions(share: string, file: string): Promise<FileVersionHit[]> {
    const out: FileVersionHit[] = [];
    const last = new Map<string, { size: number; mtime: number; ext: string }>();
    for (const { point, reader } of await this.cataloged(share)) {
      const imgs = new Map(reader.images().map((i) => [i.id, i.path]));
      for (const v of reader.volumes()) {
        const row = reader.resolve(v, file);
        if (!row || row.type === 'dir') continue;
        const key = `${imgs.get(v.image)}\0${v.name}`;
        const ext = JSON.stringify(reader.content(row.id));
        const before = last.get(key);
        const change = !before ? 'new' : before.size !== row.size ? 'size' : before.mtime !== row.mtimeMs ? 'mtime' : before.ext !== ext ? 'content' : null;
        last.set(key, { size: row.size, mtime: row.mtimeMs, ext });
        out.push({ share, point, image: imgs.get(v.image) ?? '', volume: v.name, path: reader.pathOf(row), size: row.size, mtime: new Date(row.mtimeMs).toISOString(), change });
      }
    }
    return out;
  }

  /** Finds `file` in a point: the first volume (images and volumes in catalog order) that holds it, or the named one. */
  locate(share: string, point: string, file: string, where: { image?: string; volume?: string } = {}): Located {
    validateName('share', share);
    validateName('snapshot', point);
    if (typeof file !== 'string' || !file.startsWith('/') || file.includes('\0')) throw vmError('INVALID_ARGUMENT', `the path must be absolute (start with /), not ${JSON.stringify(file)}`);
    const reader = this.reader(share, point);
    if (!reader) throw vmError('NOT_FOUND', `restore point ${point} of share ${share} has no catalog; run: vmvault catalog build`);
    const imgs = reader.images();
    for (const v of reader.volumes()) {
      const image = imgs.find((i) => i.id === v.image)!.path;
      if (where.image !== undefined && where.image !== image) continue;
      if (where.volume !== undefined && where.volume !== v.name) continue;
      const row = reader.resolve(v, file);
      if (row) return { share, point, image, vol: v, row, reader, path: reader.pathOf(row) };
    }
    throw vmError('NOT_FOUND', `${file} is not in the catalog of ${share} point ${point}`);
  }

  private async openImage(share: string, point: string, image: string): Promise<OpenImage> {
    const key = `${share}\0${point}\0${image}`;
    let p = this.images.get(key);
    if (p) {
      this.images.delete(key);
      this.images.set(key, p);
    } else {
      p = (async () => {
        const src = await namespaceSource(this.ns, `/${share}/.snapshots/${point}/${image}`);
        try {
          // File reads (FUSE's 128 KiB, the restore's 1 MiB) go straight to the namespace, whose
          // read-ahead follows a sequential reader; the cache serves the readers' small metadata reads.
          const disk = await openDisk(cachedSource(src, { maxChunks: 16, directBytes: 32 * 1024 }));
          return { release: () => src.release(), fh: src.fh, format: disk.format, vols: await findVolumes(disk), users: 0 };
        } catch (err) {
          await src.release();
          throw err;
        }
      })();
      p.then((o) => {
        if (this.images.get(key) === p) this.opened.set(key, o);
      }, () => this.images.delete(key));
      this.images.set(key, p);
      while (this.images.size > MAX_IMAGES) {
        const [k, old] = this.images.entries().next().value as [string, Promise<OpenImage>];
        this.images.delete(k);
        this.opened.delete(k);
        void old.then((o) => this.retire(o), () => undefined);
      }
    }
    return p;
  }

  private retire(o: OpenImage): void {
    // Reads in flight finish first: the handle is closed once nobody uses it.
    if (o.users > 0) o.idle = setTimeout(() => this.retire(o), 1000).unref();
    else void o.release().catch(() => undefined);
  }

  /** Reads [offset, offset + length) of a located file by its recorded extents, through the namespace. */
  async read(loc: Pick<Located, 'share' | 'point' | 'image' | 'vol' | 'row' | 'reader'> & { content?: { extents?: Extent[]; inline?: Buffer } }, offset: number, length: number): Promise<Buffer> {
    if (loc.row.type !== 'file') throw vmError('INVALID_ARGUMENT', `${loc.reader.pathOf(loc.row)} is not a regular file`);
    const img = await this.openImage(loc.share, loc.point, loc.image);
    const vol = img.vols.find((v) => v.name === loc.vol.name);
    if (!vol) throw vmError('NOT_FOUND', `volume ${loc.vol.name} is no longer found in ${loc.image}`);
    img.users++;
    try {
      const entry = { path: loc.row.name, type: 'file' as const, size: loc.row.size, mtimeMs: 0, mode: 0, uid: 0, gid: 0, inode: loc.row.inode, ...(loc.content ?? loc.reader.content(loc.row.id)) };
      return await readFileRange(vol, entry, offset, length);
    } finally {
      img.users--;
    }
  }

  /**
   * Hands `use` bytes [offset, offset + length) of a located file (clipped to its size) straight
   * from the store's read-ahead window, without a buffer of our own or a copy (a view valid only
   * during the call, as SegmentStore.readWith; a FUSE reply copies it into the kernel at once).
   * Serves a range that lies in one extent of a file on a raw disk's partition (the bytes are the
   * image file's, at the partition's offset): the common case of a sequential reader. A range
   * across extents or holes of such a file, once its image is open, is put together in a buffer
   * of its own from the same read-ahead (spanning): a sequential reader meets one at every extent
   * edge, and read() there read the parts beside the read-ahead and made the reader wait on it.
   * False, without calling `use`, for anything else (inline bytes, qcow2/VMDK, Sleuth Kit files,
   * an image not open yet): read() serves those. True when `use` ran at once, else a promise
   * that resolves once it ran.
   */
  readWith(loc: Pick<Located, 'share' | 'point' | 'image' | 'vol' | 'row' | 'reader'> & { content?: { extents?: Extent[]; inline?: Buffer } }, offset: number, length: number, use: (b: Buffer) => void): boolean | Promise<void> {
    if (loc.row.type !== 'file') throw vmError('INVALID_ARGUMENT', `${loc.reader.pathOf(loc.row)} is not a regular file`);
    const content = loc.content ?? loc.reader.content(loc.row.id);
    if (content.inline || !content.extents) return false;
    const end = Math.min(loc.row.size, offset + length);
    if (offset >= end) {
      use(Buffer.alloc(0));
      return true;
    }
    const x = extentAt(content.extents, offset);
    const key = `${loc.share}\0${loc.point}\0${loc.image}`;
    const img = this.opened.get(key);
    if (!x || end > x.logical + x.length) return img ? this.spanning(img, loc.vol.name, content.extents, offset, end, use) : false;
    if (img) return this.serveWith(img, loc.vol.name, x.physical + (offset - x.logical), end - offset, use);
    return this.openImage(loc.share, loc.point, loc.image).then(async (o) => {
      const r = this.serveWith(o, loc.vol.name, x.physical + (offset - x.logical), end - offset, use);
      if (r === false) use(await this.read({ ...loc, content }, offset, end - offset));
      else if (r !== true) await r;
    });
  }

  /**
   * Where a located file's bytes lie in its image's stored version, piece by piece (file offset
   * `at` is the version's byte `from`, for `length` bytes), so the mount's addon can answer reads
   * of them from the store's read-ahead windows of that version (fuse/ll-datawin.ts): the ranges
   * readWith serves, the file's extents on a raw disk's partition, clipped to the file's size and
   * the volume. Opens the image (as the first read would). Undefined for anything readWith does
   * not serve, and unless the image's handle is a snapshot's file read as its version: that
   * version's bytes never change, so the mapping holds for as long as the file's row does.
   */
  async mapping(loc: Pick<Located, 'share' | 'point' | 'image' | 'vol' | 'row' | 'reader'> & { content?: { extents?: Extent[]; inline?: Buffer } }): Promise<{ version: FileVersion; pieces: Array<{ at: number; from: number; length: number }> } | undefined> {
    if (loc.row.type !== 'file') return undefined;
    const content = loc.content ?? loc.reader.content(loc.row.id);
    if (content.inline || !content.extents || content.extents.length === 0) return undefined;
    const img = await this.openImage(loc.share, loc.point, loc.image);
    if (img.format !== 'raw') return undefined;
    const vol = img.vols.find((v) => v.name === loc.vol.name);
    if (!vol || vol.extents?.length !== 1) return undefined;
    let h;
    try {
      h = this.ns.fs.handle(img.fh);
    } catch {
      return undefined; // retired meanwhile
    }
    if (!h.immutable || !h.file.clean) return undefined;
    const disk = vol.extents[0].diskOffset;
    const pieces: Array<{ at: number; from: number; length: number }> = [];
    for (const x of content.extents) {
      const length = Math.min(x.length, loc.row.size - x.logical, vol.size - x.physical);
      if (length > 0) pieces.push({ at: x.logical, from: disk + x.physical, length });
    }
    pieces.sort((a, b) => a.from - b.from);
    return { version: h.file.base, pieces };
  }

  /**
   * File bytes [offset, end) across extents or holes (zeros) to `use`, copied into one buffer out
   * of the image's read-ahead as serveWith reads them; false, with nothing read, where serveWith
   * could not serve every part.
   */
  private spanning(img: OpenImage, volName: string, extents: Extent[], offset: number, end: number, use: (b: Buffer) => void): boolean | Promise<void> {
    const parts: Array<{ at: number; pos: number; length: number }> = [];
    for (const x of extents) {
      const lo = Math.max(offset, x.logical);
      const hi = Math.min(end, x.logical + x.length);
      if (lo < hi) parts.push({ at: x.physical + (lo - x.logical), pos: lo - offset, length: hi - lo });
    }
    const vol = img.vols.find((v) => v.name === volName);
    if (img.format !== 'raw' || !vol || vol.extents?.length !== 1 || parts.some((p) => p.at + p.length > vol.size)) return false;
    // Holes read as zeros: only what no part covers is cleared.
    const out = Buffer.allocUnsafe(end - offset);
    let at = 0;
    for (const p of [...parts].sort((a, b) => a.pos - b.pos)) {
      if (p.pos > at) out.fill(0, at, p.pos);
      at = Math.max(at, p.pos + p.length);
    }
    if (at < out.length) out.fill(0, at);
    const waits: Promise<void>[] = [];
    for (const p of parts) {
      const r = this.serveWith(img, volName, p.at, p.length, (b) => void b.copy(out, p.pos));
      if (r === true) continue;
      if (r !== false) {
        waits.push(r);
        continue;
      }
      // Not served from the read-ahead (the handle's bytes not its committed version: a snapshot's
      // never are, so only in theory): read as read() would.
      img.users++;
      waits.push(this.ns.fs.read(img.fh, vol.extents[0].diskOffset + p.at, p.length).then((b) => void b.copy(out, p.pos)).finally(() => img.users--));
    }
    if (waits.length === 0) {
      use(out);
      return true;
    }
    return Promise.all(waits).then(() => use(out));
  }

  /** Bytes [at, at + length) of volume `volName` of an open image to `use`, if the image is raw and the volume one range of it. */
  private serveWith(img: OpenImage, volName: string, at: number, length: number, use: (b: Buffer) => void): boolean | Promise<void> {
    if (img.format !== 'raw') return false;
    const vol = img.vols.find((v) => v.name === volName);
    // Past the volume's end: read() says so with its error.
    if (!vol || vol.extents?.length !== 1 || at + length > vol.size) return false;
    img.users++;
    let r: boolean | Promise<void>;
    try {
      r = this.ns.fs.readWith(img.fh, vol.extents[0].diskOffset + at, length, use);
    } catch (err) {
      img.users--;
      throw err;
    }
    if (typeof r === 'boolean') {
      img.users--;
      return r;
    }
    return r.finally(() => img.users--);
  }

  async close(): Promise<void> {
    for (const { reader } of this.readers.values()) reader.close();
    this.readers.clear();
    for (const p of this.images.values()) await p.then((o) => o.release(), () => undefined);
    this.images.clear();
    this.opened.clear();
  }
}

/** The extent holding logical byte `at` (extents are in logical order, FORMAT.md), or undefined (a hole). */
function extentAt(xs: Extent[], at: number): Extent | undefined {
  let lo = 0;
  let hi = xs.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const x = xs[mid];
    if (at < x.logical) hi = mid - 1;
    else if (at >= x.logical + x.length) lo = mid + 1;
    else return x;
  }
  return undefined;
}
