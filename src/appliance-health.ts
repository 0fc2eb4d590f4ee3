// What /api/v1/health reports about the mount and the store, measured rather than assumed: the
// mount is looked up through the kernel (in a child process: this process serves the mount and
// must not call into it), the store is read from and a small file in its directory is written
// and fsynced. Results are kept for a second so a busy health checker costs little.

import fs from 'node:fs/promises';
import path from 'node:path';
import type { ExportServerHealth, HealthReport, MountHealth, StoreHealth } from './control/services.js';
import type { Mount } from './fuse/mount.js';
import { probeMount } from './fuse/mount-util.js';
import type { MountWatch } from './fuse/mount-watch.js';
import type { Namespace } from './namespace/namespace.js';

const CACHE_MS = 1000;
const PROBE_TIMEOUT_MS = 2000;
const PROBE_KEY = Buffer.from('health-probe');

export class HealthProbe {
  private cached: { at: number; report: Promise<HealthReport> } | undefined;

  constructor(
    private readonly ns: Namespace,
    private readonly fuse: Mount | undefined,
    private readonly watch: MountWatch | undefined,
    private readonly exports?: { health(): Promise<ExportServerHealth[]> },
  ) {}

  report(): Promise<HealthReport> {
    const now = Date.now();
    if (this.cached === undefined || now - this.cached.at > CACHE_MS) this.cached = { at: now, report: this.measure() };
    return this.cached.report;
  }

  private async measure(): Promise<HealthReport> {
    const [mount, store, exports] = await Promise.all([
      this.fuse ? this.mountHealth(this.fuse) : undefined,
      this.storeHealth(),
      this.exports?.health().catch((): ExportServerHealth[] => []),
    ]);
    const problems: string[] = [];
    if (mount && !mount.mounted) problems.push(this.watch?.state === 'remounting' ? `the mount at ${mount.path} vanished; mounting it again` : `nothing is mounted at ${mount.path}`);
    else if (mount && !mount.answering) problems.push(`the mount at ${mount.path} does not answer`);
    if (!store.open) problems.push('the store is not open');
    else if (!store.writable) problems.push('the store cannot be written (disk full or read-only?)');
    // An export server that has exports but does not run (crashed, waiting out its restart
    // backoff, or cannot be served in this configuration) is a problem a monitor must see.
    for (const x of exports ?? []) {
      if (x.wanted && !x.running) problems.push(`${x.server} (${x.protocol}) is not running${x.restarts > 0 ? ` (restarted ${x.restarts} time(s))` : ''}${x.lastError ? `: ${x.lastError}` : ''}`);
    }
    const report: HealthReport = { status: problems.length === 0 ? 'ok' : 'degraded', store };
    if (exports !== undefined) report.exports = exports;
    if (mount) report.mount = mount;
    if (problems.length > 0) report.detail = problems.join('; ');
    return report;
  }

  private async mountHealth(fuse: Mount): Promise<MountHealth> {
    const mounted = await fuse.attached().catch(() => false);
    const answering = mounted && (await probeMount(fuse.mountPath, PROBE_TIMEOUT_MS).catch(() => 'none')) === 'healthy';
    return { path: fuse.mountPath, mounted, answering, remounts: this.watch?.remounts ?? 0 };
  }

  private async storeHealth(): Promise<StoreHealth> {
    const db = this.ns.store.db as { status?: string; get(key: Buffer): Promise<unknown> };
    let open = false;
    try {
      open = db.status === 'open';
      if (open) await db.get(PROBE_KEY);
    } catch {
      open = false;
    }
    if (!open) return { open, writable: false };
    let writable = false;
    const file = path.join(this.ns.store.dir, '.health-probe');
    try {
      const st = await fs.statfs(this.ns.store.dir);
      const h = await fs.open(file, 'w', 0o600);
      try {
        await h.writeFile('ok\n');
        await h.sync();
      } finally {
        await h.close();
      }
      await fs.unlink(file);
      writable = st.bavail > 0;
    } catch {
      writable = false;
    }
    return { open, writable };
  }
}
