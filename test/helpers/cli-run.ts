// Runs the real `vmvault` launcher (bin/vmvault.js) as a child process, the way a person would.

import { spawn, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import { fileURLToPath } from 'node:url';

export const BIN = fileURLToPath(new URL('../../../bin/vmvault.js', import.meta.url));

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface CliRun {
  child: ChildProcess;
  done: Promise<CliResult>;
}

/** Starts `vmvault ...args` in a neutral directory (no ./vmvault-data) with a clean VMVAULT_TOKEN. */
export function startCli(args: string[], env: Record<string, string> = {}, cwd = os.tmpdir()): CliRun {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env };
  if (!('VMVAULT_TOKEN' in env)) delete childEnv.VMVAULT_TOKEN;
  // No coverage or loader hooks of the test runner in the child: it is a user's process.
  delete childEnv.NODE_OPTIONS;
  for (const k of Object.keys(childEnv)) if (k.startsWith('_TAPJS_')) delete childEnv[k];
  const child = spawn(process.execPath, [BIN, ...args], { cwd, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const done = new Promise<CliResult>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`vmvault ${args.join(' ')} did not exit within 20 s; stderr: ${stderr}`));
    }, 20_000);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return { child, done };
}

export function runCli(args: string[], env: Record<string, string> = {}, cwd?: string): Promise<CliResult> {
  return startCli(args, env, cwd).done;
}

/** Runs the CLI's main() in this process (faster than a child; same HTTP path over the socket). */
export async function runMain(args: string[], env: Record<string, string> = {}, tty = false): Promise<CliResult> {
  const { main } = await import('../../src/cli/main.js');
  let stdout = '';
  let stderr = '';
  const code = await main(args, {
    stdout: (s) => void (stdout += s),
    stderr: (s) => void (stderr += s),
    stderrIsTTY: tty,
    env,
    onInterrupt: () => () => {},
  });
  return { code, signal: null, stdout, stderr };
}
