// VM backup from the command line: vm add/list/get/remove, backup (a job), backup list, restore
// (a job). Backups and restores are watched like gc: a progress bar, Ctrl-C cancels the job.

import path from 'node:path';
import type { BackupRecordView, NewVmRequest, VmView } from '../../control/services.js';
import { seg } from '../client.js';
import { usage } from '../cli-error.js';
import { EXIT } from '../exit-codes.js';
import { formatBytes, formatDuration, formatPairs, formatTable, formatTime } from '../format.js';
import { type CommandContext, expectArgs, output, refuseOptions } from './context.js';
import { startAndWatch } from './jobs.js';

export async function vmCommand(ctx: CommandContext, args: string[]): Promise<number> {
  const [verb, ...rest] = args;
  switch (verb) {
    case 'add': {
      refuseOptions(ctx.flags, 'vm add', ['qmp', 'qga', 'pg', 'share', 'workflow', 'agent', 'script', 'host', 'uuid', 'fromCluster']);
      const [name] = expectArgs(rest, ['vm'], 'vm add');
      const { qmp, qga, pg, share, workflow, agent, script, host, uuid, fromCluster } = ctx.flags;
      if (fromCluster === true && (qmp !== undefined || host !== undefined)) throw usage('vm add: --from-cluster takes the host and QMP socket from the cluster map; give neither --host nor --qmp');
      if (qmp === undefined && fromCluster !== true) throw usage('vm add: --qmp <addr> is required (unix:/path/to/qmp.sock or tcp:host:port, as given to QEMU\'s -qmp), or --from-cluster');
      const req: NewVmRequest = { name, ...(qmp !== undefined ? { qmp } : {}) };
      if (fromCluster === true) req.fromCluster = true;
      if (host !== undefined) req.host = host;
      if (uuid !== undefined) req.uuid = uuid;
      if (qga !== undefined) req.qga = qga;
      if (pg !== undefined) req.pg = pg;
      if (share !== undefined) req.share = share;
      if (workflow !== undefined) req.workflow = workflow;
      if (agent !== undefined) req.agent = agent;
      // The appliance runs the script: an absolute path on its host, as given.
      if (script !== undefined) req.script = script;
      const vm = await ctx.client.post<VmView>('/vms', req);
      output(ctx, `registered VM ${vm.name} (backups go to share ${vm.share})\n${vmText(vm)}`, vm);
      return EXIT.OK;
    }
    case 'list': {
      refuseOptions(ctx.flags, 'vm list', []);
      expectArgs(rest, [], 'vm list');
      const { vms } = await ctx.client.get<{ vms: VmView[] }>('/vms');
      output(ctx, vms.length === 0 ? 'no VMs yet (vmvault vm add <vm> --qmp <addr>)' : vmsTable(vms), vms);
      return EXIT.OK;
    }
    case 'get': {
      refuseOptions(ctx.flags, 'vm get', []);
      const [name] = expectArgs(rest, ['vm'], 'vm get');
      const vm = await ctx.client.get<VmView>(`/vms/${seg(name)}`);
      output(ctx, vmText(vm), vm);
      return EXIT.OK;
    }
    case 'remove': {
      refuseOptions(ctx.flags, 'vm remove', []);
      const [name] = expectArgs(rest, ['vm'], 'vm remove');
      await ctx.client.delete(`/vms/${seg(name)}`);
      output(ctx, `removed VM ${name} (its share and restore points stay: vmvault share delete to drop them)`, { removed: name });
      return EXIT.OK;
    }
    default:
      throw usage(`vm: expected add, list, get or remove, got ${verb === undefined ? 'nothing' : JSON.stringify(verb)}`);
  }
}

export async function backupCommand(ctx: CommandContext, args: string[]): Promise<number> {
  if (args[0] === 'list') {
    refuseOptions(ctx.flags, 'backup list', []);
    const [name] = expectArgs(args.slice(1), ['vm'], 'backup list');
    const { backups } = await ctx.client.get<{ backups: BackupRecordView[] }>(`/vms/${seg(name)}/backups`);
    output(ctx, backups.length === 0 ? `no restore points of ${name} yet (vmvault backup ${name})` : backupsTable(backups), backups);
    return EXIT.OK;
  }
  if (ctx.flags.group !== undefined) return groupBackup(ctx, args);
  refuseOptions(ctx.flags, 'backup', ['workflow']);
  const [name] = expectArgs(args, ['vm'], 'backup');
  const body: { workflow?: string; full?: boolean } = {};
  if (ctx.flags.workflow !== undefined) body.workflow = ctx.flags.workflow;
  if (ctx.flags.full) body.full = true;
  return startAndWatch(ctx, `/vms/${seg(name)}/backups`, body);
}

/** `backup --group G [--parallel N] [--order O] [--workflow W] [--full]`: a group-backup job. */
async function groupBackup(ctx: CommandContext, args: string[]): Promise<number> {
  refuseOptions(ctx.flags, 'backup --group', ['group', 'workflow', 'parallel', 'order']);
  expectArgs(args, [], 'backup --group <group>');
  const body: { workflow?: string; full?: boolean; parallel?: number; order?: string } = {};
  if (ctx.flags.parallel !== undefined) {
    const n = Number(ctx.flags.parallel);
    if (!/^\d+$/.test(ctx.flags.parallel) || n < 1) throw usage(`backup --group: --parallel must be a whole number of at least 1, not ${JSON.stringify(ctx.flags.parallel)}`);
    body.parallel = n;
  }
  if (ctx.flags.order !== undefined) {
    if (!['busiest', 'largest', 'alphabetical'].includes(ctx.flags.order)) throw usage(`backup --group: --order must be busiest, largest or alphabetical, not ${JSON.stringify(ctx.flags.order)}`);
    body.order = ctx.flags.order;
  }
  if (ctx.flags.workflow !== undefined) body.workflow = ctx.flags.workflow;
  if (ctx.flags.full) body.full = true;
  return startAndWatch(ctx, `/groups/${seg(ctx.flags.group!)}/backups`, body);
}

export async function restoreCommand(ctx: CommandContext, args: string[]): Promise<number> {
  refuseOptions(ctx.flags, 'restore', ['point', 'to', 'format']);
  const [name] = expectArgs(args, ['vm'], 'restore');
  const { to, point, format } = ctx.flags;
  if (ctx.flags.inPlace) {
    if (to !== undefined || format !== undefined) throw usage("restore --in-place writes over the VM's own disk files in their own format: give no --to or --format with it");
    return startAndWatch(ctx, `/vms/${seg(name)}/restores`, { inPlace: true, ...(point !== undefined ? { point } : {}) });
  }
  if (to === undefined || to === '') {
    throw usage(
      'restore: --to is required: a directory on the appliance host (the disks are written into it), or an NBD URI (nbd://HOST/EXPORT, nbd+unix:///EXPORT?socket=/PATH; {device} for several disks); or --in-place (over the disk files the VM uses)',
    );
  }
  if (format !== undefined && format !== 'raw' && format !== 'qcow2') throw usage(`restore: --format must be raw or qcow2, not ${JSON.stringify(format)}`);
  // The appliance takes absolute paths; a relative one means this shell's directory. An NBD URI
  // goes as it is.
  const body: { to: string; point?: string; format?: string } = { to: /^nbds?(\+[a-z]+)?:\/\//i.test(to) ? to : path.resolve(to) };
  if (point !== undefined) body.point = point;
  if (format !== undefined) body.format = format;
  return startAndWatch(ctx, `/vms/${seg(name)}/restores`, body);
}

function disksText(vm: VmView): string {
  if (vm.disks.length === 0) return '-';
  return vm.disks.map((d) => `${d.device} ${formatBytes(d.sizeBytes)} ${d.format}`).join(', ');
}

function lastText(b: BackupRecordView | null): string {
  if (b === null) return 'never';
  return `${formatTime(b.startedAt)} (${b.kind}, ${formatBytes(b.bytesRead)} read, ${formatDuration(b.durationMs / 1000)})`;
}

function vmsTable(vms: VmView[]): string {
  const table = formatTable(
    ['NAME', 'STATE', 'DISKS', 'LAST BACKUP'],
    vms.map((vm) => [vm.name, vm.state, disksText(vm), lastText(vm.lastBackup)]),
  );
  // Why a VM cannot be reached matters more than the table's width: said below it, one per VM.
  const why = vms.filter((vm) => vm.stateDetail !== undefined).map((vm) => `${vm.name}: ${vm.stateDetail}`);
  return why.length === 0 ? table : `${table}\n\n${why.join('\n')}`;
}

function vmText(vm: VmView): string {
  const pairs: Array<[string, string]> = [
    ['VM', vm.name],
    ['State', vm.stateDetail === undefined ? vm.state : `${vm.state} (${vm.stateDetail})`],
    ['Share', vm.share],
    ['QMP', vm.qmp],
    ['Guest agent', vm.qga ?? 'none (crash-consistent backups only)'],
  ];
  if (vm.pg !== undefined) pairs.push(['PostgreSQL', vm.pg]);
  if (vm.workflow !== undefined) pairs.push(['Workflow', vm.workflow]);
  if (vm.script !== undefined) pairs.push(['Script', vm.script]);
  if (vm.host !== undefined) pairs.push(['Host', `${vm.host}${vm.uuid !== undefined ? ` (uuid ${vm.uuid})` : ''}`]);
  pairs.push(['Copied by', vm.agent !== undefined ? `agent ${vm.agent}` : vm.host !== undefined ? `the agent of host ${vm.host}` : 'the appliance']);
  if (vm.disks.length === 0) pairs.push(['Disks', '-']);
  for (const [i, d] of vm.disks.entries()) pairs.push([i === 0 ? 'Disks' : '', `${d.device}  ${formatBytes(d.sizeBytes)}  ${d.format}${d.file === undefined ? '' : `  ${d.file}`}`]);
  pairs.push(['Last backup', lastText(vm.lastBackup)]);
  pairs.push(['Registered', formatTime(vm.createdAt)]);
  return formatPairs(pairs);
}

function backupsTable(backups: BackupRecordView[]): string {
  return formatTable(
    ['POINT', 'KIND', 'READ', 'WRITTEN', 'DURATION', 'FROZEN', 'WORKFLOW'],
    backups.map((b) => [
      b.point,
      b.kind,
      formatBytes(b.bytesRead),
      formatBytes(b.bytesWritten),
      formatDuration(b.durationMs / 1000),
      b.freezeMs === null ? '-' : `${Math.round(b.freezeMs)} ms`,
      b.workflow,
    ]),
  );
}
