// A sealed container's record table as raw bytes, for the locality cache (which keeps tables
// in their on-disk layout): the file's tail is read in one piece, the trailer and the table
// checksum are checked, and no per-record object is made.

import { crc32 } from 'node:zlib';
import { vmError } from '../../errors.js';
import { containerName } from '../codec/codec.js';
import { Codec, decodeTrailer, HEADER_BYTES, MAX_SEGMENT_BYTES, SegmentKind, TABLE_ENTRY_BYTES, TRAILER_BYTES } from './format.js';
import type { ContainerFiles } from './files.js';
import { fileSize, readFull } from './file-io.js';

/** One read covers the trailer and a table of up to ~2700 records. */
const TAIL_BYTES = 128 * 1024;

/** The table of sealed container `id` (TABLE_ENTRY_BYTES per record), checked. */
export async function readTableBytes(files: ContainerFiles, id: number): Promise<Buffer> {
  const where = `container ${containerName(id)}`;
  const file = files.pathOf(id);
  const fd = await files.acquire(id);
  try {
    const size = await fileSize({ path: file, fd });
    if (size < HEADER_BYTES + TRAILER_BYTES) throw vmError('CORRUPT_CONTAINER', `${where} is truncated (${size} bytes)`, { container: id });
    const tailLen = Math.min(size, TAIL_BYTES);
    const tail = Buffer.allocUnsafe(tailLen);
    await readFull(fd, tail, size - tailLen, file);
    const trailer = decodeTrailer(tail.subarray(tailLen - TRAILER_BYTES), size);
    if (!trailer) throw vmError('CORRUPT_CONTAINER', `${where} has no valid trailer (unsealed or damaged); run an index rebuild`, { container: id });
    const tableLen = trailer.count * TABLE_ENTRY_BYTES;
    let table: Buffer;
    if (trailer.tableOffset >= size - tailLen) {
      const at = trailer.tableOffset - (size - tailLen);
      table = tail.subarray(at, at + tableLen);
    } else {
      table = Buffer.allocUnsafe(tableLen);
      await readFull(fd, table, trailer.tableOffset, file);
    }
    if (crc32(table) !== trailer.tableCrc) throw vmError('CORRUPT_CONTAINER', `${where} table checksum mismatch`, { container: id });
    for (let at = 0; at < tableLen; at += TABLE_ENTRY_BYTES) {
      if (table[at + 44] > SegmentKind.Node || table[at + 45] > Codec.Lz4 || table.readUInt32LE(at + 36) > MAX_SEGMENT_BYTES || table.readUInt32LE(at + 40) > MAX_SEGMENT_BYTES) {
        throw vmError('CORRUPT_CONTAINER', `${where}: table entry ${at / TABLE_ENTRY_BYTES} has unknown kind or codec, or lengths past the largest segment`, { container: id });
      }
    }
    return table;
  } finally {
    files.release(id);
  }
}
