// `vmvault host add|list|remove` and `vmvault cluster` (issue 13): the hypervisor hosts reached
// through their agents, and the map of every host's VMs.

import type { ClusterMapView, HostView } from '../../control/hosts-control.js';
import { seg } from '../client.js';
import { usage } from '../cli-error.js';
import { EXIT } from '../exit-codes.js';
import { formatBytes, formatTable } from '../format.js';
import { type CommandContext, expectArgs, output, refuseOptions } from './context.js';

export async function hostCommand(ctx: CommandContext, args: string[]): Promise<number> {
  const [verb, ...rest] = args;
  switch (verb) {
    case 'add': {
      refuseOptions(ctx.flags, 'host add', ['agent']);
      const [name] = expectArgs(rest, ['host'], 'host add');
      if (ctx.flags.agent === undefined) throw usage('host add: --agent <name> is required (the agent running on the host: vmvault agent --name <name> ...)');
      const h = await ctx.client.post<HostView>('/hosts', { name, agent: ctx.flags.agent });
      output(ctx, `added host ${h.name}, reached through agent ${h.agent} (${h.agentState})`, h);
      return EXIT.OK;
    }
    case 'list': {
      refuseOptions(ctx.flags, 'host list', []);
      expectArgs(rest, [], 'host list');
      const { hosts } = await ctx.client.get<{ hosts: HostView[] }>('/hosts');
      output(
        ctx,
        hosts.length === 0 ? 'no hosts yet (vmvault host add <host> --agent <name>)' : formatTable(['HOST', 'AGENT', 'AGENT STATE', 'VMS'], hosts.map((h) => [h.name, h.agent, h.agentState, h.vms.join(',') || '-'])),
        hosts,
      );
      return EXIT.OK;
    }
    case 'remove': {
      refuseOptions(ctx.flags, 'host remove', []);
      const [name] = expectArgs(rest, ['host'], 'host remove');
      await ctx.client.delete(`/hosts/${seg(name)}`);
      output(ctx, `removed host ${name}`, { removed: name });
      return EXIT.OK;
    }
    default:
      throw usage(`host: expected add, list or remove, got ${verb === undefined ? 'nothing' : JSON.stringify(verb)}`);
  }
}

export async function clusterCommand(ctx: CommandContext, args: string[]): Promise<number> {
  refuseOptions(ctx.flags, 'cluster', []);
  expectArgs(args, [], 'cluster');
  const map = await ctx.client.get<ClusterMapView>('/cluster');
  output(ctx, clusterText(map), map);
  return EXIT.OK;
}

export function clusterText(map: ClusterMapView): string {
  if (map.hosts.length === 0) return 'no hosts yet (vmvault host add <host> --agent <name>)';
  const rows: string[][] = [];
  for (const h of map.hosts) {
    if (h.vms.length === 0 && h.failed.length === 0) rows.push([h.name, '-', h.state === 'ok' ? '-' : 'unreachable', '-', '-', '-', '-']);
    for (const v of h.vms) {
      const ha = v.ha === undefined ? '-' : `${v.ha.resource} ${v.ha.managed ? 'managed' : 'unmanaged'} ${v.ha.role.toLowerCase()}`;
      const load = v.load.wrBytesPerSec !== undefined ? `${formatBytes(v.load.wrBytesPerSec)}/s` : '-';
      rows.push([h.name, v.name, v.state, ha, v.disks.map((d) => `${d.device} ${formatBytes(d.sizeBytes)} ${d.format}`).join(', ') || '-', load, formatBytes(v.load.dirtyBytes)]);
    }
    for (const f of h.failed) rows.push([h.name, f.qmp, 'no answer', '-', '-', '-', '-']);
  }
  const table = formatTable(['HOST', 'VM', 'STATE', 'HA', 'DISKS', 'WRITES', 'DIRTY'], rows);
  const why = [
    ...map.hosts.filter((h) => h.state !== 'ok').map((h) => `host ${h.name} unreachable: ${h.reason}`),
    ...map.hosts.flatMap((h) => h.failed.map((f) => `host ${h.name}: ${f.qmp}: ${f.error}`)),
    ...map.hosts.flatMap((h) => h.problems.map((p) => `host ${h.name}: ${p}`)),
  ];
  return why.length === 0 ? table : `${table}\n\n${why.join('\n')}`;
}
