// VM groups from the command line: group create/list/show/remove. The group backup itself is
// `backup --group` (vms.ts).

import type { GroupView, NewGroupRequest } from '../../control/group-types.js';
import { seg } from '../client.js';
import { usage } from '../cli-error.js';
import { EXIT } from '../exit-codes.js';
import { formatPairs, formatTable, formatTime } from '../format.js';
import { type CommandContext, expectArgs, output, refuseOptions } from './context.js';

export async function groupCommand(ctx: CommandContext, args: string[]): Promise<number> {
  const [verb, ...rest] = args;
  switch (verb) {
    case 'create': {
      refuseOptions(ctx.flags, 'group create', ['vms', 'pattern', 'host']);
      const [name] = expectArgs(rest, ['group'], 'group create');
      const { vms, pattern, host } = ctx.flags;
      const given = [vms, pattern, host].filter((v) => v !== undefined).length;
      if (given !== 1) throw usage("group create: give exactly one of --vms a,b,c, --pattern 'web*' or --host <host>");
      const req: NewGroupRequest = { name };
      if (vms !== undefined) req.vms = vms.split(',').map((v) => v.trim()).filter((v) => v !== '');
      if (pattern !== undefined) req.pattern = pattern;
      if (host !== undefined) req.host = host;
      const g = await ctx.client.post<GroupView>('/groups', req);
      output(ctx, `created group ${g.name}\n${groupText(g)}`, g);
      return EXIT.OK;
    }
    case 'list': {
      refuseOptions(ctx.flags, 'group list', []);
      expectArgs(rest, [], 'group list');
      const { groups } = await ctx.client.get<{ groups: GroupView[] }>('/groups');
      output(
        ctx,
        groups.length === 0
          ? "no groups yet (vmvault group create <g> --vms a,b,c)"
          : formatTable(['NAME', 'BY', 'VMS NOW'], groups.map((g) => [g.name, how(g), g.members.join(', ') || '-'])),
        groups,
      );
      return EXIT.OK;
    }
    case 'show': {
      refuseOptions(ctx.flags, 'group show', []);
      const [name] = expectArgs(rest, ['group'], 'group show');
      const g = await ctx.client.get<GroupView>(`/groups/${seg(name)}`);
      output(ctx, groupText(g), g);
      return EXIT.OK;
    }
    case 'remove': {
      refuseOptions(ctx.flags, 'group remove', []);
      const [name] = expectArgs(rest, ['group'], 'group remove');
      await ctx.client.delete(`/groups/${seg(name)}`);
      output(ctx, `removed group ${name} (its VMs and their points stay)`, { removed: name });
      return EXIT.OK;
    }
    default:
      throw usage(`group: expected create, list, show or remove, got ${verb === undefined ? 'nothing' : JSON.stringify(verb)}`);
  }
}

function how(g: GroupView): string {
  if (g.vms !== undefined) return `list of ${g.vms.length}`;
  if (g.pattern !== undefined) return `pattern ${g.pattern}`;
  return `host ${g.host ?? '?'}`;
}

function groupText(g: GroupView): string {
  const pairs: Array<[string, string]> = [
    ['Group', g.name],
    ['By', how(g)],
    ['VMs now', g.members.join(', ') || '-'],
  ];
  if (g.missing.length > 0) pairs.push(['Not registered', g.missing.join(', ')]);
  pairs.push(['Created', formatTime(g.createdAt)]);
  return formatPairs(pairs);
}
