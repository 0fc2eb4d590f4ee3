// A typed FUSE mount over fuse-native: give it promise-returning handlers (handlers.ts), mount,
// unmount. What fuse-native gets wrong is corrected in native.ts and native-layout.ts; errors
// become errnos in errno.ts; mount points are probed and cleared in mount-util.ts.
import { resolve } from 'node:path';
import type { LogLine } from './errno.js';
import type { FuseHandlers } from './handlers.js';
import { enableUtimeOmit } from './native-layout.js';
import { nativeFuse, type NativeFuse } from './native.js';
import { implementedOps, makeDispatch } from './ops-adapter.js';
import { optionString, type FuseMountOptions } from './options.js';
import { abortConnection, fuseMountsAt, prepareMountPoint, unmountFuse, type UnmountResult } from './mount-util.js';

export type { FuseHandlers, FileStat, FsStats, DirEntry, FileHandle, FuseOpName } from './handlers.js';
export type { FuseMountOptions, OpTimeouts } from './options.js';
export { DEFAULT_OP_TIMEOUTS } from './options.js';

const MOUNT_TIMEOUT_MS = 30_000;

const stderrLog: LogLine = (line) => process.stderr.write(line + '\n');

export class FuseMount {
  readonly mountPath: string;
  private readonly handlers: FuseHandlers;
  private readonly options: FuseMountOptions;
  private readonly log: LogLine;
  private fuse: NativeFuse | undefined;
  private state: 'unmounted' | 'mounting' | 'mounted' | 'unmounting' = 'unmounted';
  private omitNote: string | undefined;
  /** The FUSE connection number of the kernel mount this object made (see mount-util.ts). */
  private minor: number | undefined;

  constructor(mountPath: string, handlers: FuseHandlers, options: FuseMountOptions = {}) {
    this.mountPath = resolve(mountPath);
    this.handlers = handlers;
    this.options = options;
    this.log = options.log ?? stderrLog;
  }

  get mounted(): boolean {
    return this.state === 'mounted';
  }

  /** Which libfuse.so.2 the process uses: Debian's, or the copy shipped with fuse-native. */
  static libfuse(): 'system' | 'bundled' {
    return nativeFuse().libfuse;
  }

  /**
   * Why single-time utimens (touch -m -d) is not passed through, or undefined if it is.
   * Set after mount().
   */
  get utimeOmitProblem(): string | undefined {
    return this.omitNote;
  }

  /** The kernel's FUSE connection number of our mount, while mounted. */
  get connection(): number | undefined {
    return this.minor;
  }

  /**
   * Mount and resolve once the kernel has initialised the connection. A stale mount left at
   * the path by a dead server is cleared first; a live one (another process serves it) is a
   * CONFLICT error, and is left exactly as it was: a failed mount() only ever clears a kernel
   * mount this call made.
   */
  async mount(): Promise<void> {
    if (this.state !== 'unmounted') throw new Error(`${this.mountPath}: mount() while ${this.state}`);
    this.state = 'mounting';
    // Connections at the path before ours: whatever else is there is not ours to clear.
    let before: Set<number> | undefined;
    try {
      // Stale mount first: mkdir (and stat) of a mount point whose server died fail with ENOTCONN.
      await prepareMountPoint(this.mountPath, { mkdir: this.options.mkdir });

      const { ctor } = nativeFuse();
      const opts = optionString(this.options);
      const dispatch = makeDispatch(this.handlers, { opTimeoutMs: this.options.opTimeoutMs, log: this.log });
      const fuse = new ctor(this.mountPath, implementedOps(this.handlers), opts, dispatch);
      before = new Set((await fuseMountsAt(this.mountPath)).map((m) => m.minor));
      await withTimeout(
        new Promise<void>((ok, fail) => fuse.mount((err) => (err ? fail(err) : ok()))),
        MOUNT_TIMEOUT_MS,
        `${this.mountPath}: the kernel did not initialise the FUSE connection`,
      );
      this.fuse = fuse;
      this.minor = (await fuseMountsAt(this.mountPath)).map((m) => m.minor).filter((m) => !before!.has(m)).pop();
      this.state = 'mounted';
      await this.enableUtimeOmit(fuse, opts);
    } catch (err) {
      if (this.state === 'mounting') {
        this.state = 'unmounted';
        // A kernel mount of ours may exist without a working server (INIT never answered).
        if (before !== undefined) await this.clearOwn(before).catch(() => undefined);
      }
      throw err;
    }
  }

  /** Abort and detach the mounts at our path that were not there before we mounted. */
  private async clearOwn(before: Set<number>): Promise<void> {
    for (;;) {
      const mounts = await fuseMountsAt(this.mountPath);
      const top = mounts[mounts.length - 1];
      // Only the topmost can be unmounted by path; if it is not ours, ours is hidden under it.
      if (top === undefined || before.has(top.minor)) return;
      await abortConnection(top.minor);
      await unmountFuse(this.mountPath, { timeoutMs: 10_000 });
    }
  }

  /**
   * Whether our kernel mount is still attached at the path. False once someone else unmounted
   * it (fusermount -u, umount -l): the appliance then calls detached() and mounts again.
   */
  async attached(): Promise<boolean> {
    if (this.state !== 'mounted') return false;
    const mounts = await fuseMountsAt(this.mountPath);
    return this.minor === undefined ? mounts.length > 0 : mounts.some((m) => m.minor === this.minor);
  }

  /**
   * Forget a mount that someone else took away, releasing fuse-native's hold on the event loop,
   * so that mount() can be called again. Touches nothing at the path.
   */
  detached(): void {
    if (this.state !== 'mounted') return;
    const fuse = this.fuse!;
    nativeFuse().binding.fuse_native_unmount(fuse.mnt, fuse._thread!);
    this.fuse = undefined;
    this.minor = undefined;
    this.state = 'unmounted';
  }

  private async enableUtimeOmit(fuse: NativeFuse, opts: string): Promise<void> {
    if (this.options.utimeOmit === false) {
      this.omitNote = 'disabled by option';
      return;
    }
    const o = this.options;
    try {
      this.omitNote = await enableUtimeOmit(fuse._thread!, fuse.mnt, opts, {
        entryTimeoutS: o.entryTimeoutS ?? 1,
        negativeTimeoutS: o.negativeTimeoutS ?? 0,
        attrTimeoutS: o.attrTimeoutS ?? 1,
        debug: o.debug ?? false,
        useIno: o.useIno ?? false,
        kernelCache: o.kernelCache ?? false,
        autoCache: o.autoCache ?? true,
      });
    } catch (err) {
      this.omitNote = (err as Error).message;
    }
    if (this.omitNote) this.log(`fuse: ${this.mountPath}: setting only atime or only mtime will be ignored (${this.omitNote})`);
  }

  /**
   * Unmount: gracefully if nothing uses the mount, otherwise lazily (detached now, gone when the
   * last user lets go). Then release fuse-native's hold on the event loop. Unmounting goes by
   * path, so it happens only while our mount is the topmost one there: a mount someone else
   * made at the path (after ours vanished, or over it) is never touched ('none').
   */
  async unmount(): Promise<UnmountResult> {
    if (this.state !== 'mounted') throw new Error(`${this.mountPath}: unmount() while ${this.state}`);
    this.state = 'unmounting';
    const fuse = this.fuse!;
    try {
      const top = (await fuseMountsAt(this.mountPath)).pop();
      const ours = top !== undefined && (this.minor === undefined || top.minor === this.minor);
      const result: UnmountResult = ours ? await unmountFuse(this.mountPath) : { how: 'none' };
      if (!ours && top !== undefined) this.log(`fuse: ${this.mountPath}: the mount there is not ours (connection ${top.minor}); left alone`);
      // fuse-native's own close runs `fusermount -uz` first, which fails once we have unmounted
      // (and where fusermount is absent), skipping the native cleanup: call that directly.
      nativeFuse().binding.fuse_native_unmount(fuse.mnt, fuse._thread!);
      this.fuse = undefined;
      this.minor = undefined;
      this.state = 'unmounted';
      return result;
    } catch (err) {
      this.state = 'mounted';
      throw err;
    }
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, fail) => {
    timer = setTimeout(() => fail(new Error(`${what} within ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}
