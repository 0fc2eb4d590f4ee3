// Runs a shell script in a child process (never synchronously: a test that serves a FUSE mount
// must keep its event loop answering while the script uses the mount). Resolves with the exit
// code (-1 for a signal or a timeout) and the output; never rejects.

import { execFile } from 'node:child_process';

export interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

export function shScript(script: string, timeout = 180_000): Promise<Ran> {
  return new Promise((done) => {
    execFile('sh', ['-c', script], { env: { ...process.env, LC_ALL: 'C' }, timeout }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      done({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}
