// Splits a byte stream into JSON messages, one per line, as QMP and the guest agent send them.
// A line longer than `maxLine` is refused (the peer is a VM's process, not trusted to be sane).

export class JsonLines {
  private buf = '';

  constructor(
    private readonly maxLine: number,
    private readonly onMessage: (msg: unknown) => void,
    private readonly onError: (err: Error) => void,
  ) {}

  push(chunk: Buffer | string): void {
    this.buf += typeof chunk === 'string' ? chunk : chunk.toString('utf8');
    let nl: number;
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl).trim();
      this.buf = this.buf.slice(nl + 1);
      if (line.length === 0) continue;
      let msg: unknown;
      try {
        msg = JSON.parse(line);
      } catch {
        this.onError(new Error(`not JSON: ${line.slice(0, 200)}`));
        continue;
      }
      this.onMessage(msg);
    }
    if (this.buf.length > this.maxLine) {
      this.buf = '';
      this.onError(new Error(`a message longer than ${this.maxLine} bytes`));
    }
  }

  /** Drops what is buffered (after a guest-agent resync). */
  reset(): void {
    this.buf = '';
  }
}
