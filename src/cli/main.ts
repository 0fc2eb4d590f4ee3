// `vmvault <command>`: parses the command line, finds the appliance and its token, runs one
// command and turns any failure into a message and an exit code. (`vmvault appliance` is not
// here: bin/vmvault.js sends it to src/appliance.ts, the composition root.)

import { parseArgs } from 'node:util';
import { DEFAULT_DATA_DIR, DEFAULT_URL } from '../control/defaults.js';
import { ApiClient, parseBaseUrl, resolveToken } from './client.js';
import { CliError, usage } from './cli-error.js';
import type { Command, Flags } from './commands/context.js';
import { gcCommand, indexCommand, jobsCommand, verifyCommand } from './commands/jobs.js';
import { shareCommand } from './commands/shares.js';
import { cloneCommand, fastcopyCommand, snapshotCommand } from './commands/snapshots.js';
import { statsCommand } from './commands/stats.js';
import { EXIT, exitCodeFor } from './exit-codes.js';
import { type CliIO, processIO } from './io.js';

const COMMANDS: Record<string, Command> = {
  share: shareCommand,
  stats: statsCommand,
  snapshot: snapshotCommand,
  clone: cloneCommand,
  fastcopy: fastcopyCommand,
  gc: gcCommand,
  verify: verifyCommand,
  index: indexCommand,
  jobs: jobsCommand,
};

const HELP = `usage: vmvault <command> [options]

Shares
  share list                              list shares
  share get <share>                       one share
  share create <share>                    create an empty share
  share delete <share> [--force]          delete a share (--force: even with files or snapshots)
  stats                                   logical vs stored bytes, dedup and compression ratios

Snapshots and copies
  snapshot list <share>
  snapshot get <share> <snapshot>
  snapshot create <share> <snapshot>      read-only, at <share>/.snapshots/<snapshot>/
  snapshot delete <share> <snapshot>
  clone create <share> <snapshot> <new-share>
  fastcopy <share>/<path> <share>/<path>  copy a file by reference (same share)

Maintenance (jobs; a progress bar until done, Ctrl-C cancels)
  gc                                      reclaim space no longer referenced
  verify [<share>[/<snapshot>]] [--full]  check the store, a share or a snapshot
  index rebuild                           rebuild the segment index from the containers
  jobs                                    running and recent jobs
  jobs <id> | jobs watch <id> | jobs cancel <id>

Appliance
  appliance ...                           run the appliance (see vmvault appliance --help)

Options
  --url <url>      appliance control plane (default ${DEFAULT_URL})
  --token <token>  API token (default: $VMVAULT_TOKEN, then <data>/api-token)
  --data <dir>     appliance data directory, to read its api-token (default ${DEFAULT_DATA_DIR})
  --json           machine-readable output on stdout
  --detach         start a job, print its id, do not wait
  -h, --help       this text

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
    const command = COMMANDS[name];
    if (command === undefined) throw usage(`unknown command ${JSON.stringify(name)} (vmvault help lists them)`);
    const flags: Flags = { json, force: values.force === true, full: values.full === true, detach: values.detach === true };
    const baseUrl = parseBaseUrl(values.url ?? DEFAULT_URL);
    const token = await resolveToken({ token: values.token, data: values.data }, io.env);
    return await command({ client: new ApiClient(baseUrl, token), io, flags }, args);
  } catch (err) {
    return report(err, io, json);
  }
}

function parse(argv: string[]) {
  try {
    return parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        url: { type: 'string' },
        token: { type: 'string' },
        data: { type: 'string' },
        json: { type: 'boolean' },
        force: { type: 'boolean' },
        full: { type: 'boolean' },
        detach: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    throw usage(`${(err as Error).message.split('\n')[0]} (vmvault help lists the options)`);
  }
}

function report(err: unknown, io: CliIO, json: boolean): number {
  const e = err instanceof CliError ? err : new CliError('INTERNAL', `unexpected failure: ${(err as Error)?.stack ?? String(err)}`);
  if (json) io.stdout(`${JSON.stringify({ error: { code: e.code, message: e.message } }, null, 2)}\n`);
  io.stderr(`vmvault: ${e.message}\n`);
  return exitCodeFor(e.code);
}
