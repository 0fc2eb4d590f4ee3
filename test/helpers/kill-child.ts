// Runs a crash-test child (a plain node process: no test-runner loaders or coverage hooks in
// the process being killed) and kills it with SIGKILL. Once the child says it is ready,
// `arm(kill)` decides when: it may call kill at once, set timers, or poll, and returns what
// to undo when the child is gone. Resolves when the child died of the SIGKILL; rejects if it
// exited by itself (a crash of its own is a test failure, not a kill).

import { fork } from 'node:child_process';

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
