// The catalog's surface for the control plane (control/catalog-api.ts) over the catalog service
// (catalog/catalog-service.ts), the VM registry (a VM names its share) and the namespace: VMs are
// mapped to shares here, so the catalog knows shares and points only.

import path from 'node:path';
import { Readable } from 'node:stream';
import type { VmRegistry } from './backup/vm-registry.js';
import type { CatalogService } from './catalog/catalog-service.js';
import type { CatalogApi, CatalogBuildRequest, CatalogBuildView, CatalogFile, CatalogStatusView, FileVersionView, FindHitView, FindRequest } from './control/catalog-api.js';
import type { JobContext } from './control/services.js';
import { vmError } from './errors.js';
import type { Namespace } from './namespace/namespace.js';
import { validateName } from './namespace/names.js';

const READ_CHUNK = 1024 * 1024;

export class ApplianceCatalog implements CatalogApi {
  constructor(
    private readonly ns: Namespace,
    private readonly catalog: CatalogService,
    private readonly vms: VmRegistry,
  ) {}

  private shareOf(q: { vm?: string; share?: string }): string | undefined {
    if (q.vm !== undefined) return this.vms.get(q.vm).share;
    if (q.share !== undefined) validateName('share', q.share);
    return q.share;
  }

  private async sharesOf(q: { vm?: string; share?: string }): Promise<string[]> {
    const one = this.shareOf(q);
    if (one !== undefined) {
      await this.ns.snapshots.list(one); // NOT_FOUND for a share that does not exist
      return [one];
    }
    return (await this.ns.shares.list()).map((s) => s.name);
  }

  private vmOf(share: string): string | null {
    return this.vms.list().find((v) => v.share === share)?.name ?? null;
  }

  private async pointOf(share: string, point: string | undefined, cataloged: boolean): Promise<string> {
    const snaps = await this.ns.snapshots.list(share);
    if (point !== undefined && point !== 'latest') {
      validateName('snapshot', point);
      if (!snaps.some((s) => s.name === point)) throw vmError('NOT_FOUND', `share ${share} has no restore point ${point}`);
      return point;
    }
    const pick = [...snaps].reverse().find((s) => !cataloged || this.catalog.reader(share, s.name) !== undefined);
    if (!pick) throw vmError('NOT_FOUND', `share ${share} has no ${cataloged ? 'cataloged ' : ''}restore point`);
    return pick.name;
  }

  async checkBuild(req: CatalogBuildRequest): Promise<{ share: string; point: string }> {
    const share = this.shareOf(req);
    if (share === undefined) throw vmError('INVALID_ARGUMENT', 'name a vm or a share to catalog');
    for (const i of req.images ?? []) {
      if (i.startsWith('/') || i.split('/').some((c) => c === '' || c === '.' || c === '..') || i.includes('\0')) throw vmError('INVALID_ARGUMENT', `image ${JSON.stringify(i)}: a path relative to the snapshot, e.g. vda.raw`);
    }
    return { share, point: await this.pointOf(share, req.point, false) };
  }

  async build(ctx: JobContext, target: { share: string; point: string; images?: string[] }): Promise<CatalogBuildView> {
    ctx.progress(0, 0, 'files', 'walking file systems');
    const r = await this.catalog.build(target.share, target.point, { signal: ctx.signal, files: (n) => ctx.progress(n, 0, 'files', 'walking file systems'), log: (l) => ctx.log(l) }, target.images);
    ctx.log(`${r.files} entries in ${r.volumes} volume(s) of ${r.images} image(s); ${r.reusedVolumes} volume(s) unchanged since the previous point, not walked again`);
    return { share: target.share, point: target.point, ...r };
  }

  /**
   * The protected VMs' restore points that have no catalog: the appliance stopped between a
   * backup and its catalog's build (or during it), or a catalog file was deleted. A point whose
   * build failed is not in the list: its error stays in `catalog status` for the operator.
   */
  async uncataloged(): Promise<Array<{ share: string; points: string[] }>> {
    const out: Array<{ share: string; points: string[] }> = [];
    for (const share of new Set(this.vms.list().map((v) => v.share))) {
      const points = await this.catalog.uncataloged(share).catch(() => []); // a VM whose share is not made yet
      if (points.length > 0) out.push({ share, points });
    }
    return out;
  }

  /**
   * Builds the catalogs of `todo` in turn, one point at a time (a start with many VMs behind
   * must not walk all their disks at once), each share's oldest first; one failing does not
   * stop the rest.
   */
  async buildAll(ctx: JobContext, todo: Array<{ share: string; points: string[] }>): Promise<{ built: number; failed: string[] }> {
    const total = todo.reduce((n, s) => n + s.points.length, 0);
    let at = 0;
    let built = 0;
    const failed: string[] = [];
    for (const { share, points } of todo) {
      for (const point of points) {
        const phase = `point ${++at} of ${total} (${share} ${point}): walking file systems`;
        ctx.progress(0, 0, 'files', phase);
        if (this.catalog.reader(share, point) !== undefined) {
          ctx.log(`${share} ${point}: cataloged meanwhile (by its backup's own job)`);
          continue;
        }
        try {
          const r = await this.catalog.build(share, point, { signal: ctx.signal, files: (n) => ctx.progress(n, 0, 'files', phase), log: (l) => ctx.log(l) });
          ctx.log(`${share} ${point}: ${r.files} entries in ${r.volumes} volume(s) of ${r.images} image(s)`);
          built++;
        } catch (err) {
          if (ctx.signal.aborted) throw err;
          ctx.log(`${share} ${point}: ${(err as Error).message} (recorded in catalog status; build it again with: vmvault catalog build --share ${share} --point ${point})`);
          failed.push(`${share} ${point}`);
        }
      }
    }
    if (failed.length > 0) throw vmError('IO', `${failed.length} of ${total} catalog(s) failed (${failed.join(', ')}); see the job's log`);
    return { built, failed };
  }

  async status(q: { vm?: string; share?: string }): Promise<CatalogStatusView[]> {
    const shares = await this.sharesOf(q);
    return (await this.catalog.status(shares)).map((s) => ({ ...s, vm: this.vmOf(s.share) }));
  }

  async find(q: FindRequest): Promise<FindHitView[]> {
    if (typeof q.pattern !== 'string' || q.pattern.length === 0 || q.pattern.includes('/')) throw vmError('INVALID_ARGUMENT', `pattern ${JSON.stringify(q.pattern)}: a file name or a glob of one (no '/'; use pathPrefix for directories)`);
    const hits = await this.catalog.find({ ...q, shares: await this.sharesOf(q) });
    return hits.map((h) => ({ ...h, vm: this.vmOf(h.share) }));
  }

  async versions(q: { vm?: string; share?: string; path: string }): Promise<FileVersionView[]> {
    if (!q.path.startsWith('/')) throw vmError('INVALID_ARGUMENT', 'the path must be absolute');
    const share = this.shareOf(q)!;
    await this.ns.snapshots.list(share);
    return (await this.catalog.versions(share, q.path)).map((v) => ({ ...v, vm: this.vmOf(share) }));
  }

  async openFile(q: { vm?: string; share?: string; point?: string; path: string; image?: string; volume?: string }): Promise<CatalogFile> {
    const share = this.shareOf(q)!;
    const point = await this.pointOf(share, q.point, true);
    const loc = this.catalog.locate(share, point, q.path, { image: q.image, volume: q.volume });
    if (loc.row.type !== 'file') throw vmError(loc.row.type === 'dir' ? 'IS_DIRECTORY' : 'INVALID_ARGUMENT', `${q.path} in ${share} point ${point} is a ${loc.row.type}, not a regular file`);
    const catalog = this.catalog;
    const size = loc.row.size;
    async function* chunks(): AsyncGenerator<Buffer> {
      for (let at = 0; at < size; at += READ_CHUNK) yield await catalog.read(loc, at, Math.min(READ_CHUNK, size - at));
    }
    return { name: path.posix.basename(loc.path), size, mtimeMs: loc.row.mtimeMs, stream: () => Readable.from(chunks()) };
  }
}
