// How the Pacemaker plug-in runs the cluster's own tools (crm_mon, cibadmin, crm_resource). They
// talk to the local node's daemons over IPC, so they must run on a cluster node: on the
// appliance's own host (localRunner), on another host through its agent (the agent runs a
// localRunner there), or inside a node's namespaces in the tests (localRunner with an `nsenter`
// prefix). The plug-in never spawns anything itself; it only calls a runner.

import { execFile } from 'node:child_process';
import { vmError } from '../../errors.js';

export interface CommandResult {
  /** The exit status (non-zero is not thrown: crm_resource's codes mean things). */
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs argv (argv[0] on PATH), bounded by timeoutMs; rejects only when it could not run or timed out. */
export type CommandRunner = (argv: string[], opts: { timeoutMs: number }) => Promise<CommandResult>;

/** The most output read from one tool (a crm_mon of a large cluster is well under this). */
export const MAX_OUTPUT_BYTES = 8 << 20;

/**
 * Runs the tools on this host, each behind `prefix` (e.g. `['nsenter', '-t', PID, '-m', '-n',
 * '-u']` to reach a node that lives in namespaces).
 */
export function localRunner(prefix: string[] = []): CommandRunner {
  return (argv, { timeoutMs }) => {
    const full = [...prefix, ...argv];
    return new Promise((resolve, reject) => {
      execFile(full[0], full.slice(1), { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: MAX_OUTPUT_BYTES, encoding: 'utf8' }, (err, stdout, stderr) => {
        if (err === null) return resolve({ code: 0, stdout, stderr });
        const e = err as NodeJS.ErrnoException & { killed?: boolean; code?: unknown; signal?: string };
        if (e.code === 'ENOENT') {
          return reject(vmError('NOT_SUPPORTED', `${full[0]} is not installed on this host (Pacemaker's tools come in Debian's pacemaker-cli-utils)`, { plugin: 'pacemaker', command: argv[0] }));
        }
        if (e.killed || e.signal === 'SIGKILL') {
          return reject(vmError('TIMEOUT', `${argv.join(' ')} did not finish within ${fmtSeconds(timeoutMs)}`, { plugin: 'pacemaker', command: argv[0] }));
        }
        if (e.code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER') {
          return reject(vmError('PLUGIN_FAILED', `${argv[0]} wrote more than ${MAX_OUTPUT_BYTES} bytes; refused`, { plugin: 'pacemaker', command: argv[0] }));
        }
        if (typeof e.code === 'number') return resolve({ code: e.code, stdout, stderr });
        reject(vmError('IO', `running ${argv[0]}: ${e.message}`, { plugin: 'pacemaker', command: argv[0] }, err));
      });
    });
  };
}

export function fmtSeconds(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}
