// The open container: records are appended in memory (synchronously, so a batch of segments
// is placed without awaiting), written out in the background in large pieces, and made
// durable by sync(). seal() writes the metadata table and trailer. The whole image stays in
// memory until the seal is durable, so reads of just-written segments need no I/O; then it
// goes back for reuse (the file is complete and in the page cache), so a long ingest holds
// about two images, not one per container written since the last checkpoint.
//
// Contract: a record is durable once a sync() or seal() that started after its append()
// has resolved. After an I/O error the writer is failed: appends throw, and the caller must
// treat every record in it as never written.

import { fromSystemError, vmError } from '../../errors.js';
import {
  CONTAINER_TARGET_BYTES,
  Codec,
  encodeHeader,
  encodeTable,
  encodeTrailer,
  HEADER_BYTES,
  RECORD_HEADER_BYTES,
  type RecordMeta,
  SegmentKind,
  TRAILER_BYTES,
  writeRecordHeader,
} from './format.js';
import { closeFile, fsyncFile, openFile, type StoreFile, writeAt } from './file-io.js';

const FLUSH_BYTES = 1024 * 1024;
const IMAGE_BYTES = CONTAINER_TARGET_BYTES + 256 * 1024;
/** Fingerprints of records are kept apart from the image, in blocks of this many. */
const FP_BLOCK = 2048;

// Container images are recycled: fresh memory costs a page fault per 4 KiB on first touch.
const freeImages: Buffer[] = [];

export class ContainerWriter {
  readonly id: number;
  readonly path: string;
  readonly records: RecordMeta[] = [];
  private buf: Buffer;
  private len: number;
  private fpBlock = Buffer.alloc(0);
  private fpUsed = FP_BLOCK;
  private released = false;
  private flushed = 0;
  private file: Promise<StoreFile>;
  private io: Promise<void> = Promise.resolve();
  private failure: Error | undefined;
  private sealedFlag = false;
  private sealedTable: Buffer | undefined;
  /** Bytes known to be on stable storage. */
  durable = 0;

  /** `ready` resolves when the file may be created (its directory exists). */
  constructor(id: number, path: string, ready: Promise<unknown>, createdMs = Date.now()) {
    this.id = id;
    this.path = path;
    this.buf = freeImages.pop() ?? Buffer.allocUnsafe(IMAGE_BYTES);
    encodeHeader(id, createdMs).copy(this.buf, 0);
    this.len = HEADER_BYTES;
    // 'wx': a container id is never reused; an existing file means a bookkeeping bug.
    this.file = ready.then(() => openFile(path, 'wx', 0o644));
    this.file.catch((err) => this.fail(err));
  }

  get size(): number {
    return this.len;
  }

  get sealed(): boolean {
    return this.sealedFlag;
  }

  /** The record table seal() wrote, kept apart from the image so it outlives release(). */
  get table(): Buffer | undefined {
    return this.sealedTable;
  }

  get failed(): Error | undefined {
    return this.failure;
  }

  /** True when a record of this stored length should go to a new container instead. */
  full(storedLen: number): boolean {
    return this.records.length > 0 && this.len + RECORD_HEADER_BYTES + storedLen > CONTAINER_TARGET_BYTES;
  }

  append(kind: SegmentKind, fp: Buffer, rawLen: number, codec: Codec, payload: Uint8Array): RecordMeta {
    if (this.failure) throw this.failure;
    if (this.sealedFlag) throw vmError('IO', `container ${this.id} is sealed`);
    const need = this.len + RECORD_HEADER_BYTES + payload.length;
    if (need > this.buf.length) {
      const bigger = Buffer.allocUnsafe(Math.max(need, this.buf.length * 2));
      this.buf.copy(bigger, 0, 0, this.len);
      this.buf = bigger;
    }
    const meta: RecordMeta = { fp, offset: this.len, storedLen: payload.length, rawLen, kind, codec };
    writeRecordHeader(this.buf, this.len, meta);
    // Buffer.copy is a plain memcpy; TypedArray.set can take a much slower path.
    (Buffer.isBuffer(payload) ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)).copy(this.buf, this.len + RECORD_HEADER_BYTES);
    this.len = need;
    // Keep our own copy of the fingerprint: the caller's may be a view into a reused buffer,
    // and the image itself is reused once sealed.
    if (this.fpUsed === FP_BLOCK) {
      this.fpBlock = Buffer.allocUnsafe(FP_BLOCK * 32);
      this.fpUsed = 0;
    }
    const at = this.fpUsed++ * 32;
    this.buf.copy(this.fpBlock, at, meta.offset + 16, meta.offset + 48);
    meta.fp = this.fpBlock.subarray(at, at + 32);
    this.records.push(meta);
    if (this.len - this.flushed >= FLUSH_BYTES) void this.flush().catch(() => {});
    return meta;
  }

  /** The stored payload of a record of this container, from memory; undefined once released. */
  payload(meta: RecordMeta): Buffer | undefined {
    if (this.released) return undefined;
    const at = meta.offset + RECORD_HEADER_BYTES;
    return this.buf.subarray(at, at + meta.storedLen);
  }

  private fail(err: unknown): void {
    this.failure ??= fromSystemError(err, `writing container ${this.path}`);
  }

  private enqueue(op: (f: StoreFile) => Promise<void>): Promise<void> {
    const run = this.io.then(async () => {
      if (this.failure) throw this.failure;
      try {
        await op(await this.file);
      } catch (err) {
        this.fail(err);
        throw this.failure;
      }
    });
    this.io = run.catch(() => {});
    return run;
  }

  /** Writes what is in memory to the file (no fsync). */
  flush(): Promise<void> {
    return this.enqueue(async (f) => {
      const end = this.len;
      if (end > this.flushed) {
        await writeAt(f, this.buf.subarray(this.flushed, end), this.flushed);
        this.flushed = end;
      }
    });
  }

  /** Makes every record appended so far durable. */
  sync(): Promise<void> {
    const target = this.len;
    if (this.durable >= target) return this.failure ? Promise.reject(this.failure) : Promise.resolve();
    void this.flush().catch(() => {});
    return this.enqueue(async (f) => {
      if (this.durable >= target) return;
      await fsyncFile(f);
      this.durable = Math.max(this.durable, target);
    });
  }

  /** Appends the table and trailer, writes and fsyncs everything, and closes the file. */
  seal(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.sealedFlag) return this.io;
    this.sealedFlag = true;
    const table = (this.sealedTable = encodeTable(this.records));
    const trailer = encodeTrailer(this.records.length, this.len, table);
    const need = this.len + table.length + TRAILER_BYTES;
    if (need > this.buf.length) {
      const bigger = Buffer.allocUnsafe(need);
      this.buf.copy(bigger, 0, 0, this.len);
      this.buf = bigger;
    }
    table.copy(this.buf, this.len);
    trailer.copy(this.buf, this.len + table.length);
    this.len = need;
    void this.flush().catch(() => {});
    return this.enqueue(async (f) => {
      await fsyncFile(f);
      this.durable = this.len;
      await closeFile(f);
    });
  }

  /**
   * Gives the memory image back for reuse, once the seal is durable: reads then go to the
   * file. Records and their fingerprints stay (they are not in the image).
   */
  release(): void {
    if (this.released || !this.sealedFlag || this.durable !== this.len) return;
    this.released = true;
    if (this.buf.length === IMAGE_BYTES && freeImages.length < 4) freeImages.push(this.buf);
    this.buf = Buffer.alloc(0);
  }

  /** Closes the file without sealing (the store is closing with an empty container, or failed). */
  async abandon(): Promise<void> {
    await this.io;
    try {
      const f = await this.file;
      await closeFile(f);
    } catch {
      // already failed or closed
    }
  }
}
