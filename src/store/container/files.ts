// Container files on disk: where they live, a bounded cache of read descriptors (shared with
// the codec workers, so a descriptor is closed only when no read is using it), and parsing
// of sealed tables and of record streams for recovery and index rebuilds.

import fsp from 'node:fs/promises';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { fromSystemError, vmError } from '../../errors.js';
import {
  CONTAINER_MAGIC,
  CONTAINER_VERSION,
  containerRelPath,
  decodeHeader,
  decodeTable,
  decodeTrailer,
  HEADER_BYTES,
  readRecordHeader,
  RECORD_HEADER_BYTES,
  type RecordMeta,
  TABLE_ENTRY_BYTES,
  TRAILER_BYTES,
} from './format.js';
import { closeFile, fileSize, openFile, readAt, readFull, type StoreFile } from './file-io.js';
import { containerName } from '../codec/codec.js';

const MAX_OPEN_READERS = 256;

interface Reader {
  file: Promise<StoreFile>;
  users: number;
  lastUse: number;
}

export class ContainerFiles {
  readonly dir: string;
  private readonly readers = new Map<number, Reader>();
  private readonly knownShards = new Set<string>();
  private useClock = 0;

  constructor(dir: string) {
    this.dir = dir;
  }

  pathOf(id: number): string {
    return path.join(this.dir, containerRelPath(id));
  }

  /**
   * Makes sure the shard directory of a container exists. Returns the directories whose
   * entries changed (to be fsynced before anything in them is referenced).
   */
  async prepare(id: number): Promise<string[]> {
    const shard = path.dirname(this.pathOf(id));
    if (this.knownShards.has(shard)) return [shard];
    let first: string | undefined;
    try {
      first = await fsp.mkdir(shard, { recursive: true });
    } catch (err) {
      throw fromSystemError(err, `creating ${shard}`);
    }
    this.knownShards.add(shard);
    if (first === undefined) return [shard];
    // The shard's entry is in containers/, and containers/ may be new too (its entry in <data>).
    return [...new Set([shard, path.dirname(shard), path.dirname(first)])];
  }

  /**
   * A descriptor for reading container `id`; call release() with the same id when done. The
   * descriptor stays open while any user holds it (workers read through it).
   */
  async acquire(id: number): Promise<number> {
    let r = this.readers.get(id);
    if (!r) {
      r = { file: openFile(this.pathOf(id), 'r').then((f) => checkHeader(f, id)), users: 0, lastUse: 0 };
      this.readers.set(id, r);
    }
    r.users++;
    r.lastUse = ++this.useClock;
    // Only after counting this user: a new reader (no users yet, the oldest use) would be the
    // first one evicted, and its descriptor closed under the caller (EBADF in the workers).
    if (this.readers.size > MAX_OPEN_READERS) this.evictIdle();
    try {
      return (await r.file).fd;
    } catch (err) {
      r.users--;
      if (this.readers.get(id) === r) this.readers.delete(id);
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw vmError('MISSING_SEGMENT', `container ${containerName(id)} is missing from ${this.dir}`, { container: id });
      }
      throw fromSystemError(err, `opening container ${containerName(id)}`);
    }
  }

  release(id: number): void {
    const r = this.readers.get(id);
    if (r) r.users--;
  }

  private evictIdle(): void {
    const idle = [...this.readers.entries()].filter(([, r]) => r.users === 0).sort((a, b) => a[1].lastUse - b[1].lastUse);
    for (const [id, r] of idle.slice(0, Math.max(1, idle.length >> 1))) {
      this.readers.delete(id);
      r.file.then(closeFile).catch(() => {});
    }
  }

  /** Drops the cached descriptor of a container (after it was deleted or rewritten). */
  forget(id: number): void {
    const r = this.readers.get(id);
    if (r && r.users === 0) {
      this.readers.delete(id);
      r.file.then(closeFile).catch(() => {});
    }
  }

  async closeAll(): Promise<void> {
    const all = [...this.readers.values()];
    this.readers.clear();
    await Promise.all(all.map((r) => r.file.then(closeFile).catch(() => {})));
  }

  /** The record table of a sealed container (its metadata section). */
  async readTable(id: number): Promise<RecordMeta[]> {
    const where = `container ${containerName(id)}`;
    const fd = await this.acquire(id);
    try {
      const size = (await fsp.stat(this.pathOf(id))).size;
      if (size < HEADER_BYTES + TRAILER_BYTES) throw vmError('CORRUPT_CONTAINER', `${where} is truncated (${size} bytes)`, { container: id });
      const tail = Buffer.alloc(TRAILER_BYTES);
      await readFull(fd, tail, size - TRAILER_BYTES, this.pathOf(id));
      const trailer = decodeTrailer(tail, size);
      if (!trailer) throw vmError('CORRUPT_CONTAINER', `${where} has no valid trailer (unsealed or damaged); run an index rebuild`, { container: id });
      const table = Buffer.alloc(trailer.count * TABLE_ENTRY_BYTES);
      await readFull(fd, table, trailer.tableOffset, this.pathOf(id));
      if (crc32(table) !== trailer.tableCrc) throw vmError('CORRUPT_CONTAINER', `${where} table checksum mismatch`, { container: id });
      return decodeTable(table, where);
    } finally {
      this.release(id);
    }
  }

  /** Container ids present on disk, ascending. */
  listIds(): Promise<number[]> {
    return this.listIdsFrom(0);
  }

  /** Ids at or above `from`, ascending, reading only the shards that can hold them. */
  async listIdsFrom(from: number): Promise<number[]> {
    const ids: number[] = [];
    let shards: string[];
    try {
      shards = await fsp.readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw fromSystemError(err, `listing ${this.dir}`);
    }
    const firstShard = from >>> 10;
    for (const s of shards.sort()) {
      if (!/^[0-9a-f]{5}$/.test(s) || parseInt(s, 16) < firstShard) continue;
      for (const f of await fsp.readdir(path.join(this.dir, s))) {
        const m = /^([0-9a-f]{8})\.vvc$/.exec(f);
        if (m && parseInt(m[1], 16) >= from) ids.push(parseInt(m[1], 16));
      }
    }
    return ids.sort((a, b) => a - b);
  }
}

/**
 * Reads go straight to records, so a descriptor is first checked to be a container of a
 * format this vmvault reads (magic and version; the header checksum is verify's to judge,
 * as every record verifies itself).
 */
async function checkHeader(f: StoreFile, id: number): Promise<StoreFile> {
  try {
    const h = Buffer.alloc(HEADER_BYTES);
    const n = await readAt(f, h, 0);
    const where = `container ${containerName(id)}`;
    if (n < 10 || !h.subarray(0, 8).equals(CONTAINER_MAGIC)) throw vmError('CORRUPT_CONTAINER', `${where}: not a vmvault container (bad magic)`, { container: id });
    const version = h.readUInt16LE(8);
    if (version > CONTAINER_VERSION) {
      throw vmError('UNSUPPORTED_FORMAT', `${where}: container format ${version} is newer than this vmvault reads (${CONTAINER_VERSION}); upgrade vmvault`, { container: id });
    }
    return f;
  } catch (err) {
    await closeFile(f).catch(() => {});
    throw err;
  }
}

export interface ScanResult {
  id: number;
  /** Records whose header is intact, in file order (payloads not yet verified). */
  records: RecordMeta[];
  /** Where the last intact record ends. */
  end: number;
  sealed: boolean;
  size: number;
  /** Set when the header itself is unreadable. */
  error?: string;
  /** The whole file, for verifying payloads. */
  data: Buffer;
}

/**
 * Reads a container from the start, record by record, stopping at the first record whose
 * header does not parse or whose payload runs past the end: that is where a crash tore it.
 */
export async function scanContainer(file: string, id: number): Promise<ScanResult> {
  // Through the fault seam, like every other read of container bytes.
  let f: StoreFile;
  try {
    f = await openFile(file, 'r');
  } catch (err) {
    throw fromSystemError(err, `opening container ${file}`);
  }
  try {
    const data = Buffer.allocUnsafe(await fileSize(f));
    await readFull(f, data, 0);
    return scanBytes(data, id, file);
  } finally {
    await closeFile(f).catch(() => {});
  }
}

/** scanContainer's parse of a whole container image, apart from the read (fuzzed as such). */
export function scanBytes(data: Buffer, id: number, file = `container ${containerName(id)}`): ScanResult {
  const res: ScanResult = { id, records: [], end: 0, sealed: false, size: data.length, data };
  try {
    const h = decodeHeader(data.subarray(0, HEADER_BYTES), `container ${containerName(id)}`);
    if (h.id !== id) throw vmError('CORRUPT_CONTAINER', `container file ${file} claims id ${h.id}`);
  } catch (err) {
    res.error = (err as Error).message;
    return res;
  }
  const trailer = data.length >= TRAILER_BYTES ? decodeTrailer(data.subarray(data.length - TRAILER_BYTES), data.length) : undefined;
  const limit = trailer ? trailer.tableOffset : data.length;
  let at = HEADER_BYTES;
  while (at < limit) {
    const h = readRecordHeader(data, at);
    if (!h || at + RECORD_HEADER_BYTES + h.storedLen > limit) break;
    res.records.push({ ...h, offset: at });
    at += RECORD_HEADER_BYTES + h.storedLen;
  }
  res.end = at;
  res.sealed = trailer !== undefined && at === trailer.tableOffset;
  return res;
}

/** The payload bytes of a record, from a buffer holding the whole container. */
export function payloadOf(data: Buffer, r: RecordMeta): Buffer {
  const at = r.offset + RECORD_HEADER_BYTES;
  return data.subarray(at, at + r.storedLen);
}

