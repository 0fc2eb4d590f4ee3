// A typed FUSE mount over fuse-native: give it promise-returning handlers (handlers.ts), mount,
// unmount. What fuse-native gets wrong is corrected in native.ts and native-layout.ts; errors
// become errnos in errno.ts; mount points are probed and cleared in mount-util.ts.
import { mkdir, stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { LogLine } from './errno.js';
import type { FuseHandlers } from './handlers.js';
import { enableUtimeOmit } from './native-layout.js';
import { nativeFuse, type NativeFuse } from './native.js';
import { implementedOps, makeDispatch } from './ops-adapter.js';
import { optionString, type FuseMountOptions } from './options.js';
import { clearFuseMount, clearStaleMount, unmountFuse, type UnmountResult } from './mount-util.js';

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

  /**
   * Mount and resolve once the kernel has initialised the connection. A stale mount left at
   * the path by a dead server is cleared first; a live one is an error.
   */
  async mount(): Promise<void> {
    if (this.state !== 'unmounted') throw new Error(`${this.mountPath}: mount() while ${this.state}`);
    this.state = 'mounting';
    try {
      // Stale mount first: mkdir (and stat) of a mount point whose server died fail with ENOTCONN.
      const before = await clearStaleMount(this.mountPath);
      if (this.options.mkdir) await mkdir(this.mountPath, { recursive: true });
      if (before === 'healthy' || before === 'hung') throw new Error(`${this.mountPath}: another FUSE file system is mounted here (${before})`);
      if (!(await stat(this.mountPath)).isDirectory()) throw new Error(`${this.mountPath}: mount point is not a directory`);

      const { ctor } = nativeFuse();
      const opts = optionString(this.options);
      const dispatch = makeDispatch(this.handlers, { opTimeoutMs: this.options.opTimeoutMs, log: this.log });
      const fuse = new ctor(this.mountPath, implementedOps(this.handlers), opts, dispatch);
      await withTimeout(
        new Promise<void>((ok, fail) => fuse.mount((err) => (err ? fail(err) : ok()))),
        MOUNT_TIMEOUT_MS,
        `${this.mountPath}: the kernel did not initialise the FUSE connection`,
      );
      this.fuse = fuse;
      this.state = 'mounted';
      await this.enableUtimeOmit(fuse, opts);
    } catch (err) {
      if (this.state === 'mounting') {
        this.state = 'unmounted';
        // A kernel mount may exist without a working server (INIT never answered).
        await clearFuseMount(this.mountPath).catch(() => undefined);
      }
      throw err;
    }
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
   * last user lets go). Then release fuse-native's hold on the event loop.
   */
  async unmount(): Promise<UnmountResult> {
    if (this.state !== 'mounted') throw new Error(`${this.mountPath}: unmount() while ${this.state}`);
    this.state = 'unmounting';
    const fuse = this.fuse!;
    try {
      const result = await unmountFuse(this.mountPath);
      // fuse-native's own close runs `fusermount -uz` first, which fails once we have unmounted
      // (and where fusermount is absent), skipping the native cleanup: call that directly.
      nativeFuse().binding.fuse_native_unmount(fuse.mnt, fuse._thread!);
      this.fuse = undefined;
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
