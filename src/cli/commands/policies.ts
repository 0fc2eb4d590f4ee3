// Protection policies from the command line (issue 14, part A): create, list, show, assign,
// unassign, remove, prune [--dry-run].

import type { PolicyDetail, PolicyView, PruneResult } from '../../control/policy-types.js';
import { seg } from '../client.js';
import { usage } from '../cli-error.js';
import { EXIT } from '../exit-codes.js';
import { formatPairs, formatTable, formatTime } from '../format.js';
import { type CommandContext, expectArgs, output, refuseOptions } from './context.js';

export async function policyCommand(ctx: CommandContext, args: string[]): Promise<number> {
  const [verb, ...rest] = args;
  const f = ctx.flags;
  switch (verb) {
    case 'create': {
      refuseOptions(f, 'policy create', ['backup', 'keep', 'lock', 'workflow', 'clone', 'dr']);
      const [name] = expectArgs(rest, ['name'], 'policy create');
      if (f.backup === undefined) throw usage("policy create: --backup <cron> is required, e.g. --backup '0 */4 * * *'");
      const body: Record<string, string | string[]> = { name, backup: f.backup };
      if (f.clone !== undefined) body.clone = f.clone;
      if (f.dr !== undefined) body.dr = f.dr;
      if (f.keep !== undefined) body.keep = f.keep;
      if (f.lock !== undefined) body.lock = f.lock;
      if (f.workflow !== undefined) body.workflow = f.workflow;
      const p = await ctx.client.post<PolicyView>('/policies', body);
      output(ctx, `created policy ${p.name}\n${policyText(p)}`, p);
      return EXIT.OK;
    }
    case 'list': {
      refuseOptions(f, 'policy list', []);
      expectArgs(rest, [], 'policy list');
      const { policies } = await ctx.client.get<{ policies: PolicyView[] }>('/policies');
      output(
        ctx,
        policies.length === 0
          ? "no policies yet (vmvault policy create <name> --backup '<cron>')"
          : formatTable(
              ['NAME', 'BACKUP', 'KEEP', 'LOCK', 'VMS', 'NEXT RUN'],
              policies.map((p) => [p.name, p.backup, p.keep, p.lock, p.vms.join(',') || '-', p.nextRuns[0] ? formatTime(p.nextRuns[0]) : '-']),
            ),
        policies,
      );
      return EXIT.OK;
    }
    case 'show': {
      refuseOptions(f, 'policy show', []);
      const [name] = expectArgs(rest, ['name'], 'policy show');
      const p = await ctx.client.get<PolicyDetail>(`/policies/${seg(name)}`);
      output(ctx, detailText(p), p);
      return EXIT.OK;
    }
    case 'assign':
    case 'unassign': {
      refuseOptions(f, `policy ${verb}`, ['vm', 'group']);
      const [name] = expectArgs(rest, ['name'], `policy ${verb}`);
      if ((f.vm === undefined) === (f.group === undefined)) throw usage(`policy ${verb}: give --vm <vm> or --group <group> (one of them)`);
      const body: Record<string, string> = {};
      if (f.vm !== undefined) body.vm = f.vm;
      if (f.group !== undefined) body.group = f.group;
      const p = await ctx.client.post<PolicyView>(`/policies/${seg(name)}/${verb}`, body);
      const what = f.group !== undefined ? `group ${f.group}` : `VM ${f.vm}`;
      const members = f.group !== undefined && verb === 'assign' ? ` (VMs now: ${p.groups?.find((g) => g.name === f.group)?.members.join(', ') || 'none'})` : '';
      output(ctx, verb === 'assign' ? `${what} is protected by policy ${p.name}${members} (next run ${p.nextRuns[0] ? formatTime(p.nextRuns[0]) : '-'})` : `${what} is no longer in policy ${p.name} (its points keep their locks)`, p);
      return EXIT.OK;
    }
    case 'remove': {
      refuseOptions(f, 'policy remove', []);
      const [name] = expectArgs(rest, ['name'], 'policy remove');
      await ctx.client.delete(`/policies/${seg(name)}`);
      output(ctx, `removed policy ${name}`, { removed: name });
      return EXIT.OK;
    }
    case 'prune': {
      refuseOptions(f, 'policy prune', ['vm', 'dryRun']);
      const [name] = expectArgs(rest, ['name'], 'policy prune');
      const body: { vm?: string; dryRun?: boolean } = {};
      if (f.vm !== undefined) body.vm = f.vm;
      if (f.dryRun === true) body.dryRun = true;
      const r = await ctx.client.post<PruneResult>(`/policies/${seg(name)}/prune`, body);
      output(ctx, pruneText(r), r);
      return EXIT.OK;
    }
    default:
      throw usage(`policy: expected create, list, show, assign, unassign, remove or prune, got ${verb === undefined ? 'nothing' : JSON.stringify(verb)}`);
  }
}

function policyText(p: PolicyView): string {
  const pairs: Array<[string, string]> = [
    ['Policy', p.name],
    ['Backup', `${p.backup} (local time)`],
    ['Keep', p.keep],
    ['Lock', p.lock],
  ];
  if (p.workflow !== undefined) pairs.push(['Workflow', p.workflow]);
  if (p.clones !== undefined && p.clones.length > 0) pairs.push(['Clones', p.clones.join('; ')]);
  if (p.dr !== undefined) pairs.push(['DR copy', p.dr]);
  pairs.push(['VMs', p.vms.join(', ') || '-']);
  // A group's members are resolved at each run: shown as they are now.
  for (const g of p.groups ?? []) pairs.push([`Group ${g.name}`, g.problem ? `- (${g.problem})` : g.members.join(', ') || '- (no registered VM now)']);
  pairs.push(['Next runs', p.nextRuns.map(formatTime).join(', ') || '-']);
  return formatPairs(pairs);
}

function detailText(p: PolicyDetail): string {
  const parts = [policyText(p)];
  for (const v of p.points) {
    const head = `${v.vm} (share ${v.share}): ${v.points.length} point(s)${v.problem ? ` - ${v.problem}` : ''}`;
    // The COPIES column only where some point has a copy (issue 14 part B).
    const withCopies = v.points.some((pt) => (pt.copies ?? []).length > 0);
    const rows = v.points.map((pt) => [
      pt.point,
      pt.locked ? `locked until ${formatTime(pt.lockedUntil!)}` : pt.lockedUntil ? `lock ended ${formatTime(pt.lockedUntil)}` : '-',
      ...(withCopies ? [(pt.copies ?? []).map((c) => `${c.destination}${c.verifiedAt ? ' (verified)' : ''}`).join(', ') || '-'] : []),
    ]);
    parts.push(rows.length ? `${head}\n${formatTable(['POINT', 'LOCK', ...(withCopies ? ['COPIES'] : [])], rows)}` : head);
  }
  if (p.running.length || p.queued.length) parts.push(`Running: ${p.running.map((r) => `${r.vm}${r.job ? ` (job ${r.job})` : ''}`).join(', ') || '-'}; queued: ${p.queued.map((q) => q.vm).join(', ') || '-'}`);
  const runs = p.runs.slice(-10);
  parts.push(runs.length === 0 ? 'No runs yet.' : formatTable(['TIME', 'VM', 'EVENT', 'DETAIL'], runs.map((r) => [formatTime(r.at), r.vm, r.event, [r.job && `job ${r.job}`, r.point, r.detail].filter(Boolean).join(' ')])));
  return parts.join('\n\n');
}

function pruneText(r: PruneResult): string {
  const out: string[] = [];
  for (const v of r.vms) {
    const rows = v.marks.map((m) => [m.point, m.keep ? 'keep' : r.dryRun ? 'would remove' : v.removed.includes(m.point) ? 'removed' : 'remove failed', m.reason]);
    out.push(`${v.vm}:\n${rows.length ? formatTable(['POINT', 'ACTION', 'WHY'], rows) : 'no points'}`);
    for (const f of v.failed) out.push(`  ${f.point}: ${f.error}`);
  }
  return `${r.dryRun ? 'dry run: nothing removed\n' : ''}${out.join('\n\n') || 'the policy has no VMs'}`;
}
