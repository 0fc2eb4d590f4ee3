// Builds one restore point's catalog: every disk image in the point's snapshot (or the one
// named) is opened through the namespace (never the mount), its volumes found and each file
// system walked into a CatalogWriter. A volume whose bytes equal a volume of the previous
// cataloged point (same segment-tree entries over its range: namespace/content-id.ts) is
// copied from that point's catalog instead of walked again.
//
// Nothing here fails the point: an image that is not a disk, a damaged table, an unknown or
// encrypted file system, a walk that breaks half way, each becomes a note on the image or
// volume, and what could be read stays listed.

import { createHash } from 'node:crypto';
import path from 'node:path';
import { vmError } from '../errors.js';
import { rangeIdentity } from '../namespace/content-id.js';
import type { Namespace } from '../namespace/namespace.js';
import { CatalogReader, CatalogWriter } from './catalog-db.js';
import { cachedSource } from './read-cache.js';
import { findVolumes, openDisk, walkFilesystem, type ByteSource, type Volume } from './source.js';

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
  reusedVolumes: number;
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
export async function namespaceSource(ns: Namespace, nsPath: string, mountPath?: string, opts: { direct?: boolean } = {}): Promise<ByteSource & { fh: number; release(): Promise<void> }> {
  const fh = await ns.fs.open(nsPath, 0);
  const size = (await ns.fs.fgetattr(fh)).size;
  const file = ns.fs.handle(fh).file;
  const view = opts.direct && !file.hasChanges && file.size === file.base.size ? ns.store.view(file.base) : undefined;
  return {
    fh,
    size,
    path: mountPath === undefined ? undefined : path.join(mountPath, nsPath),
    read: view
      ? (offset, length) => view.read(offset, Math.max(0, Math.min(length, size - offset)))
      : (offset, length) => ns.fs.read(fh, offset, Math.max(0, Math.min(length, size - offset))),
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

/**
 * The identity of a volume of a raw disk: its byte ranges' identities in the image file
 * (namespace/content-id.ts). Undefined when the file has uncommitted changes.
 */
async function volumeIdentity(ns: Namespace, fh: number, vol: Volume): Promise<string | undefined> {
  if (!vol.extents || vol.extents.length === 0) return undefined;
  const parts: string[] = [];
  for (const x of vol.extents) {
    const id = await rangeIdentity(ns, fh, x.diskOffset, x.diskOffset + x.length);
    if (id === undefined) return undefined;
    parts.push(id);
  }
  return parts.length === 1 ? parts[0] : createHash('sha256').update(parts.join(',')).digest('hex');
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
  const w = new CatalogWriter(target.file, { share: target.share, point: target.point, ...(target.meta ?? {}) });
  const result: BuildResult = { images: images.length, volumes: 0, files: 0, reusedVolumes: 0, notes: [] };
  let prev: CatalogReader | undefined;
  try {
    if (target.previous) {
      try {
        prev = new CatalogReader(target.previous.file);
      } catch {
        prev = undefined; // no reuse: everything is walked
      }
    }
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
        for (const vol of vols) {
          result.volumes++;
          const identity = vol.id ?? (disk.format === 'raw' ? await volumeIdentity(ns, src.fh, vol) : undefined);
          const offset = vol.extents?.length === 1 ? vol.extents[0].diskOffset : undefined;
          const volId = w.addVolume(imageId, { name: vol.name, fs: vol.fs, note: vol.note, offset, size: vol.size, identity });
          if (vol.note) note(`${vol.name}: ${vol.note}`);
          const same = identity === undefined ? undefined : prevVols.find((v) => v.name === vol.name && v.identity === identity && v.note === null && v.root !== null);
          if (same) {
            result.files += w.copyVolume(volId, target.previous!.file, same.id, target.previous!.point);
            result.reusedVolumes++;
            p.files?.(result.files);
            continue;
          }
          const before = result.files;
          try {
            const notes: string[] = [];
            const onNote = (n: string) => {
              if (notes.length < 20) notes.push(n);
              note(n);
            };
            for await (const e of walkFilesystem(vol, { signal: p.signal, onNote })) {
              w.add(e);
              if (++result.files % 2000 === 0) p.files?.(result.files);
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
        await src.release();
      }
    }
    w.finish({ built: new Date().toISOString(), files: String(result.files) });
    return result;
  } catch (err) {
    w.abort();
    throw err;
  } finally {
    prev?.close();
  }
}
