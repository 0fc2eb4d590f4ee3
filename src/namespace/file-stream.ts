// A whole file's new content written as one sequential stream (a full backup's disk): the bytes
// go straight into one store writer, the path `SegmentStore.writer()` takes for an ingest, and
// the finished version replaces the open file's content in one commit.
//
// Why not offset writes into the open file: those commit every few MiB, and each commit is an
// edit of the file's tree (the segment at the previous commit's end re-read and re-cut, the
// right edge of the tree rebuilt and stored, a group-commit round) that waits for all of its
// hashing and compression before the next one starts, so the pool's pipeline drained every
// 8 MiB. One writer keeps its batches in flight across the whole disk (tools/PERFORMANCE.md,
// backup4).
//
// While the stream runs the file reads as it did before (a full backup's file: zeros); at
// finish it reads as the stream at once. What the stream stored so far is in no file yet, so it
// holds its containers from garbage collection's sweep (store/gc/write-holds.ts) until its
// version is the file's: past the writer's own hold, which ends when the writer finishes,
// through the wait for the file's earlier commit.

import { vmError } from '../errors.js';
import type { TreeWriter, WriteHold } from '../store/store.js';
import type { OpenFile } from './open-file.js';

export class FileStream {
  private written = 0;
  private ended = false;
  /** The file's change count at the start: any write or truncate after it is a conflict. */
  private readonly changesAtStart: number;

  constructor(
    private readonly file: OpenFile,
    private readonly w: TreeWriter,
    private readonly hold: WriteHold,
  ) {
    this.changesAtStart = file.changes;
  }

  /** Bytes written so far: the offset the next write lands at. */
  get offset(): number {
    return this.written;
  }

  /** Appends `buf` (copied before the promise resolves: the caller may reuse it then). */
  async write(buf: Uint8Array): Promise<void> {
    this.open();
    this.written += buf.length;
    await this.w.write(buf);
  }

  /** Appends `n` zero bytes without materialising them. */
  async writeZeros(n: number): Promise<void> {
    this.open();
    this.written += n;
    await this.w.writeZeros(n);
  }

  /**
   * Ends the stream, which must have written exactly the file's size, and makes it the file's
   * content (committed like a write: durable in the next group round, or at fsync/close).
   */
  async finish(): Promise<void> {
    this.open();
    this.ended = true;
    try {
      const r = await this.w.finish();
      if (r.version.size !== this.file.size) throw vmError('INVALID_ARGUMENT', `a stream of ${r.version.size} bytes cannot replace a file of ${this.file.size} bytes`);
      // A commit still building (the file's truncation before the stream) must land first.
      await this.file.settled();
      // Writes that landed meanwhile (committed or not) would be lost under the new content
      // without a word: the stream fails instead, and the file keeps them.
      if (this.file.changes !== this.changesAtStart || !this.file.replaceWith(r.version, r.deps)) {
        throw vmError('CONFLICT', 'the file was written while a stream replaced its content; nothing of the stream was kept');
      }
    } finally {
      this.hold.release();
    }
  }

  /** Gives up: the file keeps its content; nothing the stream stored stays referenced. */
  async abort(): Promise<void> {
    if (this.ended) return;
    this.ended = true;
    try {
      await this.w.abort();
    } finally {
      this.hold.release();
    }
  }

  private open(): void {
    if (this.ended) throw vmError('CLOSED', 'this stream has finished');
  }
}
