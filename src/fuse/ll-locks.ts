// Byte-range (POSIX, OFD) and whole-file (flock) locks of the mount, kept in memory: the
// libfuse3 binding asks for FUSE_CAP_POSIX_LOCKS and FUSE_CAP_FLOCK_LOCKS, so the kernel hands
// every lock request to us instead of keeping them itself. Locks live as long as the process
// (as on any local file system, they do not survive a restart). QEMU takes OFD locks on bytes
// of its images to keep a second QEMU from opening one read-write: getlk must report them.
//
// POSIX locks belong to a lock owner (the kernel's id of a process's files table, or of an open
// file description for OFD locks) and are dropped by flush with that owner; flock locks belong
// to an open file (its handle) and are dropped at release. The kernel sends no unlock when the
// last descriptor of an open file description closes (it keeps no local record of locks a FUSE
// server holds), so release also drops the POSIX locks of every owner that locked through that
// handle: OFD locks end with their open file (QEMU's image locks, when QEMU exits), and for
// classic POSIX locks closing any descriptor of the file ends them anyway. A blocking request waits in a queue
// and is retried whenever a lock on that node is released, until the kernel interrupts it (the
// caller got a signal: `flock -w`'s alarm, Ctrl-C): then it leaves the queue and fails with
// EINTR. No deadlock detection (EDEADLK).

export const F_RDLCK = 0;
export const F_WRLCK = 1;
export const F_UNLCK = 2;
export const LOCK_SH = 1;
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;

export interface RangeLock {
  type: number;
  start: number;
  /** Inclusive. */
  end: number;
  pid: number;
}

interface Held extends RangeLock {
  owner: bigint;
}

interface Waiter {
  retry(): boolean;
}

/** Registers what gives up a blocked lock request (the session's onInterrupt). */
export type OnCancel = (cancel: () => void) => void;

function interrupted(): Error {
  return Object.assign(new Error('lock wait interrupted'), { code: 'EINTR' });
}

export class LockTable {
  private readonly posix = new Map<bigint, Held[]>();
  private readonly flocks = new Map<bigint, Map<number, boolean /* exclusive */>>();
  private readonly waiters = new Map<bigint, Waiter[]>();
  /** Lock owners that set locks through each open file handle. */
  private readonly owners = new Map<number, Set<bigint>>();

  /** Records that `owner` locks through handle `fh` (setlk). */
  used(fh: number, owner: bigint): void {
    const set = this.owners.get(fh) ?? new Set<bigint>();
    set.add(owner);
    this.owners.set(fh, set);
  }

  /** Release of an open file: its flock, and the POSIX locks of every owner that used it. */
  dropHandle(node: bigint, fh: number): void {
    this.dropFlock(node, fh);
    for (const owner of this.owners.get(fh) ?? []) this.dropOwner(node, owner);
    this.owners.delete(fh);
  }

  /** The first lock of another owner that conflicts with `want`, or undefined. */
  conflict(node: bigint, owner: bigint, want: RangeLock): RangeLock | undefined {
    for (const h of this.posix.get(node) ?? []) {
      if (h.owner === owner) continue;
      if (h.end < want.start || h.start > want.end) continue;
      if (h.type === F_WRLCK || want.type === F_WRLCK) return { type: h.type, start: h.start, end: h.end, pid: h.pid };
    }
    return undefined;
  }

  /** getlk: the conflicting lock, or `want` with type F_UNLCK. */
  test(node: bigint, owner: bigint, want: RangeLock): RangeLock {
    return this.conflict(node, owner, want) ?? { ...want, type: F_UNLCK };
  }

  /**
   * setlk: true if set (or unlocked); false if another owner holds a conflicting lock and
   * `wait` is false. With `wait`, resolves once it could be set, or rejects (EINTR) if
   * `onCancel`'s cancel is called first.
   */
  set(node: bigint, owner: bigint, want: RangeLock, wait: boolean, onCancel?: OnCancel): boolean | Promise<true> {
    if (want.type === F_UNLCK) {
      this.cut(node, owner, want.start, want.end);
      this.wake(node);
      return true;
    }
    if (!this.conflict(node, owner, want)) {
      this.place(node, owner, want);
      return true;
    }
    if (!wait) return false;
    return new Promise<true>((resolve, reject) => {
      this.queue(
        node,
        () => {
          if (this.conflict(node, owner, want)) return false;
          this.place(node, owner, want);
          resolve(true);
          return true;
        },
        onCancel,
        reject,
      );
    });
  }

  /** Drops every POSIX lock of `owner` on `node` (flush: close(2) of any descriptor drops them). */
  dropOwner(node: bigint, owner: bigint): void {
    const list = this.posix.get(node);
    if (!list) return;
    const kept = list.filter((h) => h.owner !== owner);
    if (kept.length === list.length) return;
    if (kept.length) this.posix.set(node, kept);
    else this.posix.delete(node);
    this.wake(node);
  }

  /**
   * flock(2) by open file `fh`: true if done; false if it would block and LOCK_NB was given;
   * otherwise resolves once taken, or rejects (EINTR) if `onCancel`'s cancel is called first.
   */
  flock(node: bigint, fh: number, operation: number, onCancel?: OnCancel): boolean | Promise<true> {
    if (operation & LOCK_UN) {
      this.dropFlock(node, fh);
      return true;
    }
    const exclusive = (operation & LOCK_EX) !== 0;
    // A conversion drops the old lock first, as Linux does (it is not atomic).
    this.dropFlock(node, fh);
    // The node's table is looked up afresh on every try: a release may have dropped it.
    const take = (): boolean => {
      const held = this.flocks.get(node) ?? new Map<number, boolean>();
      if (![...held].every(([other, ex]) => other === fh || (!ex && !exclusive))) return false;
      held.set(fh, exclusive);
      this.flocks.set(node, held);
      return true;
    };
    if (take()) return true;
    if (operation & LOCK_NB) return false;
    return new Promise<true>((resolve, reject) => {
      this.queue(
        node,
        () => {
          if (!take()) return false;
          resolve(true);
          return true;
        },
        onCancel,
        reject,
      );
    });
  }

  dropFlock(node: bigint, fh: number): void {
    const held = this.flocks.get(node);
    if (!held?.delete(fh)) return;
    if (held.size === 0) this.flocks.delete(node);
    this.wake(node);
  }

  /** Locks held on `node`, for tests and /health. */
  count(node: bigint): number {
    return (this.posix.get(node)?.length ?? 0) + (this.flocks.get(node)?.size ?? 0);
  }

  private place(node: bigint, owner: bigint, want: RangeLock): void {
    // An owner's new lock replaces whatever it held over that range (also a downgrade).
    this.cut(node, owner, want.start, want.end);
    const list = this.posix.get(node) ?? [];
    list.push({ ...want, owner });
    this.posix.set(node, list);
    // A downgrade can let readers in.
    this.wake(node);
  }

  /** Removes [start, end] from `owner`'s locks on `node`, splitting those that straddle it. */
  private cut(node: bigint, owner: bigint, start: number, end: number): void {
    const list = this.posix.get(node);
    if (!list) return;
    const out: Held[] = [];
    for (const h of list) {
      if (h.owner !== owner || h.end < start || h.start > end) {
        out.push(h);
        continue;
      }
      if (h.start < start) out.push({ ...h, end: start - 1 });
      if (h.end > end) out.push({ ...h, start: end + 1 });
    }
    if (out.length) this.posix.set(node, out);
    else this.posix.delete(node);
  }

  /** Waiting requests, for tests. */
  waiting(node: bigint): number {
    return this.waiters.get(node)?.length ?? 0;
  }

  private queue(node: bigint, retry: () => boolean, onCancel?: OnCancel, reject?: (err: Error) => void): void {
    const w: Waiter = { retry };
    const q = this.waiters.get(node) ?? [];
    q.push(w);
    this.waiters.set(node, q);
    onCancel?.(() => {
      const list = this.waiters.get(node);
      const at = list ? list.indexOf(w) : -1;
      if (at < 0) return; // already granted
      list!.splice(at, 1);
      if (list!.length === 0) this.waiters.delete(node);
      reject?.(interrupted());
    });
  }

  private wake(node: bigint): void {
    const q = this.waiters.get(node);
    if (!q) return;
    this.waiters.delete(node);
    const left = q.filter((w) => !w.retry());
    if (left.length) this.waiters.set(node, [...left, ...(this.waiters.get(node) ?? [])]);
  }
}
