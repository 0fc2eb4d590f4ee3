import type { ShareSummary } from '../../control/services.js';
import { seg } from '../client.js';
import { usage } from '../cli-error.js';
import { EXIT } from '../exit-codes.js';
import { formatBytes, formatTable, formatTime } from '../format.js';
import { type CommandContext, expectArgs, output } from './context.js';

export async function shareCommand(ctx: CommandContext, args: string[]): Promise<number> {
  const [verb, ...rest] = args;
  switch (verb) {
    case 'list': {
      expectArgs(rest, [], 'share list');
      const { shares } = await ctx.client.get<{ shares: ShareSummary[] }>('/shares');
      output(ctx, shares.length === 0 ? 'no shares yet (vmvault share create <name>)' : sharesTable(shares), shares);
      return EXIT.OK;
    }
    case 'get': {
      const [name] = expectArgs(rest, ['name'], 'share get');
      const share = await ctx.client.get<ShareSummary>(`/shares/${seg(name)}`);
      output(ctx, sharesTable([share]), share);
      return EXIT.OK;
    }
    case 'create': {
      const [name] = expectArgs(rest, ['name'], 'share create');
      const share = await ctx.client.post<ShareSummary>('/shares', { name });
      output(ctx, `created share ${share.name}`, share);
      return EXIT.OK;
    }
    case 'delete': {
      const [name] = expectArgs(rest, ['name'], 'share delete');
      const query = [ctx.flags.force ? 'force=true' : '', ctx.flags.deleteSnapshots ? 'deleteSnapshots=true' : ''].filter(Boolean).join('&');
      await ctx.client.delete(`/shares/${seg(name)}${query === '' ? '' : `?${query}`}`);
      output(ctx, `deleted share ${name}`, { deleted: name });
      return EXIT.OK;
    }
    default:
      throw usage(`share: expected list, get, create or delete, got ${verb === undefined ? 'nothing' : JSON.stringify(verb)}`);
  }
}

function sharesTable(shares: ShareSummary[]): string {
  return formatTable(
    ['NAME', 'FILES', 'LOGICAL', 'SNAPSHOTS', 'CREATED', 'ORIGIN'],
    shares.map((s) => [
      s.name,
      String(s.files),
      formatBytes(s.logicalBytes),
      String(s.snapshots),
      formatTime(s.created),
      s.origin === undefined ? '' : s.origin.snapshot === undefined ? s.origin.share : `${s.origin.share}/${s.origin.snapshot}`,
    ]),
  );
}
