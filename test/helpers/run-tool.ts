// Running real tools (qemu-img, fio, rsync, tar, dd, touch, cp) against a mount served by a child
// appliance: always asynchronously and with a deadline, so a hung mount fails the test instead
// of hanging it. Also streaming hashes of files that may be far larger than memory.

import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { TestT } from './tap-types.js';

export interface ToolResult {
  cmd: string;
  /** Exit code; null when killed (by the deadline or a signal). */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  ms: number;
}

export interface ToolOptions {
  timeoutMs?: number;
  cwd?: string;
  env?: Record<string, string | undefined>;
}

/** Runs `cmd args`, never rejects: the result says how it ended. */
export function runTool(cmd: string, args: string[], opts: ToolOptions = {}): Promise<ToolResult> {
  const started = Date.now();
  const line = [cmd, ...args].join(' ');
  return new Promise((resolve) => {
    const child = execFile(
      cmd,
      args,
      {
        timeout: opts.timeoutMs ?? 120_000,
        killSignal: 'SIGKILL',
        maxBuffer: 64 * 1024 * 1024,
        cwd: opts.cwd,
        env: { ...process.env, LC_ALL: 'C', TZ: 'UTC', ...opts.env },
      },
      (err, stdout, stderr) => {
        const e = err as (NodeJS.ErrnoException & { code?: unknown; killed?: boolean; signal?: NodeJS.Signals }) | null;
        resolve({
          cmd: line,
          code: e ? (typeof e.code === 'number' ? e.code : null) : 0,
          signal: e?.signal ?? null,
          stdout: String(stdout),
          stderr: String(stderr) + (e && typeof e.code === 'string' ? `${e.code}: ${e.message}` : ''),
          timedOut: Boolean(e?.killed && e.signal === 'SIGKILL'),
          ms: Date.now() - started,
        });
      },
    );
    child.stdin?.end();
  });
}

/** A one-line account of a result for assertion messages. */
export function describeRun(r: ToolResult): string {
  const how = r.timedOut ? 'timed out' : r.code === null ? `killed by ${r.signal}` : `exit ${r.code}`;
  const err = r.stderr.trim().split('\n').slice(-6).join(' | ');
  return `${r.cmd}: ${how} after ${r.ms} ms${err ? `: ${err}` : ''}`;
}

/** SHA-256 of a file's bytes, read as a stream. */
export function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(path, { highWaterMark: 1024 * 1024 })
      .on('data', (d) => h.update(d))
      .on('error', reject)
      .on('end', () => resolve(h.digest('hex')));
  });
}

/**
 * A runner for tools a test needs to succeed: each run is asserted to exit 0, with the run's
 * account as the message, so a failure shows the tool's own error.
 */
export function checkedTool(timeoutMs: number): (tt: TestT, cmd: string, args: string[]) => Promise<ToolResult> {
  return async (tt, cmd, args) => {
    const r = await runTool(cmd, args, { timeoutMs });
    tt.equal(r.code, 0, describeRun(r));
    return r;
  };
}
