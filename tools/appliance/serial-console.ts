// The appliance VM's serial console (ttyS0) over QEMU's chardev socket: read what it prints,
// wait for a pattern, type a line, log in. The boot check uses it as an operator at the console
// would: log in as root with the password set from the OVF environment.

import net from 'node:net';

export class SerialConsole {
  private buf = '';
  private readonly waiters = new Set<() => void>();
  private constructor(private readonly sock: net.Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      for (const w of this.waiters) w();
    });
    sock.on('error', () => {});
  }

  static async connect(path: string, timeoutMs = 10_000): Promise<SerialConsole> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      try {
        const s = await new Promise<net.Socket>((resolve, reject) => {
          const c = net.connect(path, () => resolve(c));
          c.once('error', reject);
        });
        return new SerialConsole(s);
      } catch (err) {
        if (Date.now() > until) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  /** Everything printed since `mark()` (or since connecting). */
  get text(): string {
    return this.buf;
  }

  mark(): void {
    this.buf = '';
  }

  /** Waits until `re` matches the text printed since the last mark; returns the match. */
  waitFor(re: RegExp, timeoutMs: number, what = String(re)): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const m = re.exec(this.buf);
        if (m) {
          this.waiters.delete(check);
          clearTimeout(timer);
          resolve(m);
        }
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`serial console: no ${what} within ${timeoutMs} ms; last output: ${JSON.stringify(this.buf.slice(-600))}`));
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  type(line: string): void {
    this.sock.write(`${line}\r`);
  }

  /** Logs in at a getty prompt (pressing Enter first to redraw it) and waits for a shell. */
  async login(user: string, password: string, timeoutMs: number): Promise<void> {
    this.mark();
    this.type('');
    await this.waitFor(/login: $/m, timeoutMs, 'login prompt');
    this.mark();
    this.type(user);
    await this.waitFor(/Password: ?$/m, 30_000, 'password prompt');
    this.mark();
    this.type(password);
    await this.waitFor(/# $/m, 60_000, 'root shell prompt');
    // A prompt and no echo that cannot be confused with command output.
    this.mark();
    this.type("stty -echo; PS1='VMV> '; echo LOGGED-IN");
    await this.waitFor(/^LOGGED-IN\r?$/m, 30_000, 'shell set-up');
  }

  /** Runs a shell command line and returns its output (up to an end marker). */
  async run(cmd: string, timeoutMs: number): Promise<string> {
    this.mark();
    this.type(`${cmd}; echo "__END_$?__"`);
    const m = await this.waitFor(/^([\s\S]*?)__END_(\d+)__\r?$/m, timeoutMs, `end of: ${cmd.slice(0, 60)}`);
    if (m[2] !== '0') throw new Error(`serial console: "${cmd.slice(0, 80)}" exited ${m[2]}: ${m[1].slice(-500)}`);
    return m[1];
  }

  close(): void {
    this.sock.destroy();
  }
}
