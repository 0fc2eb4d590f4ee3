// What every command receives: a client, the process's streams, and the global flags.

import type { ApiClient } from '../client.js';
import { usage } from '../cli-error.js';
import type { CliIO } from '../io.js';

export interface Flags {
  json: boolean;
  force: boolean;
  deleteSnapshots: boolean;
  full: boolean;
  /** verify --repair: damaged segments repaired from other copies. */
  repair?: boolean;
  detach: boolean;
  // VM backup options (vms.ts); other commands refuse them.
  qmp?: string;
  qga?: string;
  pg?: string;
  share?: string;
  workflow?: string;
  point?: string;
  to?: string;
  format?: string;
  /** agent token create: store-wide dedup answers. */
  trusted?: boolean;
  /** vm add --agent NAME (issue 12). */
  agent?: string;
  // Export options (exports.ts); other commands refuse them.
  clients?: string;
  user?: string;
  // Catalog options (catalog.ts); other commands refuse them.
  vm?: string;
  since?: string;
  pathPrefix?: string;
  size?: string;
  changed?: string;
  limit?: string;
  image?: string;
  volume?: string;
  // Policy options (policies.ts); other commands refuse them.
  backup?: string;
  keep?: string;
  lock?: string;
  group?: string;
  script?: string;
  // Group options (groups.ts, backup --group).
  vms?: string;
  pattern?: string;
  parallel?: string;
  order?: string;
  dryRun?: boolean;
  /** restore --in-place (issue 13). */
  inPlace?: boolean;
  // Hosts (hosts.ts, issue 13): vm add --host H [--uuid U] | --from-cluster.
  host?: string;
  uuid?: string;
  fromCluster?: boolean;
  // Clone copies (destinations.ts, issue 14 part B); other commands refuse them.
  /** policy create --clone SPEC (repeatable). */
  clone?: string[];
  /** destination add --appliance URL. */
  appliance?: string;
  /** destination add --token T: the destination's replication token (not our API token). */
  destToken?: string;
  pin?: string;
  dir?: string;
  /** policy create --dr SPEC (the DR copy's schedule and destination). */
  dr?: string;
  /** agent token create --replication. */
  replication?: boolean;
  // Instant recovery options (recover.ts); other commands refuse them.
  name?: string;
  migrate?: boolean;
  dropClone?: boolean;
}

/** The VM options a command does not take, as a usage error; call with the ones it does. */
export function refuseOptions(flags: Flags, command: string, takes: ReadonlyArray<keyof Flags>): void {
  for (const k of ['qmp', 'qga', 'pg', 'share', 'workflow', 'point', 'to', 'format', 'agent', 'vm', 'since', 'pathPrefix', 'size', 'changed', 'limit', 'image', 'volume', 'backup', 'keep', 'lock', 'group', 'script', 'vms', 'pattern', 'host', 'parallel', 'order', 'clone', 'appliance', 'pin', 'dir', 'dr'] as const) {
    if (flags[k] !== undefined && !takes.includes(k)) throw usage(`${command} takes no --${k === 'pathPrefix' ? 'path-prefix' : k}`);
  }
  if (flags.dryRun === true && !takes.includes('dryRun')) throw usage(`${command} takes no --dry-run`);
  for (const k of ['host', 'uuid'] as const) if (flags[k] !== undefined && !takes.includes(k)) throw usage(`${command} takes no --${k}`);
  if (flags.fromCluster === true && !takes.includes('fromCluster')) throw usage(`${command} takes no --from-cluster`);
}

export interface CommandContext {
  client: ApiClient;
  io: CliIO;
  flags: Flags;
}

export type Command = (ctx: CommandContext, args: string[]) => Promise<number>;

/** Human text, or with --json the machine form, on stdout. */
export function output(ctx: CommandContext, human: string, machine: unknown): void {
  ctx.io.stdout(ctx.flags.json ? `${JSON.stringify(machine, null, 2)}\n` : `${human}\n`);
}

/** Exactly `names.length` positional arguments, or a usage error naming them. */
export function expectArgs(args: string[], names: string[], synopsis: string): string[] {
  if (args.length !== names.length) {
    const want = names.length === 0 ? 'no arguments' : names.map((n) => `<${n}>`).join(' ');
    throw usage(`${synopsis}: expected ${want}, got ${args.length === 0 ? 'none' : args.map((a) => JSON.stringify(a)).join(' ')}`);
  }
  return args;
}
