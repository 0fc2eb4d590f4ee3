import type { FastcopyResult, ShareSummary, SnapshotSummary } from '../../control/services.js';
import { seg } from '../client.js';
import { usage } from '../cli-error.js';
import { EXIT } from '../exit-codes.js';
import { formatBytes, formatTable, formatTime, plural } from '../format.js';
import { type CommandContext, expectArgs, output } from './context.js';

export async function snapshotCommand(ctx: CommandContext, args: string[]): Promise<number> {
  const [verb, ...rest] = args;
  switch (verb) {
    case 'list': {
      const [share] = expectArgs(rest, ['share'], 'snapshot list');
      const { snapshots } = await ctx.client.get<{ snapshots: SnapshotSummary[] }>(`/shares/${seg(share)}/snapshots`);
      output(ctx, snapshots.length === 0 ? `share ${share} has no snapshots` : snapshotsTable(snapshots), snapshots);
      return EXIT.OK;
    }
    case 'get': {
      const [share, name] = expectArgs(rest, ['share', 'snapshot'], 'snapshot get');
      const snap = await ctx.client.get<SnapshotSummary>(`/shares/${seg(share)}/snapshots/${seg(name)}`);
      output(ctx, snapshotsTable([snap]), snap);
      return EXIT.OK;
    }
    case 'create': {
      const [share, name] = expectArgs(rest, ['share', 'snapshot'], 'snapshot create');
      const snap = await ctx.client.post<SnapshotSummary>(`/shares/${seg(share)}/snapshots`, { name });
      output(ctx, `created snapshot ${snap.share}/${snap.name} (${plural(snap.files, 'file')}, ${formatBytes(snap.logicalBytes)})`, snap);
      return EXIT.OK;
    }
    case 'delete': {
      const [share, name] = expectArgs(rest, ['share', 'snapshot'], 'snapshot delete');
      await ctx.client.delete(`/shares/${seg(share)}/snapshots/${seg(name)}`);
      output(ctx, `deleted snapshot ${share}/${name} (its space returns at the next gc)`, { deleted: { share, snapshot: name } });
      return EXIT.OK;
    }
    default:
      throw usage(`snapshot: expected list, get, create or delete, got ${verb === undefined ? 'nothing' : JSON.stringify(verb)}`);
  }
}

export async function cloneCommand(ctx: CommandContext, args: string[]): Promise<number> {
  const [verb, ...rest] = args;
  if (verb !== 'create') throw usage(`clone: expected create, got ${verb === undefined ? 'nothing' : JSON.stringify(verb)}`);
  const [share, snap, newShare] = expectArgs(rest, ['share', 'snapshot', 'new-share'], 'clone create');
  const created = await ctx.client.post<ShareSummary>(`/shares/${seg(share)}/snapshots/${seg(snap)}/clone`, { name: newShare });
  output(ctx, `created share ${created.name} from snapshot ${share}/${snap} (${plural(created.files, 'file')})`, created);
  return EXIT.OK;
}

export async function fastcopyCommand(ctx: CommandContext, args: string[]): Promise<number> {
  const [from, to] = expectArgs(args, ['from', 'share/path'], 'fastcopy');
  splitSharePath(from);
  splitSharePath(to);
  const r = await ctx.client.post<FastcopyResult>('/fastcopy', { from, to });
  const what =
    r.type === 'directory'
      ? `${plural(r.directories, 'directory', 'directories')}, ${plural(r.files, 'file')}, ${formatBytes(r.logicalBytes)}`
      : r.type === 'symlink'
        ? 'a symbolic link'
        : formatBytes(r.logicalBytes);
  output(ctx, `copied ${r.from} to ${r.to} (${what}; no new space)`, r);
  return EXIT.OK;
}

/** "vms/dir/web01.vmdk" -> { share: "vms", path: "dir/web01.vmdk" }; the appliance checks the rest. */
export function splitSharePath(arg: string): { share: string; path: string } {
  const slash = arg.indexOf('/');
  if (slash <= 0 || slash === arg.length - 1) throw usage(`${JSON.stringify(arg)} is not <share>/<path>`);
  return { share: arg.slice(0, slash), path: arg.slice(slash + 1) };
}

/**
 * One row per snapshot; a LOCKED UNTIL column (the end of a policy's retention lock) only when a
 * snapshot has one. The time is the appliance's: the CLI does not judge it against its own clock,
 * which may differ, so a lock that has ended still shows its end.
 */
function snapshotsTable(snaps: SnapshotSummary[]): string {
  const locks = snaps.some((s) => s.lockedUntil !== undefined);
  return formatTable(
    ['SHARE', 'NAME', 'FILES', 'LOGICAL', 'CREATED', ...(locks ? ['LOCKED UNTIL'] : [])],
    snaps.map((s) => [
      s.share,
      s.name,
      String(s.files),
      formatBytes(s.logicalBytes),
      formatTime(s.created),
      ...(locks ? [s.lockedUntil ? formatTime(s.lockedUntil) : '-'] : []),
    ]),
  );
}
