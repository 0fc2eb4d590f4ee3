// The vmvault mount on the libfuse3 low-level binding: a stale mount at the path is cleared
// first, a live one is refused (CONFLICT), and the mount watch can ask whether ours is still
// attached.

import { resolve } from 'node:path';
import type { Namespace } from '../namespace/namespace.js';
import type { LogLine } from './errno.js';
import { LlFileSystem, type MountAuditEvent } from './ll-filesystem.js';
import type { VirtualTree } from './ll-virtual.js';
import { LlSession } from './ll/session.js';
import { fuseMountsAt, prepareMountPoint } from './mount-util.js';
import type { Mount } from './mount.js';

export interface LlMountOptions {
  mkdir?: boolean;
  allowOther?: boolean;
  log?: LogLine;
  maxThreads?: number;
  /**
   * The JS thread reads /dev/fuse itself, without libfuse's worker threads (LlMountOptions in
   * ll/types.ts). Default: off, unless `VMVAULT_FUSE_JS_READER=1` is in the environment: it cuts
   * an rsync's CPU by a third under load, but answers the addon's C reads (holes, read-ahead
   * windows) on the JS thread, and quiet it made rsync no faster and small-file creates and
   * unlinks slower (tools/PERFORMANCE.md, "Quiet re-measure on the merged tree (35d1aeb ...)").
   */
  jsReader?: boolean;
  /** A read-only tree grafted onto the mount (the catalog's `.files/`). */
  virtual?: VirtualTree;
  /** Receives the audited mount operations (shares made or removed, fastcopies), with the caller. */
  audit?: (e: MountAuditEvent) => void;
}

export class LlMount implements Mount {
  readonly mountPath: string;
  readonly fs: LlFileSystem;
  private session: LlSession | undefined;
  private minor: number | undefined;
  private readonly log: LogLine;

  constructor(
    mountPath: string,
    ns: Namespace,
    private readonly options: LlMountOptions = {},
  ) {
    this.mountPath = resolve(mountPath);
    this.log = options.log ?? ((l) => process.stderr.write(l + '\n'));
    this.fs = new LlFileSystem(ns, { log: this.log, virtual: options.virtual, audit: options.audit });
  }

  get mounted(): boolean {
    return this.session !== undefined;
  }

  get connection(): number | undefined {
    return this.minor;
  }

  async mount(): Promise<void> {
    if (this.session) throw new Error(`${this.mountPath}: mount() while mounted`);
    await prepareMountPoint(this.mountPath, { mkdir: this.options.mkdir });
    const session = await LlSession.mount(
      this.mountPath,
      { fsname: 'vmvault', subtype: 'vmvault', allowOther: this.options.allowOther ?? false, defaultPermissions: true, maxThreads: this.options.maxThreads ?? 4, readdirplus: false, writeRing: true, jsReader: this.options.jsReader },
      this.fs.onBatch(),
      (err) => this.log(`fuse3: a batch handler threw: ${(err as Error)?.stack ?? String(err)}`),
    );
    this.session = session;
    this.minor = session.connection;
  }

  async attached(): Promise<boolean> {
    if (!this.session) return false;
    const mounts = await fuseMountsAt(this.mountPath);
    return this.minor === undefined ? mounts.length > 0 : mounts.some((m) => m.minor === this.minor);
  }

  detached(): void {
    const s = this.session;
    if (!s) return;
    this.session = undefined;
    this.minor = undefined;
    this.fs.close();
    // Stops the C threads; the kernel mount is already gone.
    void s.unmount().catch((err) => this.log(`fuse3: ${this.mountPath}: stopping a detached session: ${(err as Error).message}`));
  }

  async unmount(): Promise<void> {
    const s = this.session;
    if (!s) throw new Error(`${this.mountPath}: unmount() while not mounted`);
    this.session = undefined;
    this.minor = undefined;
    this.fs.close();
    await s.unmount();
  }
}
