// LlSession: one mount on the libfuse3 low-level binding. Requests arrive in batches on the JS
// thread (onBatch); each is answered once, by id, with a reply method. The C side
// (native/src/fuse3/) runs libfuse's multithreaded loop, so nothing here blocks it: a reply only
// writes to /dev/fuse. README.md is the API description the namespace adapter codes against.
import { VmvaultError } from '../../errors.js';
import { EIO } from './errno.js';
import { type DataWindowStats, type Fuse3Addon, type Handle, loadFuse3 } from './native.js';
import { ringViews } from './write-ring.js';
import { A_COUNT, E_COUNT, openBits, packAttr, packDirents, packEntry, scratchF, scratchU } from './pack.js';
import type { LlAttr, LlDirent, LlEntry, LlLock, LlMountOptions, LlOpenFlags, LlRequest, LlStatfs } from './types.js';

export type * from './types.js';
export { dispatchOps, type LlOps } from './dispatch.js';
export { fuse3Available } from './native.js';

export type OnBatch = (reqs: LlRequest[], session: LlSession) => void;

/** The C side's word that request `target` was interrupted (never handed to onBatch). */
interface InterruptNotice {
  op: 'interrupt';
  id: 0;
  target: number;
  interrupted?: undefined;
}

const MiB = 1024 * 1024;
/**
 * The mount's read-ahead (KiB): 1 MiB requests (max_pages) with several in flight, so a
 * sequential reader costs one JS round trip per MiB, not per 128 KiB (tools/PERFORMANCE.md,
 * "Mount read path").
 */
const DEFAULT_READ_AHEAD_KB = 4096;

function fuseArgs(o: LlMountOptions): string[] {
  const opts = [`fsname=${o.fsname ?? 'vmvault'}`];
  if (o.subtype) opts.push(`subtype=${o.subtype}`);
  if (o.allowOther) opts.push('allow_other');
  if (o.defaultPermissions) opts.push('default_permissions');
  if (o.readOnly) opts.push('ro');
  for (const x of o.options ?? []) opts.push(x);
  for (const x of opts) {
    if (x.includes(',') && !x.startsWith('fsname=')) throw new VmvaultError('INVALID_ARGUMENT', `mount option ${JSON.stringify(x)} contains a comma`);
  }
  const args = ['-o', opts.map((x) => x.replace(/,/g, '\\,')).join(',')];
  if (o.debug) args.push('-d');
  return args;
}

export class LlSession {
  readonly mountpoint: string;
  private readonly addon: Fuse3Addon;
  private handle: Handle | null = null;
  private unmounting: Promise<void> | null = null;
  private onExit: (() => void) | null = null;

  private constructor(mountpoint: string, addon: Fuse3Addon) {
    this.mountpoint = mountpoint;
    this.addon = addon;
  }

  /**
   * Mounts at mountpoint (as root: mount(2) directly) with the low-level loop in C threads.
   * onBatch gets every batch of requests; if it throws, each request of the batch not yet
   * answered gets EIO (and the error goes to onError, default: stderr).
   */
  static async mount(mountpoint: string, opts: LlMountOptions, onBatch: OnBatch, onError?: (err: unknown) => void): Promise<LlSession> {
    const addon = loadFuse3();
    const s = new LlSession(mountpoint, addon);
    const maxWrite = opts.maxWrite ?? MiB;
    const maxInFlight = opts.maxInFlight ?? 1024;
    const maxThreads = opts.maxThreads ?? 4;
    const readAheadKb = opts.readAheadKb ?? DEFAULT_READ_AHEAD_KB;
    if (!Number.isInteger(maxWrite) || maxWrite < 4096 || maxWrite > MiB) throw new VmvaultError('INVALID_ARGUMENT', `maxWrite ${maxWrite}: want 4096..${MiB}`);
    if (!Number.isInteger(maxInFlight) || maxInFlight < 1 || maxInFlight > 65536) throw new VmvaultError('INVALID_ARGUMENT', `maxInFlight ${maxInFlight}: want 1..65536`);
    if (!Number.isInteger(maxThreads) || maxThreads < 1 || maxThreads > 256) throw new VmvaultError('INVALID_ARGUMENT', `maxThreads ${maxThreads}: want 1..256`);
    if (!Number.isInteger(readAheadKb) || readAheadKb < 0 || readAheadKb > 1 << 20) throw new VmvaultError('INVALID_ARGUMENT', `readAheadKb ${readAheadKb}: want 0..${1 << 20}`);
    const cfg = Int32Array.of(
      maxThreads,
      opts.cloneFd === false ? 0 : 1,
      opts.writebackCache ? 1 : 0,
      opts.readdirplus === false ? 0 : 1,
      opts.atomicOTrunc ? 1 : 0,
      maxWrite,
      maxInFlight,
      readAheadKb,
      opts.writeRing ? 1 : 0,
      // The environment's choice where the caller made none (tests and benches of the binding).
      (opts.jsReader ?? process.env.VMVAULT_FUSE_JS_READER === '1') ? 1 : 0,
    );
    const report = onError ?? ((err: unknown) => process.stderr.write(`vmvault fuse3: a batch handler threw: ${(err as Error)?.stack ?? String(err)}\n`));
    const deliver = (raw: unknown[]): void => {
      let reqs = raw as Array<LlRequest | InterruptNotice>;
      // Interrupt notices are the session's own business (onInterrupt); handlers never see them.
      let notices = false;
      for (const r of reqs) {
        if (r.op === 'interrupt') {
          notices = true;
          s.interrupt(r.target);
        } else if (r.interrupted) s.interrupt(r.id);
      }
      if (notices) reqs = reqs.filter((r) => r.op !== 'interrupt');
      if (reqs.length === 0) return;
      if (opts.writeRing) ringViews(addon, reqs);
      try {
        onBatch(reqs as LlRequest[], s);
      } catch (err) {
        report(err);
        for (const r of reqs) if (r.id !== 0) s.replyErr(r.id, EIO);
      }
    };
    try {
      s.handle = addon.mount(mountpoint, fuseArgs(opts), cfg, deliver);
      // A process that ends without unmount() (process.exit, an uncaught exception) must not
      // leave a dead mount ("Transport endpoint is not connected") behind.
      const h = s.handle;
      s.onExit = () => addon.detach(h);
      process.once('exit', s.onExit);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      const code = e.code === 'ENOENT' ? 'NOT_FOUND' : e.code === 'ENOTDIR' ? 'NOT_DIRECTORY' : e.code === 'EPERM' || e.code === 'EACCES' ? 'NOT_PERMITTED' : 'IO';
      throw new VmvaultError(code, `mount ${mountpoint}: ${e.message}`, { mountpoint }, err);
    }
    return s;
  }

  /** /sys/fs/fuse/connections/N of this mount (-1 if unknown). */
  get connection(): number {
    return this.handle ? this.addon.stats(this.handle).connection : -1;
  }

  /** Batches and requests handed to JS so far, and the largest batch. */
  get stats(): { batches: number; requests: number; maxBatch: number; jsReads: number } {
    if (!this.handle) return { batches: 0, requests: 0, maxBatch: 0, jsReads: 0 };
    const { batches, requests, maxBatch, jsReads } = this.addon.stats(this.handle);
    return { batches, requests, maxBatch, jsReads };
  }

  /**
   * Zero runs of the open (ino, fh), (start, end) pairs sorted: reads wholly inside one are
   * answered with zeros by the addon on libfuse's thread, never reaching JavaScript. The caller
   * must clear them (clearHoles) before it answers anything that changes the file's bytes, and
   * at release. False when not taken (then reads come here as before).
   */
  setHoles(ino: bigint | number, fh: number, runs: Float64Array): boolean {
    return this.handle ? this.addon.setHoles(this.handle, Number(ino), fh, runs) : false;
  }

  clearHoles(ino: bigint | number, fh: number): void {
    if (this.handle) this.addon.clearHoles(this.handle, Number(ino), fh);
  }

  /** Reads answered from holes (setHoles) without JavaScript so far. */
  get holeReads(): number {
    return this.handle ? this.addon.holeReads(this.handle) : 0;
  }

  /**
   * Bytes [start, start + buf.length) of the open (ino, fh) read as `buf`: reads inside it (with
   * a later window of the open registered too) are answered by the addon on libfuse's thread
   * (native/src/fuse3/datawin.c). The caller must not write or let go of `buf` before
   * dropDataWindow(buf), and must clear the open's windows (clearDataWindows) before it answers
   * anything that changes the file's bytes, and at release. False when not taken.
   */
  setDataWindow(ino: bigint | number, fh: number, start: number, buf: Buffer): boolean {
    return this.handle ? this.addon.setDataWindow(this.handle, Number(ino), fh, start, buf) : false;
  }

  /** Every window in buf's memory is forgotten, and no reply reads it any more, when this returns. */
  dropDataWindow(buf: Buffer): void {
    if (this.handle) this.addon.dropDataWindow(this.handle, buf);
  }

  clearDataWindows(ino: bigint | number, fh: number): void {
    if (this.handle) this.addon.clearDataWindows(this.handle, Number(ino), fh);
  }

  /** Reads answered from data windows, bytes registered now and at most, the cap. */
  get dataWindows(): DataWindowStats {
    return this.handle ? this.addon.dataWindowStats(this.handle) : { answered: 0, bytes: 0, peak: 0, cap: 0, windows: 0 };
  }

  setDataWindowCap(bytes: number): void {
    if (this.handle) this.addon.setDataWindowCap(this.handle, bytes);
  }

  /**
   * Lets the addon answer getattr of `attr.ino` by itself (native/src/fuse3/attrs.c). The caller
   * vouches that the attributes are current and must clear them (clearAttr, clearAttrs) before
   * it acknowledges any change to the node. False when not taken.
   */
  setAttr(attr: LlAttr, timeout: number): boolean {
    if (!this.handle) return false;
    packAttr(scratchF, 0, attr);
    scratchF[A_COUNT] = timeout;
    return this.addon.setAttr(this.handle, attr.ino, scratchF);
  }

  clearAttr(ino: bigint): void {
    if (this.handle) this.addon.clearAttr(this.handle, ino);
  }

  clearAttrs(): void {
    if (this.handle) this.addon.clearAttrs(this.handle);
  }

  /** Getattrs answered from setAttr's table without JavaScript so far. */
  get attrHits(): number {
    return this.handle ? this.addon.attrHits(this.handle) : 0;
  }

  /**
   * Every name of directory `dir`: the addon answers lookups of any other name in it "no such
   * name" without this thread (native/src/fuse3/names.c), and the kernel keeps that answer for
   * `timeout` seconds. The caller vouches the list is whole, must add every name made in `dir`
   * (addName) before it acknowledges the change that made it, and must invalidate the kernel's
   * entry of a name made by anything but the kernel's own request. False when not taken.
   */
  setNames(dir: bigint, names: string[], timeout: number): boolean {
    return this.handle !== null && this.addon.setNames(this.handle, dir, names, timeout);
  }

  /** A name made in `dir`; false: `dir` is not held (any more), nothing to do. */
  addName(dir: bigint, name: string): boolean {
    return this.handle !== null && this.addon.addName(this.handle, dir, name);
  }

  removeName(dir: bigint, name: string): void {
    if (this.handle) this.addon.removeName(this.handle, dir, name);
  }

  dropNames(dir: bigint): void {
    if (this.handle) this.addon.dropNames(this.handle, dir);
  }

  clearNames(): void {
    if (this.handle) this.addon.clearNames(this.handle);
  }

  /** Lookups answered "no such name" from setNames' table without JavaScript so far. */
  get nameHits(): number {
    return this.handle ? this.addon.nameHits(this.handle) : 0;
  }

  /**
   * The addon answers flushes of `fh` itself until the kernel releases it, unless a POSIX lock
   * was ever asked for (locksUsed): for handles whose flush has nothing to do (opened read-only).
   * Called before the open that made `fh` is answered. False when not taken.
   */
  quietFlush(fh: number): boolean {
    return this.handle !== null && this.addon.quietFlush(this.handle, fh);
  }

  /** Flushes of `fh` reach this thread again (its open was not answered). */
  unquiet(fh: number): void {
    if (this.handle) this.addon.unquiet(this.handle, fh);
  }

  /** Called before a lock request is answered: flushes drop POSIX locks, so all come here from now on. */
  locksUsed(): void {
    if (this.handle) this.addon.locksUsed(this.handle);
  }

  /** Flushes answered by the addon without JavaScript so far. */
  get quietFlushes(): number {
    return this.handle ? this.addon.quietFlushes(this.handle) : 0;
  }

  private get h(): Handle {
    if (!this.handle) throw new VmvaultError('CLOSED', `${this.mountpoint} is not mounted`);
    return this.handle;
  }

  // ---- interrupts ---------------------------------------------------------------------------
  // The kernel interrupts a request when its caller gets a signal while waiting for the answer
  // (flock -w's alarm, Ctrl-C on a blocked fcntl(F_SETLKW)); it then waits (killably) for an
  // answer, which should be EINTR if the work could be given up. The C side tells us by a flag
  // on the request (interrupted before it was handed over) or by a notice afterwards.

  /** Requests interrupted and not yet answered. */
  private readonly interrupts = new Set<number>();
  /** What gives up the work of a request, registered by its handler (onInterrupt). */
  private readonly cancels = new Map<number, () => void>();

  private interrupt(id: number): void {
    this.interrupts.add(id);
    const cancel = this.cancels.get(id);
    if (cancel) {
      this.cancels.delete(id);
      cancel();
    }
  }

  /** Whether the kernel interrupted request `id` (it is still unanswered). */
  interrupted(id: number): boolean {
    return this.interrupts.size !== 0 && this.interrupts.has(id);
  }

  /**
   * Registers what gives up request `id`'s work (it should then answer EINTR) if the kernel
   * interrupts it; runs it at once if that happened already. Forgotten when the request is
   * answered.
   */
  onInterrupt(id: number, cancel: () => void): void {
    if (this.interrupted(id)) cancel();
    else this.cancels.set(id, cancel);
  }

  /** Every reply passes here: an answered id has nothing left to interrupt. */
  private settled<T>(id: number, result: T): T {
    if (this.interrupts.size !== 0) this.interrupts.delete(id);
    if (this.cancels.size !== 0) this.cancels.delete(id);
    return result;
  }

  replyErr(id: number, errno: number): boolean {
    return this.settled(id, this.addon.replyErr(this.h, id, errno));
  }

  replyNone(id: number): boolean {
    return id === 0 ? true : this.settled(id, this.addon.replyNone(this.h, id));
  }

  replyEntry(id: number, entry: LlEntry): boolean {
    packEntry(scratchF, 0, scratchU, 0, entry);
    return this.settled(id, this.addon.replyEntry(this.h, id, scratchF, scratchU));
  }

  replyCreate(id: number, entry: LlEntry, fh: number, open?: LlOpenFlags): boolean {
    packEntry(scratchF, 0, scratchU, 0, entry);
    scratchF[E_COUNT] = fh;
    scratchF[E_COUNT + 1] = openBits(open);
    return this.settled(id, this.addon.replyCreate(this.h, id, scratchF, scratchU));
  }

  replyAttr(id: number, attr: LlAttr, timeout: number): boolean {
    packAttr(scratchF, 0, attr);
    scratchF[A_COUNT] = timeout;
    scratchU[0] = attr.ino;
    return this.settled(id, this.addon.replyAttr(this.h, id, scratchF, scratchU));
  }

  replyOpen(id: number, fh: number, open?: LlOpenFlags): boolean {
    return this.settled(id, this.addon.replyOpen(this.h, id, fh, openBits(open)));
  }

  /** Read data (short = end of file), passed to the kernel straight from buf. */
  replyData(id: number, buf: Uint8Array): boolean {
    return this.settled(id, this.addon.replyData(this.h, id, buf));
  }

  replyWrite(id: number, n: number): boolean {
    return this.settled(id, this.addon.replyWrite(this.h, id, n));
  }

  replyReadlink(id: number, target: string): boolean {
    return this.settled(id, this.addon.replyReadlink(this.h, id, target));
  }

  /**
   * A readdir page: as many entries as fit the kernel's buffer, in order. Returns how many
   * were taken (-1: id not outstanding); with plus, each taken entry that has `entry` (and is
   * not . or ..) counts one lookup of its inode.
   */
  replyDir(id: number, entries: LlDirent[]): number {
    const { names, f, u } = packDirents(entries);
    return this.settled(id, this.addon.replyDir(this.h, id, names, f, u));
  }

  replyStatfs(id: number, st: LlStatfs): boolean {
    const f = Float64Array.of(st.bsize, st.frsize, st.blocks, st.bfree, st.bavail, st.files, st.ffree, st.favail ?? st.ffree, st.namemax ?? 255);
    return this.settled(id, this.addon.replyStatfs(this.h, id, f));
  }

  replyLock(id: number, lock: LlLock): boolean {
    return this.settled(id, this.addon.replyLock(this.h, id, Float64Array.of(lock.type, lock.start, lock.end, lock.pid)));
  }

  replyLseek(id: number, off: number): boolean {
    return this.settled(id, this.addon.replyLseek(this.h, id, off));
  }

  /**
   * Asks the kernel to drop its entry (positive or negative) for `name` in directory `parent`.
   * Queued to the addon's own thread (the kernel's side waits on the directory's lock, which a
   * request waiting for us may hold): returns at once, true when queued; it lands shortly
   * after. False when unmounted, unmounting or the queue is full.
   */
  invalidateEntry(parent: bigint, name: string): boolean {
    return this.handle !== null && this.unmounting === null && this.addon.invalidateEntry(this.handle, parent, name);
  }

  /** Invalidations queued, written and refused by the kernel (other than "no such entry"). */
  get notifyStats(): { queued: number; sent: number; failed: number } {
    // Not while unmounting: the addon frees the notification thread's state off this thread.
    return this.handle && !this.unmounting ? this.addon.notifyStats(this.handle) : { queued: 0, sent: 0, failed: 0 };
  }

  /**
   * Exits the loop, detaches the mount, aborts the connection (so a file still open elsewhere
   * cannot keep the threads waiting) and joins the C threads, off the JS thread. Requests not
   * yet answered get ENOTCONN; later replies return false. Idempotent.
   */
  unmount(): Promise<void> {
    if (!this.unmounting) {
      const h = this.handle;
      if (this.onExit) process.removeListener('exit', this.onExit);
      this.onExit = null;
      this.unmounting = h ? this.addon.unmount(h) : Promise.resolve();
    }
    return this.unmounting;
  }
}
