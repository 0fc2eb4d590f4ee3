// `vmvault <command>`: parses the command line, finds the appliance and its token, runs one
// command and turns any failure into a message and an exit code. (`vmvault appliance` is not
// here: bin/vmvault.js sends it to src/appliance.ts, the composition root.)

import { DEFAULT_DATA_DIR, DEFAULT_URL } from '../control/defaults.js';
import { ApiClient, parseBaseUrl, resolveToken } from './client.js';
import { CliError, usage } from './cli-error.js';
import { type Command, type Flags, refuseOptions } from './commands/context.js';
import { EXIT, exitCodeFor } from './exit-codes.js';
import { type CliIO, processIO } from './io.js';

// Each command's module is loaded when it runs: a command compiles only its own code, which
// counts for a CLI whose whole run should take a few hundred ms (tools/bench-cli.ts).
const COMMANDS: Record<string, () => Promise<Command>> = {
  share: async () => (await import('./commands/shares.js')).shareCommand,
  stats: async () => (await import('./commands/stats.js')).statsCommand,
  snapshot: async () => (await import('./commands/snapshots.js')).snapshotCommand,
  // `clone create SHARE SNAP NEW` makes a writable clone; `clone VM --to DEST` a clone copy (issue 14).
  clone: async () => (await import('./commands/destinations.js')).cloneOrCopyCommand,
  fastcopy: async () => (await import('./commands/snapshots.js')).fastcopyCommand,
  gc: async () => (await import('./commands/jobs.js')).gcCommand,
  verify: async () => (await import('./commands/jobs.js')).verifyCommand,
  index: async () => (await import('./commands/jobs.js')).indexCommand,
  jobs: async () => (await import('./commands/jobs.js')).jobsCommand,
  vm: async () => (await import('./commands/vms.js')).vmCommand,
  backup: async () => (await import('./commands/vms.js')).backupCommand,
  restore: async () => (await import('./commands/vms.js')).restoreCommand,
  agent: async () => (await import('./commands/agents.js')).agentCommand,
  export: async () => (await import('./commands/exports.js')).exportCommand,
  catalog: async () => (await import('./commands/catalog.js')).catalogCommand,
  find: async () => (await import('./commands/catalog.js')).findCommand,
  'restore-file': async () => (await import('./commands/catalog.js')).restoreFileCommand,
  policy: async () => (await import('./commands/policies.js')).policyCommand,
  host: async () => (await import('./commands/hosts.js')).hostCommand,
  cluster: async () => (await import('./commands/hosts.js')).clusterCommand,
  group: async () => (await import('./commands/groups.js')).groupCommand,
  destination: async () => (await import('./commands/destinations.js')).destinationCommand,
  dr: async () => (await import('./commands/dr.js')).drCommand,
  recover: async () => (await import('./commands/recover.js')).recoverCommand,
};

const HELP = `usage: vmvault <command> [options]

Shares
  share list                              list shares
  share get <share>                       one share
  share create <share>                    create an empty share
  share delete <share> [--force] [--delete-snapshots]
                                          delete a share; --force: with its files,
                                          --delete-snapshots: with its snapshots
  stats                                   logical vs stored bytes, dedup and compression ratios

Snapshots and copies
  snapshot list <share>
  snapshot get <share> <snapshot>
  snapshot create <share> <snapshot>      read-only, at <share>/.snapshots/<snapshot>/
  snapshot delete <share> <snapshot>
  clone create <share> <snapshot> <new-share>
  fastcopy <from> <share>/<path>          copy a file or directory by reference, no new space;
                                          <from>: <share>/<path>, or from a snapshot
                                          <share>/.snapshots/<snapshot>/<path>; any share

Maintenance (jobs; a progress bar until done, Ctrl-C cancels)
  gc                                      reclaim space no longer referenced
  verify [<share>[/<snapshot>]] [--full] [--repair]
                                          check the store, a share or a snapshot; --repair
                                          mends damaged segments from clone or DR copies
  index rebuild                           rebuild the segment index from the containers
  jobs                                    running and recent jobs
  jobs <id> | jobs watch <id> | jobs cancel <id>

VM backup (backups and restores are jobs, like gc)
  vm add <vm> --qmp <addr> [--qga <addr>] [--pg <url>] [--share <share>] [--workflow <w>]
         [--agent <name>] [--script <path>]
                                          protect a VM; <addr>: unix:/path or tcp:host:port;
                                          --qga for app-consistent backups (fsfreeze), --pg
                                          postgres://user@host/db for a database CHECKPOINT;
                                          the share defaults to the VM's name; --agent: the
                                          external agent that copies its disks; --script: an
                                          executable for the script plug-in's actions
  vm list                                 VMs: state, disks (device, size, format), last backup
  vm get <vm>                             one VM
  vm remove <vm>                          stop protecting it (its share and backups stay)
  backup <vm> [--workflow <w>] [--full]   back up a VM now (incremental when it can be;
                                          --full reads every disk whole)
  backup --group <g> [--parallel N] [--order busiest|largest|alphabetical] [--workflow <w>] [--full]
                                          back up every VM of a group at one moment, then copy
                                          N at a time (default 2), busiest first; each VM's
                                          snapshot is released as soon as its copy ends
  backup list <vm>                        its restore points: time, kind, bytes read, duration
  restore <vm> --to <dir> [--point <time>] [--format raw|qcow2]
                                          write a restore point's disks (newest by default)
                                          into <dir> on the appliance host
  restore <vm> --in-place [--point <time>]
                                          over the disk files the VM uses; an HA VM's
                                          cluster resource goes offline and back; a running
                                          VM is refused

Hosts and the cluster (issue 13)
  host add <host> --agent <name>          a hypervisor host, reached through the agent on it
                                          (vmvault agent --name <name> --qmp-dir DIR ...)
  host list | host remove <host>
  cluster [--json]                        every host's VMs: state, disks, I/O load; an
                                          unreachable host with its reason
  vm add <vm> --host <host> --qmp unix:<path on the host> [--uuid <uuid>]
  vm add <vm> --from-cluster              a VM the cluster map shows (host, QMP, uuid from it)
VM groups (VMs backed up together at one moment)
  group create <g> --vms a,b,c | --pattern 'web*' | --host <h>
                                          a list, a name pattern or a host (resolved at each run)
  group list                              groups and the VMs each holds now
  group show <g>                          one group
  group remove <g>                        its VMs and their points stay

Agents (issue 12)
  agent --appliance <url> --token <t> --name <n> [--pin <sha256>] [--streams <n>] [--reach <prefix>]
                                          run an agent near the hypervisors (vmvault agent --help)
  agent list                              agents: address, version, state, tasks, last seen, bytes
  agent token create <name> [--trusted]   make an agent's token (printed once); --trusted:
                                          store-wide dedup answers (default: its share's only)
  agent token create <name> --replication a token another appliance sends clone copies with
  agent token list                        agent tokens by name
  agent token revoke <name>               refused from the next request on
Exports to hypervisors (NFS: nfs-ganesha, needs appliance --fuse 3; SMB: Samba)
  export list                             every export: URL, clients, state
  export nfs|smb enable <share> [--clients CIDR,...]
                                          export a share to these networks (default: this
                                          host only), e.g. --clients 10.0.0.0/24,192.0.2.7
  export nfs|smb disable <share>          stop exporting it
  export smb password [--user <name>]     set the SMB account's password (a local Unix user,
                                          default root), read from stdin or $VMVAULT_SMB_PASSWORD

Guest files (the catalog of each restore point's disk images)
  catalog build <vm> [--point <time>]     catalog a point (a job; runs by itself after each backup)
  catalog build --share <share> --point <snapshot> [--image <file>]
                                          catalog disk images in any share's snapshot
  catalog status [<vm>] [--share <share>] which points are cataloged: files, volumes, notes
  find <pattern> [--vm <vm>] [--since 30d] [--path-prefix /etc] [--size +1M|-10k] [--limit N]
                                          every point holding a matching file name (glob)
  find --changed <path> --vm <vm>         the points where that file changed
  restore-file <vm> <path> --to <dir> [--point <time>] [--image <file>] [--volume p1]
                                          copy one guest file of a point (newest cataloged by
                                          default) into <dir> here

Policies (scheduled backups, GFS retention, retention locks)
  policy create <name> --backup <cron> [--keep <rules>] [--lock <duration>] [--workflow <w>]
                                          <cron> in local time, e.g. '0 */4 * * *';
                                          <rules>: 'hourly=24,daily=14,weekly=8,monthly=12,
                                          yearly=3,last=2'; <duration>: 7d, 12h, 1y (every new
                                          point is locked that long: nothing can delete it)
  policy list                             policies and their next runs
  policy show <name>                      next runs, last results, each VM's points and locks
  policy assign <name> --vm <vm>          back the VM up on the policy's schedule
  policy assign <name> --group <group>    one group backup of its VMs (resolved each run) per run
  policy unassign <name> --vm <vm> | --group <group>
  policy create ... --clone '<when> -> <destination>'
                                          clone copies of the newest points (repeatable):
                                          'daily 02:00 -> site-b', '0 2 * * * -> site-b'
  policy create ... --dr '<when> -> <dir-destination or /abs/dir>'
                                          a DR copy of the whole appliance on that schedule
                                          (vmvault dr copy), e.g. 'daily 03:00 -> dr-1'
  policy remove <name>                    refused while points of its VMs are locked
  policy prune <name> [--vm <vm>] [--dry-run]
                                          apply retention now; --dry-run shows what would go

Clone copies (to another appliance or a directory archive)
  destination add <name> --appliance https://<host>:7443 --token <t> [--pin <sha256>]
                                          another appliance; <t>: its replication token
                                          (there: vmvault agent token create <n> --replication);
                                          this appliance's API token: $VMVAULT_TOKEN or --data
  destination add <name> --dir <path>     a directory (removable disk, tape staging)
  destination list | show <name> | remove <name>
  destination verify <name> [--point <p>] check the copies there; names a damaged byte
  clone <vm> --to <destination> [--point <p>]
                                          copy a restore point (newest by default), verified

Disaster recovery (a copy of the whole appliance: store, shares, snapshots, locks, policies, VMs)
  dr copy --to <dir or destination>       copy the appliance, consistent as of one checkpoint, to a
                                          directory on its host (a job; only new containers are
                                          copied when <dir> holds an earlier copy)
  dr verify --from <dir>                  check a DR copy here, without an appliance
  dr restore --from <dir> --data <newdir> rebuild a data directory from a DR copy alone (here,
                                          without an appliance), then: vmvault appliance --data <newdir>
Instant recovery (the VM runs from a clone of its point on the mount)
  recover <vm> [--point <time>] [--name <n>]
                                          start the VM in QEMU from a writable clone <n> of the
                                          point (default <vm>-recovery): no copy, seconds
  recover <vm> --migrate --to <dir> [--name <n>] [--format qcow2|raw]
                                          move its disks to <dir> while it runs (blockdev-mirror);
                                          then it no longer uses the mount
  recover list                            recovered VMs: point, state, QEMU pid, sockets
  recover stop <n> [--drop-clone]         stop the VM; keep (default) or drop its clone
  recover release <n> [--drop-clone]      forget a migrated VM, leaving it running

Appliance
  appliance ...                           run the appliance (see vmvault appliance --help)

Options
  --url <url>      appliance control plane (default ${DEFAULT_URL})
  --token <token>  API token (default: $VMVAULT_TOKEN, then <data>/api-token)
  --data <dir>     appliance data directory, to read its api-token (default ${DEFAULT_DATA_DIR})
  --json           machine-readable output on stdout
  --detach         start a job, print its id, do not wait
  -h, --help       this text
  --               what follows are names, even if they start with '-'

Exit codes: 0 ok, 1 failure, 2 usage or bad name, 3 appliance unreachable, 4 token refused,
5 not found, 6 conflict (exists, not empty, job running), 7 damaged data or verify problems,
8 disk full, 9 appliance unavailable, 10 job cancelled, 130 interrupted.
`;

export async function main(argv: string[], io: CliIO = processIO()): Promise<number> {
  let json = argv.includes('--json');
  try {
    const { values, positionals } = parse(argv);
    json = values.json === true;
    const [name, ...args] = positionals;
    if (values.help === true || name === 'help') {
      io.stdout(HELP);
      return EXIT.OK;
    }
    if (name === undefined) {
      io.stderr(HELP);
      return EXIT.USAGE;
    }
    const load = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
    if (load === undefined) throw usage(`unknown command ${JSON.stringify(name)} (vmvault help lists them)`);
    const flags: Flags = {
      json,
      force: values.force === true,
      deleteSnapshots: values['delete-snapshots'] === true,
      full: values.full === true,
      repair: values.repair === true,
      detach: values.detach === true,
      qmp: values.qmp,
      qga: values.qga,
      pg: values.pg,
      share: values.share,
      workflow: values.workflow,
      point: values.point,
      to: values.to,
      format: values.format,
      trusted: values.trusted === true,
      agent: values.agent,
      clients: values.clients,
      user: values.user,
      vm: values.vm,
      since: values.since,
      pathPrefix: values['path-prefix'],
      size: values.size,
      changed: values.changed,
      limit: values.limit,
      image: values.image,
      volume: values.volume,
      backup: values.backup,
      keep: values.keep,
      lock: values.lock,
      group: values.group,
      script: values.script,
      vms: values.vms,
      pattern: values.pattern,
      parallel: values.parallel,
      order: values.order,
      dryRun: values['dry-run'] === true,
      inPlace: values['in-place'] === true,
      host: values.host,
      uuid: values.uuid,
      fromCluster: values['from-cluster'] === true ? true : undefined,
      clone: values.clone,
      dr: values.dr,
      appliance: values.appliance,
      pin: values.pin,
      dir: values.dir,
      replication: values.replication === true,
      name: values.name,
      migrate: values.migrate === true,
      dropClone: values['drop-clone'] === true,
    };
    // `destination add --token T`: the destination's token; our own comes from $VMVAULT_TOKEN or <data>.
    const destAdd = name === 'destination' && args[0] === 'add';
    if (destAdd) {
      flags.destToken = values.token;
      values.token = undefined;
    }
    if (flags.inPlace && name !== 'restore') throw usage(`${name} takes no --in-place`);
    if (!['vm', 'backup', 'restore', 'catalog', 'find', 'restore-file', 'policy', 'host', 'group', 'destination', 'clone', 'dr', 'recover'].includes(name)) refuseOptions(flags, name, []);
    if (name !== 'recover' && (flags.name !== undefined || flags.migrate || flags.dropClone)) throw usage(`${name} takes no --${flags.name !== undefined ? 'name' : flags.migrate ? 'migrate' : 'drop-clone'}`);
    if (flags.trusted && name !== 'agent') throw usage(`${name} takes no --trusted`);
    if (flags.replication && name !== 'agent') throw usage(`${name} takes no --replication`);
    if (name !== 'export' && (flags.clients !== undefined || flags.user !== undefined)) throw usage(`${name} takes no --${flags.clients !== undefined ? 'clients' : 'user'}`);
    const baseUrl = parseBaseUrl(values.url ?? DEFAULT_URL);
    const token = await resolveToken({ token: values.token, data: values.data }, io.env);
    const command = await load();
    return await command({ client: new ApiClient(baseUrl, token), io, flags }, args);
  } catch (err) {
    return report(err, io, json);
  }
}

// The options, and whether each takes a value. Parsed here rather than by util.parseArgs, which
// reads any argument that starts with '-' as an option (a share named "-dash" became "Unknown
// option '-d'") and words its errors for programmers, with unbalanced quotes.
const OPTIONS = {
  url: 'string',
  token: 'string',
  data: 'string',
  json: 'boolean',
  force: 'boolean',
  'delete-snapshots': 'boolean',
  full: 'boolean',
  repair: 'boolean',
  'in-place': 'boolean',
  detach: 'boolean',
  help: 'boolean',
  qmp: 'string',
  qga: 'string',
  pg: 'string',
  share: 'string',
  workflow: 'string',
  point: 'string',
  to: 'string',
  format: 'string',
  trusted: 'boolean',
  agent: 'string',
  clients: 'string',
  user: 'string',
  vm: 'string',
  since: 'string',
  'path-prefix': 'string',
  size: 'string',
  changed: 'string',
  limit: 'string',
  image: 'string',
  volume: 'string',
  backup: 'string',
  keep: 'string',
  lock: 'string',
  group: 'string',
  script: 'string',
  vms: 'string',
  pattern: 'string',
  parallel: 'string',
  order: 'string',
  'dry-run': 'boolean',
  host: 'string',
  uuid: 'string',
  'from-cluster': 'boolean',
  clone: 'string[]',
  dr: 'string',
  appliance: 'string',
  pin: 'string',
  dir: 'string',
  replication: 'boolean',
  name: 'string',
  migrate: 'boolean',
  'drop-clone': 'boolean',
} as const;
type OptionName = keyof typeof OPTIONS;
type Values = { [K in OptionName]?: (typeof OPTIONS)[K] extends 'string' ? string : (typeof OPTIONS)[K] extends 'string[]' ? string[] : boolean };

/**
 * `--name`, `--name value`, `--name=value` and `-h` are options; everything else is a
 * positional argument, including a single '-' and names such as "-dash" (only `-h` is a short
 * option). After `--`, everything is positional, so even "--json" can be a name.
 */
export function parse(argv: string[]): { values: Values; positionals: string[] } {
  const values: Values = {};
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg === '-h') {
      values.help = true;
      continue;
    }
    if (!arg.startsWith('--')) {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    if (!Object.hasOwn(OPTIONS, name)) {
      throw usage(`unknown option --${name} (vmvault help lists the options; to pass a name that starts with '-', put it after --, as in: vmvault share create -- ${arg})`);
    }
    const option = name as OptionName;
    if (OPTIONS[option] === 'boolean') {
      if (eq >= 0) throw usage(`--${name} takes no value (got ${JSON.stringify(arg.slice(eq + 1))})`);
      (values as Record<string, unknown>)[option] = true;
      continue;
    }
    let value: string;
    if (eq >= 0) value = arg.slice(eq + 1);
    else if (i + 1 < argv.length) value = argv[++i];
    else throw usage(`--${name} needs a value`);
    if (OPTIONS[option] === 'string[]') {
      // Repeatable (policy create --clone A --clone B): every value kept, in order.
      const list = ((values as Record<string, unknown>)[option] as string[] | undefined) ?? [];
      (values as Record<string, unknown>)[option] = [...list, value];
    } else (values as Record<string, unknown>)[option] = value;
  }
  return { values, positionals };
}

function report(err: unknown, io: CliIO, json: boolean): number {
  const e = err instanceof CliError ? err : new CliError('INTERNAL', `unexpected failure: ${(err as Error)?.stack ?? String(err)}`);
  if (json) io.stdout(`${JSON.stringify({ error: { code: e.code, message: e.message } }, null, 2)}\n`);
  io.stderr(`vmvault: ${e.message}\n`);
  return exitCodeFor(e.code);
}
