// Container files as a test sees them from the outside: where they are, their record tables
// parsed straight from the bytes (FORMAT.md), and the small acts of damage the corruption,
// rebuild and fault tests inflict (flip a byte, cut a file short, rewrite a header).

import fs from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import {
  containerRelPath,
  decodeTable,
  decodeTrailer,
  HEADER_BYTES,
  RECORD_HEADER_BYTES,
  type RecordMeta,
  TABLE_ENTRY_BYTES,
  TRAILER_BYTES,
} from '../../src/store/container/format.js';
import { containerName } from '../../src/store/codec/codec.js';

export { containerName, RECORD_HEADER_BYTES, HEADER_BYTES, TRAILER_BYTES, TABLE_ENTRY_BYTES };

export function containerPath(dataDir: string, id: number): string {
  return path.join(dataDir, 'containers', containerRelPath(id));
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

export interface Layout {
  id: number;
  file: string;
  size: number;
  records: RecordMeta[];
  tableOffset: number;
  trailerOffset: number;
}

/** The layout of a sealed container, from its trailer and table. Throws if it is not sealed. */
export function readLayout(dataDir: string, id: number): Layout {
  const file = containerPath(dataDir, id);
  const data = fs.readFileSync(file);
  const trailer = decodeTrailer(data.subarray(data.length - TRAILER_BYTES), data.length);
  if (!trailer) throw new Error(`container ${containerName(id)} is not sealed`);
  const table = data.subarray(trailer.tableOffset, trailer.tableOffset + trailer.count * TABLE_ENTRY_BYTES);
  if (crc32(table) !== trailer.tableCrc) throw new Error(`container ${containerName(id)} table checksum mismatch`);
  const records = decodeTable(Buffer.from(table), `container ${containerName(id)}`).map((r) => ({ ...r, fp: Buffer.from(r.fp) }));
  return { id, file, size: data.length, records, tableOffset: trailer.tableOffset, trailerOffset: data.length - TRAILER_BYTES };
}

/** Every record of every sealed container of a data directory, with its container. */
export function allRecords(dataDir: string): Array<RecordMeta & { cid: number }> {
  const out: Array<RecordMeta & { cid: number }> = [];
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
