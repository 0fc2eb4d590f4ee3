// Runs a crash-test child (a plain node process: no test-runner loaders or coverage hooks in
// the process being killed) and kills it with SIGKILL. Once the child says it is ready,
// `arm(kill)` decides when: it may call kill at once, set timers, or poll, and returns what
// to undo when the child is gone. Resolves when the child died of the SIGKILL; rejects if it
// exited by itself (a crash of its own is a test failure, not a kill).

import { fork } from 'node:child_process';
import fs from 'node:fs';

export function runAndKill(child: string, args: string[], arm: (kill: () => void) => () => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    delete env.NODE_OPTIONS;
    const p = fork(child, args, { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], execArgv: [], env });
    let err = '';
    p.stderr!.on('data', (d) => (err += d));
    let disarm: (() => void) | undefined;
    p.on('message', () => {
      disarm ??= arm(() => p.kill('SIGKILL'));
    });
    p.on('exit', (code, signal) => {
      disarm?.();
      if (signal === 'SIGKILL') resolve();
      else reject(new Error(`${child} exited by itself (code ${code}): ${err}`));
    });
  });
}

/** Kill `ms` after the child is ready. */
export function after(ms: number): (kill: () => void) => () => void {
  return (kill) => {
    const timer = setTimeout(kill, ms);
    return () => clearTimeout(timer);
  };
}

/**
 * Kill `ms` after the child logs the start of its next operation (a new match of `start` in
 * the file `log`, polled every `pollMs`), not after it is ready: aims the kill inside that
 * operation (a GC run, a snapshot) rather than wherever the child happens to be.
 */
export function inNext(log: string, start: RegExp, ms: number, pollMs: number): (kill: () => void) => () => void {
  const pattern = new RegExp(start.source, start.flags.includes('g') ? start.flags : start.flags + 'g');
  return (kill) => {
    const starts = () => (fs.existsSync(log) ? (fs.readFileSync(log, 'utf8').match(pattern) ?? []).length : 0);
    const before = starts();
    let timer: NodeJS.Timeout | undefined;
    const poll = setInterval(() => {
      if (starts() > before) {
        clearInterval(poll);
        timer = setTimeout(kill, ms);
      }
    }, pollMs);
    return () => {
      clearInterval(poll);
      if (timer) clearTimeout(timer);
    };
  };
}
