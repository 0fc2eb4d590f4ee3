// Runs an operator's executable once, treating everything it does as untrusted: stdout is
// capped, stderr is capped and sent to the log line by line, a hang is ended by SIGKILL to its
// whole process group (a shell script's children too), and every way it can fail becomes a
// typed error that names the executable. Protocol: PROTOCOL.md beside this file.

import { spawn } from 'node:child_process';
import { vmError, isVmvaultError } from '../../errors.js';

export const MAX_STDOUT_BYTES = 1024 * 1024;
export const MAX_STDERR_BYTES = 64 * 1024;
/** After SIGKILL, how long to wait for the pipes to close before giving up on them. */
const KILL_SETTLE_MS = 2_000;

export interface ExecOptions {
  timeoutMs: number;
  signal?: AbortSignal;
  /** Each stderr line (up to the cap). */
  onStderrLine?: (line: string) => void;
  env?: Record<string, string>;
  maxStdoutBytes?: number;
  maxStderrBytes?: number;
  /** How messages name the call (default: file and args). */
  label?: string;
}

export interface ExecResult { stdout: string; exitCode: number }

/**
 * Runs `file args` with `input` on stdin; resolves when it exited 0. Rejects with PLUGIN_FAILED
 * (could not start, non-zero exit, killed by a signal, stdout over the cap), TIMEOUT (deadline)
 * or the abort reason's code (CANCELLED / TIMEOUT) when `signal` aborts.
 */
export function runExecutable(file: string, args: string[], input: string, opts: ExecOptions): Promise<ExecResult> {
  const maxOut = opts.maxStdoutBytes ?? MAX_STDOUT_BYTES;
  const maxErr = opts.maxStderrBytes ?? MAX_STDERR_BYTES;
  const what = opts.label ?? `${file} ${args.join(' ')}`.trim();
  return new Promise<ExecResult>((resolve, reject) => {
    if (opts.signal?.aborted) {
      reject(abortError(opts.signal, what));
      return;
    }
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(file, args, {
        stdio: ['pipe', 'pipe', 'pipe'],
        detached: true, // its own process group, so a kill reaches what it started
        env: { ...process.env, VMVAULT_PLUGIN_PROTOCOL: '1', ...opts.env },
      });
    } catch (err) {
      reject(vmError('PLUGIN_FAILED', `cannot run ${what}: ${(err as Error).message}`, { file }, err));
      return;
    }
    const out: Buffer[] = [];
    let outBytes = 0;
    let errBytes = 0;
    let errDropped = 0;
    let errPartial = '';
    const errTail: string[] = [];
    let failure: Error | null = null;
    let killed = false;
    let done = false;
    let settleTimer: NodeJS.Timeout | null = null;

    const kill = (why: Error): void => {
      if (failure === null) failure = why;
      if (killed) return;
      killed = true;
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        try { child.kill('SIGKILL'); } catch { /* already gone */ }
      }
      // A grandchild that left the group may hold the pipes open: do not wait for it forever.
      settleTimer = setTimeout(() => finish(null, 'SIGKILL'), KILL_SETTLE_MS);
      settleTimer.unref();
    };
    const timer = setTimeout(
      () => kill(vmError('TIMEOUT', `${what} did not finish within ${opts.timeoutMs} ms; killed its process group`, { file })),
      opts.timeoutMs,
    );
    const onAbort = (): void => kill(abortError(opts.signal!, what));
    opts.signal?.addEventListener('abort', onAbort, { once: true });

    const line = (l: string): void => {
      errTail.push(l);
      if (errTail.length > 5) errTail.shift();
      opts.onStderrLine?.(l.length > 1000 ? `${l.slice(0, 1000)}...` : l);
    };
    child.stdout!.on('data', (b: Buffer) => {
      outBytes += b.length;
      if (outBytes > maxOut) kill(vmError('PLUGIN_FAILED', `${what} wrote more than ${maxOut} bytes to stdout; killed it`, { file }));
      else out.push(b);
    });
    child.stderr!.on('data', (b: Buffer) => {
      if (errBytes >= maxErr) {
        errDropped += b.length;
        return;
      }
      const take = b.subarray(0, maxErr - errBytes);
      errBytes += take.length;
      errDropped += b.length - take.length;
      const parts = (errPartial + take.toString('utf8')).split('\n');
      errPartial = parts.pop() ?? '';
      for (const p of parts) line(p);
    });
    // A child that exits without reading stdin makes the write fail with EPIPE: not our failure.
    child.stdin!.on('error', () => {});
    child.stdin!.end(input);

    const finish = (code: number | null, sig: NodeJS.Signals | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (settleTimer) clearTimeout(settleTimer);
      opts.signal?.removeEventListener('abort', onAbort);
      if (errPartial) line(errPartial);
      if (errDropped > 0) opts.onStderrLine?.(`(stderr over ${maxErr} bytes: ${errDropped} more bytes dropped)`);
      child.stdout!.destroy();
      child.stderr!.destroy();
      const tail = errTail.length > 0 ? `; stderr: ${errTail.join(' | ')}` : '';
      if (failure) return reject(failure);
      if (sig) return reject(vmError('PLUGIN_FAILED', `${what} was killed by ${sig}${tail}`, { file }));
      if (code !== 0) return reject(vmError('PLUGIN_FAILED', `${what} exited with code ${code}${tail}`, { file, exitCode: code }));
      resolve({ stdout: Buffer.concat(out).toString('utf8'), exitCode: 0 });
    };
    child.on('error', (err: NodeJS.ErrnoException) => {
      const hint = err.code === 'ENOENT' ? ' (no such file)' : err.code === 'EACCES' ? ' (not executable: chmod +x it)' : '';
      if (failure === null) failure = vmError('PLUGIN_FAILED', `cannot run ${what}: ${err.message}${hint}`, { file }, err);
      finish(null, null);
    });
    child.on('close', (code, sig) => finish(code, sig));
  });
}

function abortError(signal: AbortSignal, what: string): Error {
  const r = signal.reason;
  if (isVmvaultError(r)) return vmError(r.code, `${what}: ${r.message}; killed its process group`);
  return vmError('CANCELLED', `${what} was cancelled; killed its process group`);
}

/** Parses an executable's stdout as one JSON object, or fails saying what came instead. */
export function parseAnswer(stdout: string, what: string): Record<string, unknown> {
  const text = stdout.trim();
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw vmError('PLUGIN_FAILED', `${what} answered with something that is not JSON: ${quote(text)}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    throw vmError('PLUGIN_FAILED', `${what} answered with JSON that is not an object: ${quote(text)}`);
  }
  return v as Record<string, unknown>;
}

function quote(s: string): string {
  if (s === '') return '(nothing)';
  return JSON.stringify(s.length > 200 ? `${s.slice(0, 200)}...` : s);
}
