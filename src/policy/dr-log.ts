// The DR copy's database log (format version 2, DR-FORMAT.md "The database log"): one file the
// copies append to instead of each copy rewriting every database record. The first checkpoint of
// a log writes every record (base frames); each later one appends only what changed since the one
// before (delta frames: puts and deletes), then an end frame. Every frame carries its length and a
// SHA-256 chained over the frame before it, so the manifest's one hash (the chain at the committed
// end) covers the whole prefix and a flipped byte is named by its frame. Bytes after the committed
// length (a copy cut off before its manifest landed) are never read; the next copy cuts them off.
// Here: frame encoding, the checked scan, the state as of the committed end (in key order), and the
// appender the copy writes through.

import { createHash } from 'node:crypto';
import fsp from 'node:fs/promises';
import { fromSystemError, isVmvaultError, vmError } from '../errors.js';
import type { FileEntry } from './dr-format.js';

export const LOG_MAGIC = Buffer.from('VVDRLOG2', 'latin1');
const FRAME_TAG = Buffer.from('VVFR', 'latin1');
/** tag 4, type 1, zero 3, checkpoint ordinal u32, payload length u32, chained SHA-256 32. */
export const FRAME_HEADER = 48;
export const FRAME_BASE = 1;
export const FRAME_DELTA = 2;
export const FRAME_END = 3;
const OP_PUT = 0;
const OP_DEL = 1;
/** Largest payload a frame may have: a frame holds one record at least (keys/values <= 64 MiB). */
const MAX_PAYLOAD = 129 * 1024 * 1024;
/** Frames are cut at about this many payload bytes. */
const FRAME_TARGET = 1 << 20;

/** The manifest's `database` entry in version 2: `size` is the committed length, `sha256` the chain there. */
export interface LogEntry extends FileEntry {
  /** Live records as of the checkpoint. */
  records: number;
  /** Bytes a base of those records would take (the compaction rule compares `size` with it). */
  live: number;
  /** Checkpoints (end frames) in the committed prefix. */
  checkpoints: number;
}

export interface EndInfo {
  copy: string;
  takenAt: string;
  records: number;
  live: number;
}

/** The chain's value before the first frame: the hash of the file's magic. */
export function chainStart(): Buffer {
  return createHash('sha256').update(LOG_MAGIC).digest();
}

function frameHash(prev: Buffer, head12: Buffer, payload: Buffer): Buffer {
  return createHash('sha256').update(prev).update(head12).update(payload).digest();
}

export function encodeFrame(type: number, ordinal: number, payload: Buffer, prev: Buffer): { bytes: Buffer; chain: Buffer } {
  const b = Buffer.alloc(FRAME_HEADER + payload.length);
  FRAME_TAG.copy(b, 0);
  b[4] = type;
  b.writeUInt32LE(ordinal, 8);
  b.writeUInt32LE(payload.length, 12);
  payload.copy(b, FRAME_HEADER);
  // The checksum covers the first 16 header bytes (tag, type, ordinal, length) and the payload.
  const chain = frameHash(prev, b.subarray(0, 16), payload);
  chain.copy(b, 16);
  return { bytes: b, chain };
}

/** The size one record takes in a frame (op, key length, value length, key, value). */
export function opSize(k: Buffer, v: Buffer | undefined): number {
  return 9 + k.length + (v?.length ?? 0);
}

function encodeOpHeader(op: number, k: Buffer, v: Buffer | undefined): Buffer {
  const h = Buffer.allocUnsafe(9);
  h[0] = op;
  h.writeUInt32LE(k.length, 1);
  h.writeUInt32LE(v?.length ?? 0, 5);
  return h;
}

export interface Frame {
  type: number;
  ordinal: number;
  offset: number;
  payload: Buffer;
}

const damaged = (file: string, what: string) => vmError('CORRUPT_COPY', `${file} is damaged: ${what}`);

/**
 * Reads the frames of `[0, entry.size)`, each checked against the chain; throws CORRUPT_COPY naming
 * the frame (index, offset, checkpoint) at the first problem, and at the end unless the prefix ends
 * with an end frame whose chain is the manifest's hash. Bytes beyond `entry.size` are not read.
 */
export async function* scanLog(file: string, entry: Pick<LogEntry, 'size' | 'sha256' | 'checkpoints'>): AsyncGenerator<Frame> {
  const h = await fsp.open(file, 'r').catch((err) => {
    throw (err as NodeJS.ErrnoException).code === 'ENOENT' ? vmError('CORRUPT_COPY', `${file} is missing`) : fromSystemError(err, `opening ${file}`);
  });
  try {
    const real = (await h.stat()).size;
    if (real < entry.size) throw damaged(file, `${real} bytes, the manifest says ${entry.size} (cut short)`);
    const magic = Buffer.alloc(LOG_MAGIC.length);
    await h.read(magic, 0, magic.length, 0);
    if (!magic.equals(LOG_MAGIC)) throw damaged(file, 'bad magic (not a DR database log)');
    let off = LOG_MAGIC.length;
    let chain = chainStart();
    let index = 0;
    let ends = 0;
    let lastType = 0;
    const head = Buffer.alloc(FRAME_HEADER);
    while (off < entry.size) {
      const where = `frame ${index} at offset ${off}`;
      if (off + FRAME_HEADER > entry.size) throw damaged(file, `${where}: its header crosses the committed end ${entry.size}`);
      await h.read(head, 0, FRAME_HEADER, off);
      const type = head[4]!;
      const ordinal = head.readUInt32LE(8);
      const len = head.readUInt32LE(12);
      const what = `${where} (checkpoint ${ordinal})`;
      if (!head.subarray(0, 4).equals(FRAME_TAG) || (type !== FRAME_BASE && type !== FRAME_DELTA && type !== FRAME_END)) throw damaged(file, `${what}: not a frame header`);
      if (len > MAX_PAYLOAD || off + FRAME_HEADER + len > entry.size) throw damaged(file, `${what}: length ${len} runs past the committed end ${entry.size}`);
      const payload = Buffer.alloc(len);
      if (len > 0) {
        const { bytesRead } = await h.read(payload, 0, len, off + FRAME_HEADER);
        if (bytesRead !== len) throw damaged(file, `${what}: cut off`);
      }
      const want = frameHash(chain, head.subarray(0, 16), payload);
      if (!want.equals(head.subarray(16, 48))) throw damaged(file, `${what}: its checksum does not match its bytes`);
      chain = want;
      yield { type, ordinal, offset: off, payload };
      if (type === FRAME_END) ends++;
      lastType = type;
      off += FRAME_HEADER + len;
      index++;
    }
    if (lastType !== FRAME_END) throw damaged(file, `the committed prefix does not end with a checkpoint's end frame`);
    if (ends !== entry.checkpoints) throw damaged(file, `${ends} checkpoints found, the manifest says ${entry.checkpoints}`);
    if (chain.toString('hex') !== entry.sha256) throw damaged(file, `its chained checksum at ${entry.size} does not match the manifest`);
  } finally {
    await h.close();
  }
}

/** The records (puts and deletes) of a base or delta frame's payload. */
export function* frameOps(payload: Buffer, file: string, offset: number): Generator<[Buffer, Buffer | undefined]> {
  let p = 0;
  while (p < payload.length) {
    if (p + 9 > payload.length) throw damaged(file, `frame at offset ${offset}: a record header is cut off`);
    const op = payload[p]!;
    const kl = payload.readUInt32LE(p + 1);
    const vl = payload.readUInt32LE(p + 5);
    p += 9;
    if ((op !== OP_PUT && op !== OP_DEL) || kl === 0 || p + kl + vl > payload.length) throw damaged(file, `frame at offset ${offset}: impossible record (${op}, ${kl}, ${vl})`);
    const k = payload.subarray(p, p + kl);
    const v = op === OP_PUT ? payload.subarray(p + kl, p + kl + vl) : undefined;
    p += kl + vl;
    yield [k, v];
  }
}

/**
 * The database as of the committed end, in key order, in batches. Two passes: the first checks the
 * whole prefix and gathers the later checkpoints' changes (memory: the changes since the base, not
 * the database); the second merges them into the base frames, which are in key order.
 */
export async function* logState(file: string, entry: LogEntry): AsyncGenerator<Array<[Buffer, Buffer]>> {
  const changes = new Map<string, Buffer | undefined>();
  for await (const f of scanLog(file, entry)) {
    if (f.type !== FRAME_DELTA) continue;
    for (const [k, v] of frameOps(f.payload, file, f.offset)) changes.set(k.toString('latin1'), v);
  }
  const delta = [...changes.keys()].map((s) => Buffer.from(s, 'latin1')).sort(Buffer.compare);
  let di = 0;
  let batch: Array<[Buffer, Buffer]> = [];
  let count = 0;
  const emit = (k: Buffer, v: Buffer) => {
    batch.push([k, v]);
    count++;
  };
  const emitDelta = (dk: Buffer) => {
    const dv = changes.get(dk.toString('latin1'));
    if (dv !== undefined) emit(dk, dv); // undefined: deleted since the base
  };
  let prevKey: Buffer | undefined;
  for await (const f of scanLog(file, entry)) {
    if (f.type !== FRAME_BASE) continue;
    // Parsed inline (not through frameOps): this loop runs once per record of the database.
    const pl = f.payload;
    for (let p = 0; p < pl.length; ) {
      if (p + 9 > pl.length) throw damaged(file, `frame at offset ${f.offset}: a record header is cut off`);
      const kl = pl.readUInt32LE(p + 1);
      const vl = pl.readUInt32LE(p + 5);
      if (pl[p] !== OP_PUT || kl === 0 || p + 9 + kl + vl > pl.length) throw damaged(file, `frame at offset ${f.offset}: impossible base record (${pl[p]}, ${kl}, ${vl})`);
      const k = pl.subarray(p + 9, p + 9 + kl);
      const v = pl.subarray(p + 9 + kl, p + 9 + kl + vl);
      p += 9 + kl + vl;
      // compare(target = the key before, ..., source = this key): this one must be greater.
      if (prevKey && pl.compare(prevKey, 0, prevKey.length, p - vl - kl, p - vl) <= 0) throw damaged(file, `frame at offset ${f.offset}: base records out of key order`);
      prevKey = k;
      if (di < delta.length) {
        while (di < delta.length && Buffer.compare(delta[di]!, k) < 0) emitDelta(delta[di++]!);
        if (di < delta.length && delta[di]!.equals(k)) {
          emitDelta(delta[di++]!);
          continue;
        }
      }
      batch.push([k, v]); // views into the frame's payload: no copy per record
      count++;
      if (batch.length >= 1000) {
        yield batch;
        batch = [];
      }
    }
  }
  while (di < delta.length) emitDelta(delta[di++]!);
  if (count !== entry.records) throw damaged(file, `${count} records rebuilt, the manifest says ${entry.records}`);
  if (batch.length > 0) yield batch;
}

/** Pulls one record at a time from a stream of batches. */
class Cursor {
  private batch: Array<[Buffer, Buffer]> = [];
  private i = 0;
  private done = false;
  constructor(private readonly it: AsyncIterator<Array<[Buffer, Buffer]>>) {}
  async peek(): Promise<[Buffer, Buffer] | undefined> {
    while (this.i >= this.batch.length && !this.done) {
      const r = await this.it.next();
      if (r.done) this.done = true;
      else {
        this.batch = r.value;
        this.i = 0;
      }
    }
    return this.i < this.batch.length ? this.batch[this.i] : undefined;
  }
  advance(): void {
    this.i++;
  }
}

/**
 * Appends one checkpoint to a log: a base (every record of `records`) when `previous` is undefined,
 * else the difference between `previous` (the state the log holds, from logState) and `records`,
 * both in key order. Frames go through `write(bytes)`; returns the new chain and the live counts.
 */
export async function appendCheckpoint(o: {
  records: AsyncIterable<Array<[Buffer, Buffer]>>;
  previous?: AsyncIterator<Array<[Buffer, Buffer]>>;
  ordinal: number;
  chain: Buffer;
  end: Omit<EndInfo, 'records' | 'live'>;
  write: (bytes: Buffer) => Promise<void>;
  signal?: AbortSignal;
}): Promise<{ chain: Buffer; records: number; live: number; puts: number; deletes: number }> {
  let chain = o.chain;
  const type = o.previous ? FRAME_DELTA : FRAME_BASE;
  let parts: Buffer[] = [];
  let pending = 0;
  const flush = async () => {
    if (pending === 0) return;
    const f = encodeFrame(type, o.ordinal, Buffer.concat(parts, pending), chain);
    chain = f.chain;
    parts = [];
    pending = 0;
    await o.write(f.bytes);
  };
  const op = async (code: number, k: Buffer, v: Buffer | undefined) => {
    parts.push(encodeOpHeader(code, k, v), k);
    if (v) parts.push(v);
    pending += opSize(k, v);
    if (pending >= FRAME_TARGET) await flush();
  };
  let records = 0;
  let live = 0;
  let puts = 0;
  let deletes = 0;
  const cur = new Cursor(o.records[Symbol.asyncIterator]());
  const prev = o.previous ? new Cursor(o.previous) : undefined;
  for (;;) {
    o.signal?.throwIfAborted();
    const a = await cur.peek();
    const b = prev ? await prev.peek() : undefined;
    if (!a && !b) break;
    const c = !a ? 1 : !b ? -1 : Buffer.compare(a[0], b[0]);
    if (c < 0 || (c === 0 && !a![1].equals(b![1]))) {
      await op(OP_PUT, a![0], a![1]);
      puts++;
    } else if (c > 0) {
      await op(OP_DEL, b![0], undefined);
      deletes++;
    }
    if (c <= 0) {
      records++;
      live += opSize(a![0], a![1]);
      cur.advance();
    }
    if (c >= 0) prev!.advance();
  }
  await flush();
  const info: EndInfo = { ...o.end, records, live };
  const f = encodeFrame(FRAME_END, o.ordinal, Buffer.from(JSON.stringify(info)), chain);
  await o.write(f.bytes);
  return { chain: f.chain, records, live, puts, deletes };
}

/** Whether an error is a damaged log (the copy then starts a new log instead of appending). */
export function isDamage(err: unknown): boolean {
  return isVmvaultError(err, 'CORRUPT_COPY');
}
