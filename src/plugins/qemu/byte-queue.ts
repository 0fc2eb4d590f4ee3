// Bytes received from a socket, taken off the front in exact amounts. The NBD client parses its
// handshake and replies with it; a reader waiting for more than has arrived is woken by push()
// and failed by fail() (closed socket, timeout), so a short reply never hangs it.

export class ByteQueue {
  private chunks: Buffer[] = [];
  private head = 0; // bytes already taken from chunks[0]
  length = 0;
  private waiter: { n: number; resolve(): void; reject(e: Error): void } | null = null;
  private failed: Error | null = null;

  push(b: Buffer): void {
    if (b.length === 0) return;
    this.chunks.push(b);
    this.length += b.length;
    if (this.waiter && this.length >= this.waiter.n) {
      const w = this.waiter;
      this.waiter = null;
      w.resolve();
    }
  }

  fail(err: Error): void {
    if (!this.failed) this.failed = err;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = null;
      w.reject(err);
    }
  }

  /** Waits until n bytes are buffered (one waiter at a time). */
  async need(n: number): Promise<void> {
    if (this.length >= n) return;
    if (this.failed) throw this.failed;
    await new Promise<void>((resolve, reject) => (this.waiter = { n, resolve, reject }));
  }

  /** Takes exactly n buffered bytes (n <= length). */
  take(n: number): Buffer {
    if (n > this.length) throw new Error(`ByteQueue.take(${n}) with ${this.length} buffered`);
    const first = this.chunks[0];
    if (first && first.length - this.head >= n) {
      const out = first.subarray(this.head, this.head + n);
      this.advance(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    this.copyInto(out, 0, n);
    return out;
  }

  /** A copy of the first n buffered bytes (n <= length), left in the queue. */
  peek(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let done = 0;
    let head = this.head;
    for (let i = 0; done < n; i++) {
      const c = this.chunks[i];
      const k = Math.min(c.length - head, n - done);
      c.copy(out, done, head, head + k);
      done += k;
      head = 0;
    }
    return out;
  }

  /** Moves n buffered bytes (n <= length) into dest at pos, without an intermediate buffer. */
  copyInto(dest: Buffer, pos: number, n: number): void {
    let done = 0;
    while (done < n) {
      const c = this.chunks[0];
      const k = Math.min(c.length - this.head, n - done);
      c.copy(dest, pos + done, this.head, this.head + k);
      done += k;
      this.advance(k);
    }
  }

  /** Takes n buffered bytes (n <= length) as views of the received chunks: no copy. */
  takeViews(n: number): Buffer[] {
    const out: Buffer[] = [];
    while (n > 0) {
      const c = this.chunks[0];
      const k = Math.min(c.length - this.head, n);
      out.push(c.subarray(this.head, this.head + k));
      this.advance(k);
      n -= k;
    }
    return out;
  }

  /** Drops n buffered bytes. */
  skip(n: number): void {
    while (n > 0) {
      const c = this.chunks[0];
      const k = Math.min(c.length - this.head, n);
      this.advance(k);
      n -= k;
    }
  }

  private advance(k: number): void {
    this.head += k;
    this.length -= k;
    if (this.head === this.chunks[0].length) {
      this.chunks.shift();
      this.head = 0;
    }
  }
}
