// Container files as a test sees them from the outside: where they are, their record tables
// parsed straight from the bytes by src/store/FORMAT.md (nothing here calls the store's own
// decoders, so a bug in them cannot hide itself), and the small acts of damage the
// corruption, rebuild and fault tests inflict (flip a byte, cut a file short, rewrite a
// header).

import fs from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';

// Layout constants and names from src/store/FORMAT.md, written out here rather than imported
// from the code: a helper that used the code's own decoders could not catch a bug in them.
// (node:zlib's crc32 is the checksum FORMAT.md names, an implementation of its own.)
export const HEADER_BYTES = 64;
export const RECORD_HEADER_BYTES = 52;
export const TABLE_ENTRY_BYTES = 48;
export const TRAILER_BYTES = 32;
const TRAILER_MAGIC = Buffer.from([0x89, 0x56, 0x4d, 0x56, 0x46, 0x54, 0x52, 0x0a]); // \x89VMVFTR\n

/** A container's name in messages: its id as 8 lower-case hex digits. */
export function containerName(id: number): string {
  return id.toString(16).padStart(8, '0');
}

/** `containers/<id >>> 10 as 5 hex digits>/<id as 8 hex digits>.vvc` (FORMAT.md, "Container paths"). */
export function containerPath(dataDir: string, id: number): string {
  return path.join(dataDir, 'containers', (id >>> 10).toString(16).padStart(5, '0'), `${containerName(id)}.vvc`);
}

/** Ids of the container files in a data directory, ascending. */
export function listContainers(dataDir: string): number[] {
  const root = path.join(dataDir, 'containers');
  if (!fs.existsSync(root)) return [];
  const ids: number[] = [];
  for (const shard of fs.readdirSync(root)) {
    for (const f of fs.readdirSync(path.join(root, shard))) {
      const m = /^([0-9a-f]{8})\.vvc$/.exec(f);
      if (m) ids.push(parseInt(m[1], 16));
    }
  }
  return ids.sort((a, b) => a - b);
}

/** A table entry as FORMAT.md lays it out ("Metadata table and trailer"). */
export interface TableRecord {
  fp: Buffer;
  /** Offset of the record header; the payload follows it. */
  offset: number;
  storedLen: number;
  rawLen: number;
  /** 0 data segment, 1 tree node. */
  kind: number;
  /** 0 raw, 1 LZ4. */
  codec: number;
}

export interface Layout {
  id: number;
  file: string;
  size: number;
  records: TableRecord[];
  tableOffset: number;
  trailerOffset: number;
}

/**
 * The layout of a sealed container, parsed straight from its bytes by FORMAT.md: the trailer
 * (magic, checksum, and tableOffset + 48 n + 32 == size), the table's checksum, then each
 * 48-byte entry. Throws if it is not sealed or a check fails.
 */
export function readLayout(dataDir: string, id: number): Layout {
  const file = containerPath(dataDir, id);
  const data = fs.readFileSync(file);
  const name = `container ${containerName(id)}`;
  if (data.length < HEADER_BYTES + TRAILER_BYTES) throw new Error(`${name} is too short to be sealed (${data.length} bytes)`);
  const trailerOffset = data.length - TRAILER_BYTES;
  const tr = data.subarray(trailerOffset);
  if (!tr.subarray(0, 8).equals(TRAILER_MAGIC) || tr.readUInt32LE(28) !== crc32(tr.subarray(0, 28))) throw new Error(`${name} is not sealed`);
  const count = tr.readUInt32LE(8);
  const tableOffset = tr.readUInt32LE(12);
  if (tableOffset + count * TABLE_ENTRY_BYTES !== trailerOffset) throw new Error(`${name} is not sealed (trailer does not end the file)`);
  const table = data.subarray(tableOffset, trailerOffset);
  if (crc32(table) !== tr.readUInt32LE(16)) throw new Error(`${name} table checksum mismatch`);
  const records: TableRecord[] = [];
  for (let at = 0; at < table.length; at += TABLE_ENTRY_BYTES) {
    records.push({
      fp: Buffer.from(table.subarray(at, at + 32)),
      offset: table.readUInt32LE(at + 32),
      storedLen: table.readUInt32LE(at + 36),
      rawLen: table.readUInt32LE(at + 40),
      kind: table[at + 44],
      codec: table[at + 45],
    });
  }
  return { id, file, size: data.length, records, tableOffset, trailerOffset };
}

/** Every record of every sealed container of a data directory, with its container. */
export function allRecords(dataDir: string): Array<TableRecord & { cid: number }> {
  const out: Array<TableRecord & { cid: number }> = [];
  for (const id of listContainers(dataDir)) for (const r of readLayout(dataDir, id).records) out.push({ ...r, cid: id });
  return out;
}

/** XORs one byte of a file in place. */
export function flipByte(file: string, pos: number, mask = 0x5a): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    if (fs.readSync(fd, b, 0, 1, pos) !== 1) throw new Error(`${file} has no byte at ${pos}`);
    b[0] ^= mask;
    fs.writeSync(fd, b, 0, 1, pos);
  } finally {
    fs.closeSync(fd);
  }
}

/** Overwrites bytes of a file in place. */
export function patchFile(file: string, pos: number, bytes: Uint8Array): void {
  const fd = fs.openSync(file, 'r+');
  try {
    fs.writeSync(fd, bytes, 0, bytes.length, pos);
  } finally {
    fs.closeSync(fd);
  }
}

/** Rewrites the version field of a container header (and its checksum, so only the version differs). */
export function setContainerVersion(file: string, version: number): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const h = Buffer.alloc(HEADER_BYTES);
    fs.readSync(fd, h, 0, HEADER_BYTES, 0);
    h.writeUInt16LE(version, 8);
    h.writeUInt32LE(crc32(h.subarray(0, 60)), 60);
    fs.writeSync(fd, h, 0, HEADER_BYTES, 0);
  } finally {
    fs.closeSync(fd);
  }
}
