// The smallest QMP and guest-agent clients the test guest helper needs to start, watch and stop a
// QEMU (test/helpers/guest.ts). Kept private to the tests on purpose: the product's clients are
// src/plugins/qemu/qmp.ts and qga.ts, and a test that checks those must not depend on them to
// boot its guest. Each call opens its own connection and closes it: QEMU's socket chardevs serve
// one client at a time, and the guest-agent channel must stay free for the code under test.

import net from 'node:net';

/** A QMP or guest-agent error (`{"error": {"class", "desc"}}`), or the socket failing. */
export class QemuSocketError extends Error {
  constructor(
    message: string,
    readonly qemuClass?: string,
  ) {
    super(message);
    this.name = 'QemuSocketError';
  }
}

/** A socket read as JSON lines, with a deadline on every wait. */
class JsonLines {
  private buf = '';
  private lines: unknown[] = [];
  private waiter: (() => void) | null = null;
  private failure: Error | null = null;

  constructor(
    private readonly sock: net.Socket,
    /** Text is kept only after this byte has been seen (the agent's 0xFF sync delimiter). */
    private skipUntilFF = false,
  ) {
    sock.setEncoding('latin1');
    sock.on('data', (chunk: string) => {
      if (this.skipUntilFF) {
        const at = chunk.indexOf('\xff');
        if (at < 0) return;
        this.skipUntilFF = false;
        chunk = chunk.slice(at + 1);
      }
      this.buf += chunk;
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl).trim();
        this.buf = this.buf.slice(nl + 1);
        if (!line) continue;
        try {
          this.lines.push(JSON.parse(Buffer.from(line, 'latin1').toString('utf8')));
        } catch {
          this.failure = new QemuSocketError(`not JSON from QEMU: ${line.slice(0, 200)}`);
        }
      }
      this.waiter?.();
    });
    const fail = (err: Error) => {
      this.failure ??= err;
      this.waiter?.();
    };
    sock.on('error', fail);
    sock.on('close', () => fail(new QemuSocketError('connection closed by QEMU')));
  }

  async next(timeoutMs: number, what: string): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const line = this.lines.shift();
      if (line !== undefined) return line as Record<string, unknown>;
      if (this.failure) throw this.failure;
      const left = deadline - Date.now();
      if (left <= 0) throw new QemuSocketError(`no answer to ${what} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiter = null;
    }
  }

  send(obj: object): void {
    this.sock.write(JSON.stringify(obj) + '\n');
  }
}

function connect(path: string, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(path);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new QemuSocketError(`connecting to ${path}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      resolve(sock);
    });
    sock.once('error', (err) => {
      clearTimeout(timer);
      reject(new QemuSocketError(`connecting to ${path}: ${err.message}`));
    });
  });
}

function unwrap(reply: Record<string, unknown>, what: string): unknown {
  const err = reply.error as { class?: string; desc?: string } | undefined;
  if (err) throw new QemuSocketError(`${what}: ${err.class ?? 'Error'}: ${err.desc ?? ''}`, err.class);
  return reply.return;
}

/** Runs QMP commands in order on one fresh connection; returns their results. Events are skipped. */
export async function qmpRun(path: string, commands: Array<{ execute: string; arguments?: object }>, timeoutMs = 10_000): Promise<unknown[]> {
  const sock = await connect(path, timeoutMs);
  try {
    const io = new JsonLines(sock);
    const greeting = await io.next(timeoutMs, 'the QMP greeting');
    if (!greeting.QMP) throw new QemuSocketError(`not a QMP greeting: ${JSON.stringify(greeting)}`);
    const results: unknown[] = [];
    let id = 0;
    for (const c of [{ execute: 'qmp_capabilities' }, ...commands]) {
      const myId = `t${++id}`;
      io.send({ ...c, id: myId });
      for (;;) {
        const reply = await io.next(timeoutMs, c.execute);
        if (reply.event) continue;
        if (reply.id !== myId) continue;
        if (c.execute !== 'qmp_capabilities') results.push(unwrap(reply, c.execute));
        else unwrap(reply, c.execute);
        break;
      }
    }
    return results;
  } finally {
    sock.destroy();
  }
}

/** One QMP command on a fresh connection. */
export async function qmp<T = unknown>(path: string, execute: string, args?: object, timeoutMs = 10_000): Promise<T> {
  const [r] = await qmpRun(path, [args ? { execute, arguments: args } : { execute }], timeoutMs);
  return r as T;
}

/**
 * Guest-agent commands on one fresh connection, after the guest-sync-delimited handshake: a 0xFF
 * byte resets the agent's parser, and everything before the agent's own 0xFF (answers meant for
 * an earlier client) is dropped. A command that answers nothing on success (guest-shutdown)
 * cannot be run here.
 */
export async function qgaRun(path: string, commands: Array<{ execute: string; arguments?: object }>, timeoutMs = 10_000): Promise<unknown[]> {
  const sock = await connect(path, timeoutMs);
  try {
    const io = new JsonLines(sock, true);
    const syncId = Math.floor(Math.random() * 2 ** 31);
    sock.write(Buffer.from([0xff]));
    io.send({ execute: 'guest-sync-delimited', arguments: { id: syncId } });
    for (;;) {
      const reply = await io.next(timeoutMs, 'guest-sync-delimited');
      if (reply.return === syncId) break;
    }
    const results: unknown[] = [];
    for (const c of commands) {
      io.send(c);
      results.push(unwrap(await io.next(timeoutMs, c.execute), c.execute));
    }
    return results;
  } finally {
    sock.destroy();
  }
}

/** One guest-agent command on a fresh connection. */
export async function qga<T = unknown>(path: string, execute: string, args?: object, timeoutMs = 10_000): Promise<T> {
  const [r] = await qgaRun(path, [args ? { execute, arguments: args } : { execute }], timeoutMs);
  return r as T;
}
