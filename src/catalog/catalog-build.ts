// Builds one restore point's catalog: every disk image in the point's snapshot (or the one
// named) is opened through the namespace (never the mount), its volumes found and each file
// system walked into a CatalogWriter. Reuse of the previous cataloged point, by what the store
// knows changed between the two points' images (changed-ranges.ts: same segments = same bytes):
// a volume none of whose bytes changed is copied from that point's catalog, not walked; an ext
// volume that changed in part is walked reading only its changed metadata (fs/ext-reuse.ts).
//
// Nothing here fails the point: an image that is not a disk, a damaged table, an unknown or
// encrypted file system, a walk that breaks half way, each becomes a note on the image or
// volume, and what could be read stays listed.

import path from 'node:path';
import { vmError } from '../errors.js';
import type { Namespace } from '../namespace/namespace.js';
import type { TreeView } from '../store/tree/reader.js';
import { CatalogReader, CatalogWriter, type VolumeRow } from './catalog-db.js';
import { RangeSet, TreeDiff } from './changed-ranges.js';
import { walkExtEdit } from './fs/ext-edit.js';
import { walkExtReusing } from './fs/ext-reuse.js';
import { cachedSource } from './read-cache.js';
import { findVolumes, openDisk, walkFilesystemBatches, type ByteSource, type Disk, type Volume } from './source.js';

/** Files in a snapshot read as disk images. */
export const IMAGE_NAME = /\.(raw|img|qcow2|vmdk)$/i;

export interface BuildProgress {
  signal?: AbortSignal;
  /** Files cataloged so far. */
  files?(n: number): void;
  log?(line: string): void;
}

export interface BuildResult {
  images: number;
  volumes: number;
  files: number;
  /** Volumes copied whole from the previous point's catalog. */
  reusedVolumes: number;
  /** Volumes walked reading only what changed since the previous point (the rest kept). */
  partlyReusedVolumes: number;
  /** Rows kept from the previous point's catalog in those. */
  keptRows: number;
  notes: string[];
}

/**
 * A namespace file as a ByteSource; `release` closes the handle. With `direct`, reads of a file
 * without uncommitted changes (a snapshot's) go to its stored version's tree without the store's
 * shared read-ahead: a walk's metadata reads hop around, and two that happen to follow each
 * other set off 4 MiB windows that are decoded and thrown away (a catalog build of the sample
 * image decoded 335 MB through them for 10 MB of metadata). Small reads still meet the store's
 * cache of decoded segments.
 */
export async function namespaceSource(ns: Namespace, nsPath: string, mountPath?: string, opts: { direct?: boolean } = {}): Promise<ByteSource & { fh: number; view?: TreeView; release(): Promise<void> }> {
  const fh = await ns.fs.open(nsPath, 0);
  const size = (await ns.fs.fgetattr(fh)).size;
  const file = ns.fs.handle(fh).file;
  const view = opts.direct && !file.hasChanges && file.size === file.base.size ? ns.store.view(file.base) : undefined;
  return {
    fh,
    size,
    ...(view ? { view } : {}),
    path: mountPath === undefined ? undefined : path.join(mountPath, nsPath),
    read: view
      ? (offset, length) => view.read(offset, Math.max(0, Math.min(length, size - offset)))
      : (offset, length) => ns.fs.read(fh, offset, Math.max(0, Math.min(length, size - offset))),
    ...(view ? { readInto: (offset: number, out: Buffer) => view.readInto(offset, out) } : {}),
    release: () => ns.fs.release(fh),
  };
}

/** The image files of a snapshot, relative to its top ('vda.raw', 'disks/sdb.img'). */
export async function imagesOf(ns: Namespace, base: string): Promise<string[]> {
  const out: string[] = [];
  const stack = [''];
  while (stack.length > 0) {
    const rel = stack.pop()!;
    for (const { name } of await ns.fs.readdir(rel ? `${base}/${rel}` : base)) {
      const r = rel ? `${rel}/${name}` : name;
      const a = await ns.fs.getattr(`${base}/${r}`);
      if ((a.mode & 0o170000) === 0o040000) stack.push(r);
      else if ((a.mode & 0o170000) === 0o100000 && IMAGE_NAME.test(name)) out.push(r);
    }
  }
  return out.sort();
}

/** The previous point's copy of an image, opened to compare with (raw disks of one size only). */
interface PrevImage {
  src: Awaited<ReturnType<typeof namespaceSource>>;
  diff: TreeDiff;
  disk: Disk;
  vols?: Volume[];
}

async function openPrevImage(ns: Namespace, file: string, cur: { view?: TreeView; size: number }): Promise<PrevImage | undefined> {
  if (!cur.view) return undefined;
  let src;
  try {
    src = await namespaceSource(ns, file, undefined, { direct: true });
  } catch {
    return undefined; // the previous point's snapshot no longer holds it
  }
  try {
    if (!src.view || src.size !== cur.size) throw new Error('not comparable');
    const disk = await openDisk(cachedSource(src, { chunkBytes: 4096, maxChunks: 1024 }));
    if (disk.format !== 'raw') throw new Error('not raw');
    return { src, disk, diff: await TreeDiff.of(src.view, cur.view) };
  } catch {
    await src.release();
    return undefined;
  }
}

/**
 * Walks ext volume `vol` keeping the rows of the previous point's volume `same` whose bytes did
 * not change (fs/ext-reuse.ts). Undefined when it cannot (an older catalog without `deps`, a
 * moved layout, a walk that failed): the caller walks the volume whole, as if new.
 */
async function walkReusing(
  w: CatalogWriter, vol: Volume, offset: number, same: VolumeRow, older: PrevImage, prevFile: string,
  p: BuildProgress, note: (line: string) => void,
): Promise<{ rows: number; kept: number } | undefined> {
  older.vols ??= await findVolumes(older.disk);
  const prevVol = older.vols.find((v) => v.name === vol.name && v.fs === vol.fs && v.size === vol.size);
  if (!prevVol) return undefined;
  // Copy mode: the previous rows lie in this file already; only the changed ones are touched.
  const rows = w.beginEdit();
  if (rows) {
    const notes: string[] = [];
    try {
      // Counted only for the log line (p.log?.() evaluates its argument only when there is a log).
      const asked: Array<() => number> = [];
      const changedBytes = () => asked.reduce((n, f) => n + f(), 0);
      const r = await walkExtEdit(vol, prevVol, rows, async (wanted) => {
        const c = (await older.diff.refine(wanted.map(([a, b]) => [a + offset, b + offset]))).window(offset, offset + vol.size);
        asked.push(() => askedBytes(c, wanted));
        return c;
      }, {
        replace: (row, e) => w.editRow(row.id, row.parent, row.name, e),
        add: (parent, name, e) => w.editAdd(parent, name, e),
        drop: (ids, under) => w.editDrop(ids, under),
      }, { signal: p.signal, onNote: (n) => notes.push(n) });
      if (!r || notes.length > 0) {
        w.abandonEdit();
        return undefined;
      }
      w.endEdit();
      const n = w.endVolume();
      p.log?.(`${vol.name}: ${n - r.read - r.added} rows kept in place, ${r.read} read again, ${r.added} new, ${r.dropped} gone (${changedBytes()} bytes of its metadata changed)`);
      return { rows: n, kept: n - r.read - r.added };
    } catch (err) {
      w.abandonEdit();
      if (p.signal?.aborted) throw vmError('CANCELLED', 'the catalog job was cancelled');
      note(`${vol.name}: reusing the previous catalog failed (${message(err)}): walked in full`);
      return undefined;
    }
  }
  const prevRows = w.beginReuse(prevFile, same.id);
  if (!prevRows) {
    p.log?.(`${vol.name}: the previous catalog has no block references (an older vmvault wrote it): walked in full`);
    return undefined;
  }
  const notes: string[] = [];
  try {
    let changedBytes = 0;
    const changedIn = async (wanted: Array<[number, number]>) => {
      const c = (await older.diff.refine(wanted.map(([a, b]) => [a + offset, b + offset]))).window(offset, offset + vol.size);
      changedBytes = askedBytes(c, wanted);
      return (o: number, l: number) => c.overlaps(o, l);
    };
    const r = await walkExtReusing(vol, prevVol, prevRows, changedIn, {
      keep: (id) => w.keepRow(id),
      emit: (id, parent, e) => w.addRow(id, parent, e),
      idOfPrev: (id) => w.idOfPrev(id),
      newId: () => w.newId(),
    }, { signal: p.signal, onNote: (n) => notes.push(n) });
    if (!r || notes.length > 0) {
      // A layout that moved, or damage met: a full walk says it all, in the usual words.
      w.abandonReuse();
      return undefined;
    }
    w.endReuse();
    p.log?.(`${vol.name}: ${r.kept} rows kept from the previous point, ${r.read} read again (${changedBytes} bytes of its metadata changed)`);
    return { rows: w.endVolume(), kept: r.kept };
  } catch (err) {
    w.abandonReuse();
    if (p.signal?.aborted) throw vmError('CANCELLED', 'the catalog job was cancelled');
    note(`${vol.name}: reusing the previous catalog failed (${message(err)}): walked in full`);
    return undefined;
  }
}

/** How many bytes of the ranges asked about changed (refine() answers only those exactly). */
function askedBytes(c: RangeSet, wanted: Array<[number, number]>): number {
  let n = 0;
  for (const [a, b] of RangeSet.of(wanted).within(0, Number.MAX_SAFE_INTEGER)) for (const [x, y] of c.within(a, b)) n += y - x;
  return n;
}

function message(err: unknown): string {
  return (err as Error)?.message ?? String(err);
}

export async function buildCatalog(
  ns: Namespace,
  target: { share: string; point: string; images?: string[]; file: string; previous?: { file: string; point: string }; mountPath?: string; meta?: Record<string, string> },
  p: BuildProgress = {},
): Promise<BuildResult> {
  const base = `/${target.share}/.snapshots/${target.point}`;
  const images = target.images ?? (await imagesOf(ns, base));
  const result: BuildResult = { images: images.length, volumes: 0, files: 0, reusedVolumes: 0, partlyReusedVolumes: 0, keptRows: 0, notes: [] };
  let prev: CatalogReader | undefined;
  if (target.previous) {
    try {
      prev = new CatalogReader(target.previous.file);
    } catch {
      prev = undefined; // no reuse: everything is walked
    }
  }
  // With a previous catalog the file starts as its copy (CatalogWriter's copy mode): the rows
  // of reused volumes stay in place with their indexes, only what changed is deleted and written.
  let w: CatalogWriter;
  try {
    w = new CatalogWriter(target.file, { share: target.share, point: target.point, ...(target.meta ?? {}) }, prev ? { from: target.previous!.file } : {});
  } catch (err) {
    prev?.close();
    throw err;
  }
  try {
    if (prev) w.rememberPrevious(prev.volumes());
    for (const image of images) {
      if (p.signal?.aborted) throw vmError('CANCELLED', 'the catalog job was cancelled');
      const note = (line: string) => {
        result.notes.push(`${image}: ${line}`);
        p.log?.(`${image}: ${line}`);
      };
      let src: Awaited<ReturnType<typeof namespaceSource>>;
      try {
        src = await namespaceSource(ns, `${base}/${image}`, target.mountPath, { direct: true });
      } catch (err) {
        w.addImage(image, 0, null, message(err));
        note(message(err));
        continue;
      }
      try {
        let disk;
        try {
          // 4 KiB chunks: the walk wants scattered blocks (10.6 MiB of the sample's 2 GiB); larger
          // chunks only decode more segments (256 KiB chunks read 101 MiB for it).
          disk = await openDisk(cachedSource(src, { chunkBytes: 4096, maxChunks: 4096 }));
        } catch (err) {
          w.addImage(image, src.size, null, message(err));
          note(message(err));
          continue;
        }
        const imageId = w.addImage(image, src.size, disk.format);
        let vols: Volume[];
        try {
          vols = await findVolumes(disk);
        } catch (err) {
          w.noteImage(imageId, message(err));
          note(message(err));
          continue;
        }
        const prevImage = prev?.images().find((i) => i.path === image);
        const prevVols = prevImage ? prev!.volumes(prevImage.id) : [];
        // Reuse needs the previous point's copy of a raw disk of the same size to compare with.
        let older: PrevImage | undefined;
        if (disk.format === 'raw' && prevImage?.format === 'raw' && prevImage.size === src.size && prevVols.length > 0) {
          older = await openPrevImage(ns, `/${target.share}/.snapshots/${target.previous!.point}/${image}`, src);
        }
        try {
          for (const vol of vols) {
            result.volumes++;
            const offset = vol.extents?.length === 1 ? vol.extents[0].diskOffset : undefined;
            const same: VolumeRow | undefined = older && offset !== undefined && !vol.note
              ? prevVols.find((v) => v.name === vol.name && v.fs === vol.fs && v.offset === offset && v.size === vol.size && v.note === null && v.root !== null)
              : undefined;
            const whole = same !== undefined && older!.diff.coarse().window(offset!, offset! + vol.size).count === 0;
            // A volume to be reused takes over the previous one's id and rows in the copy.
            const claim = same && (whole || vol.fs === 'ext') && w.carries(same.id) ? same.id : undefined;
            const volId = w.addVolume(imageId, { name: vol.name, fs: vol.fs, note: vol.note, offset, size: vol.size }, claim);
            if (vol.note) note(`${vol.name}: ${vol.note}`);
            if (same && whole) {
              result.files += w.copyVolume(volId, target.previous!.file, same.id, target.previous!.point);
              result.reusedVolumes++;
              p.files?.(result.files);
              continue;
            }
            if (same && vol.fs === 'ext') {
              const r = await walkReusing(w, vol, offset!, same, older!, target.previous!.file, p, note);
              if (r) {
                result.files += r.rows;
                result.keptRows += r.kept;
                result.partlyReusedVolumes++;
                p.files?.(result.files);
                continue;
              }
            }
            const before = result.files;
            // Claimed but walked whole after all: its carried rows go first.
            if (claim !== undefined) w.dropCarried(volId);
            try {
              const notes: string[] = [];
              const onNote = (n: string) => {
                if (notes.length < 20) notes.push(n);
                note(n);
              };
              for await (const batch of walkFilesystemBatches(vol, { signal: p.signal, onNote })) {
                for (const e of batch) w.add(e);
                const was = result.files;
                result.files += batch.length;
                if (Math.floor(result.files / 2000) > Math.floor(was / 2000)) p.files?.(result.files);
              }
              if (notes.length > 0) w.noteVolume(volId, notes.join('; '));
            } catch (err) {
              if (p.signal?.aborted) throw vmError('CANCELLED', 'the catalog job was cancelled');
              const m = `${vol.name}: ${message(err)} (after ${result.files - before} entries)`;
              w.noteVolume(volId, message(err));
              note(m);
            }
            // Rows, not entries: directories the walker never yielded ('/') are rows too.
            result.files = before + w.endVolume();
            p.files?.(result.files);
          }
        } finally {
          await older?.src.release();
        }
      } finally {
        await src.release();
      }
    }
    await w.finish({ built: new Date().toISOString(), files: String(result.files) });
    return result;
  } catch (err) {
    w.abort();
    throw err;
  } finally {
    prev?.close();
  }
}
