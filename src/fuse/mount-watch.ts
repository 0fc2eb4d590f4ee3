// Keeps a Mount mounted: notices when someone else takes it away (fusermount -u, umount -l,
// a second process clearing the path) and mounts it again. Checking is a read of
// /proc/self/mountinfo, never a call into the mount, so it cannot block on our own file system.
import type { LogLine } from './errno.js';
import type { Mount } from './mount.js';

export interface MountWatchOptions {
  /** How often to look, ms. Default 1000. */
  intervalMs?: number;
  /** Remount attempts before giving up. Default 3, a second apart. */
  attempts?: number;
  retryDelayMs?: number;
  log: LogLine;
  /** The mount is gone and could not be made again: the appliance should stop. */
  onFailed: (err: Error) => void;
}

export type MountWatchState = 'mounted' | 'remounting' | 'lost';

export class MountWatch {
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;
  private stopped = false;
  private current: MountWatchState = 'mounted';
  /** How many times the mount vanished and was made again. */
  remounts = 0;
  /** When the mount was last found missing (ISO 8601), if ever. */
  lastLostAt: string | undefined;

  constructor(
    private readonly fuse: Mount,
    private readonly opts: MountWatchOptions,
  ) {}

  get state(): MountWatchState {
    return this.current;
  }

  start(): void {
    this.timer = setInterval(() => {
      this.checking ??= this.check().finally(() => (this.checking = undefined));
    }, this.opts.intervalMs ?? 1000);
    this.timer.unref();
  }

  /** Stops watching; waits for a check or remount in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.checking;
  }

  private async check(): Promise<void> {
    if (this.stopped || this.current === 'lost' || (await this.fuse.attached())) return;
    if (this.stopped) return;
    const path = this.fuse.mountPath;
    this.current = 'remounting';
    this.lastLostAt = new Date().toISOString();
    this.opts.log(`the mount at ${path} vanished (unmounted by someone else); mounting it again`);
    this.fuse.detached();
    const attempts = this.opts.attempts ?? 3;
    let last: Error | undefined;
    for (let i = 1; i <= attempts && !this.stopped; i++) {
      try {
        await this.fuse.mount();
        this.current = 'mounted';
        this.remounts++;
        this.opts.log(`mounted ${path} again`);
        return;
      } catch (err) {
        last = err as Error;
        this.opts.log(`remounting ${path} (attempt ${i} of ${attempts}) failed: ${last.message}`);
        if (i < attempts) await new Promise((r) => setTimeout(r, this.opts.retryDelayMs ?? 1000));
      }
    }
    if (this.stopped) return;
    this.current = 'lost';
    this.opts.onFailed(new Error(`the mount at ${path} vanished and could not be mounted again: ${last?.message ?? 'stopped'}`));
  }
}
