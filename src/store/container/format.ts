// Binary layout of container files, version 1. Specified in FORMAT.md beside this file; a
// change here is a format change and needs a new version number there and here.

import { crc32 } from 'node:zlib';
import { vmError } from '../../errors.js';
import { FP_BYTES } from '../codec/fingerprint.js';

// Never change these magics: they identify vmvault containers on any disk, in any version.
export const CONTAINER_MAGIC = Buffer.from([0x89, 0x56, 0x4d, 0x56, 0x43, 0x54, 0x52, 0x0a]); // \x89VMVCTR\n
export const TRAILER_MAGIC = Buffer.from([0x89, 0x56, 0x4d, 0x56, 0x46, 0x54, 0x52, 0x0a]); // \x89VMVFTR\n
export const RECORD_MAGIC = 0x5253564d; // "MVSR" little-endian on disk

export const CONTAINER_VERSION = 1;
export const HEADER_BYTES = 64;
export const RECORD_HEADER_BYTES = 52;
export const TABLE_ENTRY_BYTES = 48;
export const TRAILER_BYTES = 32;

/**
 * No segment is larger (the segmenter's largest maxSize; nodes are ~10 KiB): a length field
 * beyond it is damage, refused before anything is allocated for it.
 */
export const MAX_SEGMENT_BYTES = 1 << 24;

/** Containers are sealed once they reach this size (a record never splits). */
export const CONTAINER_TARGET_BYTES = 4 * 1024 * 1024;

export const enum Codec {
  Raw = 0,
  Lz4 = 1,
}

export const enum SegmentKind {
  Data = 0,
  Node = 1,
}

export interface RecordMeta {
  fp: Buffer;
  /** Offset of the record header in the container; the payload follows it. */
  offset: number;
  storedLen: number;
  rawLen: number;
  kind: SegmentKind;
  codec: Codec;
}

export function encodeHeader(id: number, createdMs: number): Buffer {
  const h = Buffer.alloc(HEADER_BYTES);
  CONTAINER_MAGIC.copy(h, 0);
  h.writeUInt16LE(CONTAINER_VERSION, 8);
  h.writeUInt16LE(HEADER_BYTES, 10);
  h.writeUInt32LE(id, 12);
  h.writeDoubleLE(createdMs, 16);
  h.writeUInt32LE(crc32(h.subarray(0, 60)), 60);
  return h;
}

export interface ContainerHeader {
  id: number;
  version: number;
  createdMs: number;
}

export function decodeHeader(h: Buffer, where: string): ContainerHeader {
  if (h.length < HEADER_BYTES || !h.subarray(0, 8).equals(CONTAINER_MAGIC)) {
    throw vmError('CORRUPT_CONTAINER', `${where}: not a vmvault container (bad magic)`);
  }
  const version = h.readUInt16LE(8);
  if (version > CONTAINER_VERSION) {
    throw vmError('UNSUPPORTED_FORMAT', `${where}: container format ${version} is newer than this vmvault reads (${CONTAINER_VERSION}); upgrade vmvault`);
  }
  if (h.readUInt32LE(60) !== crc32(h.subarray(0, 60))) {
    throw vmError('CORRUPT_CONTAINER', `${where}: container header checksum mismatch`);
  }
  return { id: h.readUInt32LE(12), version, createdMs: h.readDoubleLE(16) };
}

export function writeRecordHeader(dst: Buffer, at: number, m: Omit<RecordMeta, 'offset'>): void {
  dst.writeUInt32LE(RECORD_MAGIC, at);
  dst[at + 4] = m.kind;
  dst[at + 5] = m.codec;
  dst.writeUInt16LE(0, at + 6);
  dst.writeUInt32LE(m.rawLen, at + 8);
  dst.writeUInt32LE(m.storedLen, at + 12);
  m.fp.copy(dst, at + 16, 0, FP_BYTES);
  dst.writeUInt32LE(crc32(dst.subarray(at, at + 48)), at + 48);
}

/** Parses a record header; undefined when it is not one (torn tail, garbage). */
export function readRecordHeader(src: Buffer, at: number): Omit<RecordMeta, 'offset'> | undefined {
  if (at + RECORD_HEADER_BYTES > src.length) return undefined;
  if (src.readUInt32LE(at) !== RECORD_MAGIC) return undefined;
  if (src.readUInt32LE(at + 48) !== crc32(src.subarray(at, at + 48))) return undefined;
  const kind = src[at + 4];
  const codec = src[at + 5];
  if (kind > SegmentKind.Node || codec > Codec.Lz4) return undefined;
  return {
    kind,
    codec,
    rawLen: src.readUInt32LE(at + 8),
    storedLen: src.readUInt32LE(at + 12),
    fp: Buffer.from(src.subarray(at + 16, at + 16 + FP_BYTES)),
  };
}

export function encodeTable(records: RecordMeta[]): Buffer {
  const t = Buffer.alloc(records.length * TABLE_ENTRY_BYTES);
  let at = 0;
  for (const r of records) {
    r.fp.copy(t, at, 0, FP_BYTES);
    t.writeUInt32LE(r.offset, at + 32);
    t.writeUInt32LE(r.storedLen, at + 36);
    t.writeUInt32LE(r.rawLen, at + 40);
    t[at + 44] = r.kind;
    t[at + 45] = r.codec;
    at += TABLE_ENTRY_BYTES;
  }
  return t;
}

export function decodeTable(t: Buffer, where: string): RecordMeta[] {
  if (t.length % TABLE_ENTRY_BYTES !== 0) {
    throw vmError('CORRUPT_CONTAINER', `${where}: table of ${t.length} bytes is not a whole number of ${TABLE_ENTRY_BYTES}-byte entries`);
  }
  const n = t.length / TABLE_ENTRY_BYTES;
  const out: RecordMeta[] = new Array(n);
  for (let i = 0, at = 0; i < n; i++, at += TABLE_ENTRY_BYTES) {
    const kind = t[at + 44];
    const codec = t[at + 45];
    if (kind > SegmentKind.Node || codec > Codec.Lz4) {
      throw vmError('CORRUPT_CONTAINER', `${where}: table entry ${i} has unknown kind ${kind} or codec ${codec}`);
    }
    const storedLen = t.readUInt32LE(at + 36);
    const rawLen = t.readUInt32LE(at + 40);
    if (storedLen > MAX_SEGMENT_BYTES || rawLen > MAX_SEGMENT_BYTES) {
      throw vmError('CORRUPT_CONTAINER', `${where}: table entry ${i} has lengths ${storedLen}/${rawLen} past the largest segment`);
    }
    out[i] = { fp: t.subarray(at, at + FP_BYTES), offset: t.readUInt32LE(at + 32), storedLen, rawLen, kind, codec };
  }
  return out;
}

export interface Trailer {
  count: number;
  tableOffset: number;
  tableCrc: number;
}

export function encodeTrailer(count: number, tableOffset: number, table: Buffer): Buffer {
  const b = Buffer.alloc(TRAILER_BYTES);
  TRAILER_MAGIC.copy(b, 0);
  b.writeUInt32LE(count, 8);
  b.writeUInt32LE(tableOffset, 12);
  b.writeUInt32LE(crc32(table), 16);
  b.writeUInt32LE(0, 20);
  b.writeUInt32LE(0, 24);
  b.writeUInt32LE(crc32(b.subarray(0, 28)), 28);
  return b;
}

/** Parses a trailer; undefined when the container was never sealed (or its end is torn). */
export function decodeTrailer(b: Buffer, fileSize: number): Trailer | undefined {
  if (b.length !== TRAILER_BYTES || !b.subarray(0, 8).equals(TRAILER_MAGIC)) return undefined;
  if (b.readUInt32LE(28) !== crc32(b.subarray(0, 28))) return undefined;
  const count = b.readUInt32LE(8);
  const tableOffset = b.readUInt32LE(12);
  if (tableOffset + count * TABLE_ENTRY_BYTES + TRAILER_BYTES !== fileSize) return undefined;
  return { count, tableOffset, tableCrc: b.readUInt32LE(16) };
}

export function containerRelPath(id: number): string {
  const shard = (id >>> 10).toString(16).padStart(5, '0');
  return `${shard}/${id.toString(16).padStart(8, '0')}.vvc`;
}
