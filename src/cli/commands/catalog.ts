// The guest-file catalog from the command line (issue 15): catalog build (a job) and status,
// find (by name, across points and VMs; --changed: a file's versions), restore-file (one file
// streamed from the appliance into a local directory).

import fs from 'node:fs';
import path from 'node:path';
import type { CatalogStatusView, FileVersionView, FindHitView } from '../../control/catalog-api.js';
import { seg } from '../client.js';
import { CliError, usage } from '../cli-error.js';
import { EXIT } from '../exit-codes.js';
import { formatBytes, formatTable, formatTime } from '../format.js';
import { type CommandContext, expectArgs, output, refuseOptions } from './context.js';
import { startAndWatch } from './jobs.js';

function query(q: Record<string, string | undefined>): string {
  const parts = Object.entries(q).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${encodeURIComponent(v!)}`);
  return parts.length === 0 ? '' : `?${parts.join('&')}`;
}

export async function catalogCommand(ctx: CommandContext, args: string[]): Promise<number> {
  const [verb, ...rest] = args;
  if (verb === 'build') {
    refuseOptions(ctx.flags, 'catalog build', ['point', 'share', 'image']);
    const body: { vm?: string; share?: string; point?: string; images?: string[] } = {};
    if (ctx.flags.share !== undefined) {
      expectArgs(rest, [], 'catalog build --share <share>');
      body.share = ctx.flags.share;
    } else body.vm = expectArgs(rest, ['vm'], 'catalog build')[0];
    if (ctx.flags.point !== undefined) body.point = ctx.flags.point;
    if (ctx.flags.image !== undefined) body.images = [ctx.flags.image];
    return startAndWatch(ctx, '/catalog/builds', body);
  }
  if (verb === 'status') {
    refuseOptions(ctx.flags, 'catalog status', ['share']);
    if (rest.length > 1) throw usage('catalog status: expected [<vm>]');
    const { points } = await ctx.client.get<{ points: CatalogStatusView[] }>(`/catalog${query({ vm: rest[0], share: ctx.flags.share })}`);
    output(ctx, points.length === 0 ? 'no restore points' : statusText(points), points);
    return EXIT.OK;
  }
  throw usage(`catalog: expected build or status, got ${verb === undefined ? 'nothing' : JSON.stringify(verb)}`);
}

function statusText(points: CatalogStatusView[]): string {
  const rows = points.map((p) => {
    const vols = (p.images ?? []).flatMap((i) => i.volumes.map((v) => `${i.path}:${v.name} ${v.fs}${v.reusedFrom ? ' (reused)' : ''}`));
    return [p.vm ?? p.share, p.point, p.state, p.files === undefined ? '-' : String(p.files), vols.join(', ') || '-'];
  });
  const notes = points.flatMap((p) => [
    ...(p.error ? [`${p.share} ${p.point}: build failed: ${p.error}`] : []),
    ...(p.images ?? []).flatMap((i) => [...(i.note ? [`${p.share} ${p.point} ${i.path}: ${i.note}`] : []), ...i.volumes.filter((v) => v.note).map((v) => `${p.share} ${p.point} ${i.path}:${v.name}: ${v.note}`)]),
  ]);
  const table = formatTable(['VM', 'POINT', 'STATE', 'FILES', 'VOLUMES'], rows);
  return notes.length === 0 ? table : `${table}\n\n${notes.join('\n')}`;
}

/** find's --size: +N (at least), -N (at most), N (exactly); N with k, M, G. */
function sizeBounds(s: string): { minSize?: string; maxSize?: string } {
  const m = /^([+-]?)(\d+[kKmMgGtT]?)$/.exec(s);
  if (!m) throw usage(`--size ${JSON.stringify(s)}: expected +N (at least), -N (at most) or N, with k, M or G, e.g. +1M`);
  return m[1] === '+' ? { minSize: m[2] } : m[1] === '-' ? { maxSize: m[2] } : { minSize: m[2], maxSize: m[2] };
}

export async function findCommand(ctx: CommandContext, args: string[]): Promise<number> {
  const f = ctx.flags;
  if (f.changed !== undefined) {
    refuseOptions(ctx.flags, 'find --changed', ['changed', 'vm', 'share']);
    expectArgs(args, [], 'find --changed <path> --vm <vm>');
    if (f.vm === undefined && f.share === undefined) throw usage('find --changed: --vm <vm> (or --share) is required');
    const { versions } = await ctx.client.get<{ versions: FileVersionView[] }>(`/catalog/versions${query({ path: f.changed, vm: f.vm, share: f.share })}`);
    const changed = versions.filter((v) => v.change !== null);
    output(
      ctx,
      changed.length === 0
        ? `${f.changed} is in no cataloged point`
        : formatTable(['POINT', 'CHANGE', 'SIZE', 'MTIME', 'IMAGE', 'VOLUME'], changed.map((v) => [v.point, v.change!, formatBytes(v.size), formatTime(v.mtime), v.image, v.volume])),
      versions,
    );
    return EXIT.OK;
  }
  refuseOptions(ctx.flags, 'find', ['vm', 'share', 'since', 'pathPrefix', 'size', 'limit']);
  const [pattern] = expectArgs(args, ['pattern'], 'find');
  const bounds = f.size === undefined ? {} : sizeBounds(f.size);
  const { files } = await ctx.client.get<{ files: FindHitView[] }>(
    `/catalog/find${query({ pattern, vm: f.vm, share: f.share, since: f.since, pathPrefix: f.pathPrefix, limit: f.limit, ...bounds })}`,
  );
  output(
    ctx,
    files.length === 0 ? `no cataloged file matches ${pattern}` : formatTable(['VM', 'POINT', 'PATH', 'SIZE', 'MTIME'], files.map((h) => [h.vm ?? h.share, h.point, h.path, formatBytes(h.size), formatTime(h.mtime)])),
    files,
  );
  return EXIT.OK;
}

export async function restoreFileCommand(ctx: CommandContext, args: string[]): Promise<number> {
  refuseOptions(ctx.flags, 'restore-file', ['point', 'to', 'share', 'image', 'volume']);
  const f = ctx.flags;
  let vm: string | undefined;
  let file: string;
  if (f.share !== undefined) [file] = expectArgs(args, ['path'], 'restore-file --share <share> --point <snapshot>');
  else [vm, file] = expectArgs(args, ['vm', 'path'], 'restore-file');
  if (f.to === undefined || f.to === '') throw usage('restore-file: --to <dir> is required (a directory here; the file keeps its name)');
  if (!file.startsWith('/')) throw usage(`restore-file: the path must be absolute in the guest, e.g. /etc/passwd, not ${JSON.stringify(file)}`);
  const dir = path.resolve(f.to);
  if (!fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory()) throw new CliError('NOT_FOUND', `${dir} is not a directory`);
  const target = path.join(dir, path.posix.basename(file));
  if (fs.existsSync(target)) throw new CliError('ALREADY_EXISTS', `${target} exists; remove it or choose another --to`);
  const point = f.point ?? 'latest';
  const q = query({ path: file, image: f.image, volume: f.volume });
  const route = vm !== undefined ? `/vms/${seg(vm)}/points/${seg(point)}/files${q}` : `/shares/${seg(f.share!)}/snapshots/${seg(point)}/files${q}`;
  const r = await ctx.client.download(route, target);
  if (r.lastModified) {
    const t = new Date(r.lastModified);
    if (!Number.isNaN(t.getTime())) fs.utimesSync(target, t, t);
  }
  output(ctx, `restored ${file} (${formatBytes(r.bytes)}) to ${target}`, { path: file, to: target, bytes: r.bytes });
  return EXIT.OK;
}
