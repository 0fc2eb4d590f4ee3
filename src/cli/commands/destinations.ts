// Destinations and clone copies from the command line (issue 14 part B): `vmvault destination
// add|list|show|remove|verify` and `vmvault clone VM --to DEST [--point P]` (a job, watched to
// its end). `clone create SHARE SNAP NEW` stays the writable clone of a snapshot.

import { seg } from '../client.js';
import { CliError, usage } from '../cli-error.js';
import { EXIT } from '../exit-codes.js';
import { formatPairs, formatTable, formatTime } from '../format.js';
import { type CommandContext, expectArgs, output, refuseOptions } from './context.js';
import { startAndWatch } from './jobs.js';
import { cloneCommand } from './snapshots.js';

interface DestinationView {
  name: string;
  kind: 'appliance' | 'dir';
  url?: string;
  pin?: string;
  path?: string;
  createdAt: string;
}

interface DestinationDetail extends DestinationView {
  copies: Array<{ vm: string; point: string; at: string; verifiedAt?: string; bytesSent?: number }>;
  policies: string[];
}

interface VerifyResult {
  destination: string;
  kind: string;
  points: number;
  problems: Array<{ kind: string; message: string }>;
}

function where(d: DestinationView): string {
  return d.kind === 'dir' ? `directory ${d.path}` : `appliance ${d.url}${d.pin ? ` (pinned ${d.pin.slice(0, 16)}…)` : ''}`;
}

export async function destinationCommand(ctx: CommandContext, args: string[]): Promise<number> {
  const [verb, ...rest] = args;
  const f = ctx.flags;
  switch (verb) {
    case 'add': {
      refuseOptions(f, 'destination add', ['appliance', 'pin', 'dir']);
      const [name] = expectArgs(rest, ['name'], 'destination add');
      if ((f.appliance === undefined) === (f.dir === undefined)) throw usage('destination add: give --appliance https://HOST:7443 --token T, or --dir PATH');
      if (f.appliance !== undefined && f.destToken === undefined) throw usage("destination add --appliance: --token is required (the destination's replication token)");
      if (f.dir !== undefined && (f.destToken !== undefined || f.pin !== undefined)) throw usage('destination add --dir takes no --token or --pin');
      const body: Record<string, string> = { name };
      if (f.appliance !== undefined) body.appliance = f.appliance;
      if (f.destToken !== undefined) body.token = f.destToken;
      if (f.pin !== undefined) body.pin = f.pin;
      if (f.dir !== undefined) body.dir = f.dir;
      const d = await ctx.client.post<DestinationView>('/destinations', body);
      output(ctx, `added destination ${d.name}: ${where(d)}`, d);
      return EXIT.OK;
    }
    case 'list': {
      refuseOptions(f, 'destination list', []);
      expectArgs(rest, [], 'destination list');
      const { destinations } = await ctx.client.get<{ destinations: DestinationView[] }>('/destinations');
      output(
        ctx,
        destinations.length === 0 ? 'no destinations yet (vmvault destination add <name> --appliance URL --token T | --dir PATH)' : formatTable(['NAME', 'KIND', 'WHERE', 'ADDED'], destinations.map((d) => [d.name, d.kind, d.kind === 'dir' ? d.path! : d.url!, formatTime(d.createdAt)])),
        destinations,
      );
      return EXIT.OK;
    }
    case 'show': {
      refuseOptions(f, 'destination show', []);
      const [name] = expectArgs(rest, ['name'], 'destination show');
      const d = await ctx.client.get<DestinationDetail>(`/destinations/${seg(name)}`);
      const head = formatPairs([
        ['Destination', d.name],
        ['Where', where(d)],
        ['Policies', d.policies.join(', ') || '-'],
        ['Copies', String(d.copies.length)],
      ]);
      const rows = d.copies.slice(-20).map((c) => [c.vm, c.point, formatTime(c.at), c.verifiedAt ? formatTime(c.verifiedAt) : '-']);
      output(ctx, rows.length ? `${head}\n\n${formatTable(['VM', 'POINT', 'COPIED', 'VERIFIED'], rows)}` : head, d);
      return EXIT.OK;
    }
    case 'remove': {
      refuseOptions(f, 'destination remove', []);
      const [name] = expectArgs(rest, ['name'], 'destination remove');
      await ctx.client.delete(`/destinations/${seg(name)}`);
      output(ctx, `removed destination ${name} (the copies there stay)`, { removed: name });
      return EXIT.OK;
    }
    case 'verify': {
      refuseOptions(f, 'destination verify', ['point']);
      const [name] = expectArgs(rest, ['name'], 'destination verify');
      const r = await ctx.client.post<VerifyResult>(`/destinations/${seg(name)}/verify`, f.point === undefined ? {} : { point: f.point });
      const lines = [`destination ${r.destination}: ${r.points} point(s) checked, ${r.problems.length === 0 ? 'no problems' : `${r.problems.length} problem(s)`}`];
      for (const p of r.problems.slice(0, 20)) lines.push(`  ${p.kind}: ${p.message}`);
      if (r.problems.length > 20) lines.push(`  ... and ${r.problems.length - 20} more (--json lists all)`);
      output(ctx, lines.join('\n'), r);
      return r.problems.length > 0 ? EXIT.DAMAGED : EXIT.OK;
    }
    default:
      throw usage(`destination: expected add, list, show, remove or verify, got ${verb === undefined ? 'nothing' : JSON.stringify(verb)}`);
  }
}

/** `clone create SHARE SNAP NEW` (a writable clone) or `clone VM --to DEST [--point P]` (a copy). */
export async function cloneOrCopyCommand(ctx: CommandContext, args: string[]): Promise<number> {
  if (args[0] === 'create' && ctx.flags.to === undefined) {
    refuseOptions(ctx.flags, 'clone create', []);
    return cloneCommand(ctx, args);
  }
  refuseOptions(ctx.flags, 'clone', ['to', 'point']);
  const [vm] = expectArgs(args, ['vm'], 'clone');
  if (ctx.flags.to === undefined) throw usage('clone <vm>: --to <destination> is required (vmvault destination list)');
  if (ctx.flags.to === '') throw new CliError('INVALID_ARGUMENT', '--to is empty');
  return startAndWatch(ctx, `/vms/${seg(vm)}/clones`, { to: ctx.flags.to, ...(ctx.flags.point !== undefined ? { point: ctx.flags.point } : {}) });
}
