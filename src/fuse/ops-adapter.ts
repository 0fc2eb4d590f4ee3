// fuse-native's callback protocol on one side, promise-returning handlers on the other. Each
// request gets exactly one answer: the handler's, a mapped error, or a timeout — a second
// signal for the same request would release a libfuse thread twice.
import { errno, toErrno, type LogLine } from './errno.js';
import type { DirEntry, FileStat, FuseHandlers, FuseOpName } from './handlers.js';
import { NATIVE_OPS, type Dispatch, type Signal } from './native.js';
import { timeoutFor, type OpTimeouts } from './options.js';
import { DIR_STAT_MODE, resolveUtimens, statArray, statfsArray } from './stat.js';

const TWO_32 = 4294967296;
const u64 = (low: unknown, high: unknown) => (low as number) + (high as number) * TWO_32;
const MAX_FH = 0x7fffffff;

/** Which fuse-native operations to register: only those with a handler, so libfuse answers
 * the rest itself (ENOSYS, or its own fallback such as getattr for fgetattr). */
export function implementedOps(h: FuseHandlers): Record<string, boolean> {
  const out: Record<string, boolean> = {};
  // Handlers may be class instances: look the methods up, do not enumerate own keys.
  for (const name of NATIVE_OPS) if (typeof (h as unknown as Record<string, unknown>)[name] === 'function') out[name] = true;
  return out;
}

interface AdapterOptions {
  opTimeoutMs: OpTimeouts | undefined;
  log: LogLine;
}

/** A request in flight that has a deadline. */
interface InFlight {
  settled: boolean;
  /** Date.now() past which it times out. */
  at: number;
  expire(): void;
}

/**
 * The requests in flight under one deadline, oldest first, so one timer serves them all (its
 * expiry is the oldest's): a request costs an array slot, not a timer of its own.
 */
class DeadlineQueue {
  private q: InFlight[] = [];
  private head = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(readonly ms: number) {}

  add(r: InFlight): void {
    r.at = Date.now() + this.ms;
    this.q.push(r);
    if (!this.timer) this.arm(this.ms);
  }

  /** Called when a request settles: forgets the settled ones at the front. */
  settled(): void {
    const q = this.q;
    while (this.head < q.length && q[this.head].settled) this.head++;
    if (this.head === q.length) {
      this.q = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > q.length) {
      this.q = q.slice(this.head);
      this.head = 0;
    }
  }

  private arm(ms: number): void {
    this.timer = setTimeout(() => this.fire(), Math.max(1, ms));
    this.timer.unref();
  }

  private fire(): void {
    this.timer = undefined;
    const now = Date.now();
    const q = this.q;
    while (this.head < q.length) {
      const r = q[this.head];
      if (!r.settled && r.at > now) break;
      this.head++;
      if (!r.settled) r.expire();
    }
    this.settled();
    if (this.head < this.q.length) this.arm(this.q[this.head].at - now);
  }
}

const isThenable = <T>(v: T | Promise<T>): v is Promise<T> => typeof (v as { then?: unknown } | null)?.then === 'function';

export function makeDispatch(h: FuseHandlers, o: AdapterOptions): Dispatch {
  const queues = new Map<FuseOpName, DeadlineQueue | null>();
  const queueFor = (op: FuseOpName): DeadlineQueue | null => {
    let q = queues.get(op);
    if (q === undefined) {
      const ms = timeoutFor(op, o.opTimeoutMs);
      queues.set(op, (q = ms > 0 ? new DeadlineQueue(ms) : null));
    }
    return q;
  };

  function answer<T>(op: FuseOpName, path: string, v: T, reply: (v: T) => void, fail: (errno: number) => void): void {
    try {
      reply(v);
    } catch (err) {
      // reply() validates before it signals, so failing here has not answered yet.
      fail(toErrno(err, `${op} ${path}`, o.log));
    }
  }

  // Handlers may answer with a value (no promise: answered at once) or a promise.
  function run<T>(op: FuseOpName, path: string, call: () => T | Promise<T>, reply: (v: T) => void, fail: (errno: number) => void): void {
    let v: T | Promise<T>;
    try {
      v = call();
    } catch (err) {
      fail(toErrno(err, `${op} ${path}`, o.log));
      return;
    }
    if (!isThenable(v)) {
      answer(op, path, v, reply, fail);
      return;
    }
    const q = queueFor(op);
    if (!q) {
      v.then((x) => answer(op, path, x, reply, fail), (err) => fail(toErrno(err, `${op} ${path}`, o.log)));
      return;
    }
    const r: InFlight = {
      settled: false,
      at: 0,
      expire: () => {
        r.settled = true;
        o.log(`fuse: ${op} ${path}: no answer after ${q.ms} ms -> ETIMEDOUT (the handler is still running)`);
        fail(errno('ETIMEDOUT'));
      },
    };
    q.add(r);
    v.then(
      (x) => {
        if (r.settled) return;
        r.settled = true;
        q.settled();
        answer(op, path, x, reply, fail);
      },
      (err) => {
        if (r.settled) return;
        r.settled = true;
        q.settled();
        fail(toErrno(err, `${op} ${path}`, o.log));
      },
    );
  }

  const bad = (what: string) => Object.assign(new Error(what), { code: 'EIO' });
  const checkFh = (fh: unknown): number => {
    if (typeof fh !== 'number' || !Number.isInteger(fh) || fh < 1 || fh > MAX_FH) throw bad(`handler returned file handle ${String(fh)}; want an integer 1..2^31-1`);
    return fh;
  };
  const checkCount = (n: unknown, len: number): number => {
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > len) throw bad(`handler returned byte count ${String(n)} for a ${len}-byte request`);
    return n;
  };
  // Plain errors: answer with no payload; fuse-native fills in its defaults.
  const simple = (signal: Signal, op: FuseOpName, path: string, call: () => Promise<unknown>) =>
    run(op, path, call, () => signal(0), (e) => signal(e));
  // Bound once: handlers are often class instances, and the methods are called detached.
  const bound: Record<string, unknown> = {};
  for (const op of Object.keys(implementedOps(h))) bound[op] = (h as unknown as Record<string, (...a: unknown[]) => unknown>)[op]!.bind(h);
  const need = <K extends FuseOpName>(op: K): NonNullable<FuseHandlers[K]> => bound[op] as NonNullable<FuseHandlers[K]>;
  const dotStat: FileStat = { mode: DIR_STAT_MODE, size: 0, atime: 0, mtime: 0, ctime: 0 };

  return (name, signal, a) => {
    const path = a[0] as string;
    switch (name) {
      case 'getattr':
        return run('getattr', path, () => need('getattr')(path), (s) => signal(0, statArray(s)), (e) => signal(e));
      case 'fgetattr':
        return run('fgetattr', path, () => need('fgetattr')(path, a[1] as number), (s) => signal(0, statArray(s)), (e) => signal(e));
      case 'readdir':
        return run('readdir', path, () => need('readdir')(path), (entries) => {
          const list: DirEntry[] = entries.map((e) => (typeof e === 'string' ? { name: e } : e));
          const names = ['.', '..', ...list.map((e) => e.name)];
          // fuse-native passes stats only when there is one for every name.
          const withStats = list.length > 0 && list.every((e) => e.stat);
          const stats = withStats ? [statArray(dotStat), statArray(dotStat), ...list.map((e) => statArray(e.stat!))] : [];
          signal(0, names, stats);
        }, (e) => signal(e));
      case 'access':
        return simple(signal, 'access', path, () => need('access')(path, a[1] as number));
      case 'statfs':
        return run('statfs', path, () => need('statfs')(path), (s) => signal(0, statfsArray(s)), (e) => signal(e));
      case 'open':
        return run('open', path, () => need('open')(path, a[1] as number), (fh) => signal(0, checkFh(fh)), (e) => signal(e));
      case 'create':
        return run('create', path, () => need('create')(path, a[1] as number), (fh) => signal(0, checkFh(fh)), (e) => signal(e));
      case 'read': {
        const [, fh, buf, len] = a as [string, number, Buffer, number];
        return run('read', path, () => need('read')(path, fh, buf, len, u64(a[4], a[5])),
          (n) => signal(checkCount(n, len), 0, buf.buffer), (e) => signal(e, 0, buf.buffer));
      }
      case 'write': {
        const [, fh, buf, len] = a as [string, number, Buffer, number];
        return run('write', path, () => need('write')(path, fh, buf, len, u64(a[4], a[5])),
          (n) => signal(checkCount(n, len), 0, buf.buffer), (e) => signal(e, 0, buf.buffer));
      }
      case 'flush':
        return simple(signal, 'flush', path, () => need('flush')(path, a[1] as number));
      case 'release':
        return simple(signal, 'release', path, () => need('release')(path, a[1] as number));
      case 'fsync':
        return simple(signal, 'fsync', path, () => need('fsync')(path, a[2] as number, a[1] !== 0));
      case 'fsyncdir':
        return simple(signal, 'fsyncdir', path, () => need('fsyncdir')(path, a[2] as number, a[1] !== 0));
      case 'truncate':
        return simple(signal, 'truncate', path, () => need('truncate')(path, u64(a[1], a[2])));
      case 'ftruncate':
        return simple(signal, 'ftruncate', path, () => need('ftruncate')(path, a[1] as number, u64(a[2], a[3])));
      case 'unlink':
        return simple(signal, 'unlink', path, () => need('unlink')(path));
      case 'rename':
        return simple(signal, 'rename', path, () => need('rename')(path, a[1] as string));
      case 'mkdir':
        return simple(signal, 'mkdir', path, () => need('mkdir')(path, a[1] as number));
      case 'rmdir':
        return simple(signal, 'rmdir', path, () => need('rmdir')(path));
      case 'symlink':
        // libfuse's symlink(target, linkpath): the first argument is the link's contents.
        return simple(signal, 'symlink', a[1] as string, () => need('symlink')(path, a[1] as string));
      case 'readlink':
        return run('readlink', path, () => need('readlink')(path), (target) => signal(0, target), (e) => signal(e));
      case 'link':
        return simple(signal, 'link', path, () => need('link')(path, a[1] as string));
      case 'mknod':
        return simple(signal, 'mknod', path, () => need('mknod')(path, a[1] as number, a[2] as number));
      case 'chmod':
        return simple(signal, 'chmod', path, () => need('chmod')(path, a[1] as number));
      case 'chown': {
        const id = (v: unknown) => ((v as number) === 0xffffffff ? -1 : (v as number));
        return simple(signal, 'chown', path, () => need('chown')(path, id(a[1]), id(a[2])));
      }
      case 'utimens': {
        const [atime, mtime] = resolveUtimens(u64(a[1], a[2]), u64(a[3], a[4]), Date.now());
        return simple(signal, 'utimens', path, () => need('utimens')(path, atime, mtime));
      }
      case 'setxattr': {
        const value = a[2] as Buffer;
        return run('setxattr', path, () => need('setxattr')(path, a[1] as string, value, a[4] as number),
          () => signal(0, value.buffer), (e) => signal(e, value.buffer));
      }
      case 'getxattr': {
        const out = a[2] as Buffer;
        return run('getxattr', path, () => need('getxattr')(path, a[1] as string), (value) => {
          if (value === null) return signal(errno('ENODATA'), out.buffer);
          if (out.length === 0) return signal(value.length, out.buffer); // size query
          if (value.length > out.length) return signal(errno('ERANGE'), out.buffer);
          value.copy(out);
          signal(value.length, out.buffer);
        }, (e) => signal(e, out.buffer));
      }
      case 'listxattr': {
        const out = a[1] as Buffer;
        return run('listxattr', path, () => need('listxattr')(path), (names) => {
          const packed = Buffer.concat(names.map((n) => Buffer.from(n + '\0')));
          if (out.length === 0) return signal(packed.length, out.buffer); // size query
          if (packed.length > out.length) return signal(errno('ERANGE'), out.buffer);
          packed.copy(out);
          signal(packed.length, out.buffer);
        }, (e) => signal(e, out.buffer));
      }
      case 'removexattr':
        return simple(signal, 'removexattr', path, () => need('removexattr')(path, a[1] as string));
      default:
        o.log(`fuse: ${name} ${path}: no adapter for this operation -> ENOSYS`);
        return signal(errno('ENOSYS'));
    }
  };
}
