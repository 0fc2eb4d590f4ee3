// Instant recovery from the command line: recover (a job), recover --migrate (a job), recover
// list, stop and release. Jobs are watched like backups: a progress bar, Ctrl-C cancels.

import path from 'node:path';
import type { RecoveryView } from '../../control/services.js';
import { seg } from '../client.js';
import { usage } from '../cli-error.js';
import { EXIT } from '../exit-codes.js';
import { formatTable, formatTime } from '../format.js';
import { type CommandContext, expectArgs, output, refuseOptions } from './context.js';
import { startAndWatch } from './jobs.js';

export async function recoverCommand(ctx: CommandContext, args: string[]): Promise<number> {
  const f = ctx.flags;
  const [verb] = args;
  if ((verb === 'list' || verb === 'stop' || verb === 'release') && !f.migrate && f.name === undefined) {
    refuseOptions(f, `recover ${verb}`, []);
    if (verb === 'list') {
      if (f.dropClone) throw usage('recover list takes no --drop-clone');
      expectArgs(args.slice(1), [], 'recover list');
      const { recoveries } = await ctx.client.get<{ recoveries: RecoveryView[] }>('/recoveries');
      output(ctx, recoveries.length === 0 ? 'no recovered VMs (vmvault recover <vm> starts one from its newest point)' : recoveriesTable(recoveries), recoveries);
      return EXIT.OK;
    }
    const [name] = expectArgs(args.slice(1), ['name'], `recover ${verb}`);
    const r = await ctx.client.post<{ name: string; clone: string; pid?: number | null }>(`/recoveries/${seg(name)}/${verb}`, f.dropClone ? { dropClone: true } : {});
    const what = verb === 'stop' ? 'stopped' : `released (the VM runs on${r.pid ? `, QEMU pid ${r.pid}` : ''})`;
    output(ctx, `${name}: ${what}; clone ${r.clone === 'dropped' ? 'dropped' : `kept as share ${name}`}`, r);
    return EXIT.OK;
  }
  if (f.dropClone) throw usage('recover takes --drop-clone only with stop or release');
  const [vm] = expectArgs(args, ['vm'], 'recover');
  if (f.migrate) {
    refuseOptions(f, 'recover --migrate', ['to', 'format']);
    if (f.to === undefined || f.to === '') throw usage('recover --migrate: --to <dir> is required (production storage on the appliance host)');
    if (f.format !== undefined && f.format !== 'raw' && f.format !== 'qcow2') throw usage(`recover --migrate: --format must be qcow2 or raw, not ${JSON.stringify(f.format)}`);
    const name = f.name ?? `${vm}-recovery`;
    const body: { to: string; format?: string } = { to: path.resolve(f.to) };
    if (f.format !== undefined) body.format = f.format;
    return startAndWatch(ctx, `/recoveries/${seg(name)}/migrate`, body);
  }
  refuseOptions(f, 'recover', ['point']);
  const body: { point?: string; name?: string } = {};
  if (f.point !== undefined) body.point = f.point;
  if (f.name !== undefined) body.name = f.name;
  return startAndWatch(ctx, `/vms/${seg(vm)}/recoveries`, body);
}

function recoveriesTable(list: RecoveryView[]): string {
  return formatTable(
    ['NAME', 'VM', 'POINT', 'STATE', 'PID', 'DISKS', 'SINCE'],
    list.map((r) => [r.name, r.vm, r.point, r.state, r.pid === null ? '-' : String(r.pid), r.disks.map((d) => d.file).join(', '), formatTime(r.migratedAt ?? r.startedAt)]),
  );
}
