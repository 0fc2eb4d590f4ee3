// The test's side of the power-loss file system: starts powerfail-main.js in its own process,
// cuts the power and turns it back on over the child's stdin, and always takes it down: first
// whatever runs on top of it (`before`: the appliance, whose data lives on it), then the file
// system itself (SIGTERM; if the child is gone or stuck, abort the connection and unmount).

import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { clearFuseMount } from '../../src/fuse/mount-util.js';
import type { CutReport } from './powerfail-fs.js';

export type { CutReport } from './powerfail-fs.js';

const mainJs = path.join(path.dirname(fileURLToPath(import.meta.url)), 'powerfail-main.js');

export interface Powerfail {
  /** The mount point: put the data directory under it. */
  mount: string;
  /** Backing directory (root/ is served, grave/ holds unlinked files until that is durable). */
  base: string;
  proc: ChildProcess;
  /** Drop everything unsynced; the file system answers EIO until powerOn(). */
  cut(): Promise<CutReport>;
  powerOn(): Promise<void>;
  stop(): Promise<void>;
  log(): string;
}

interface Teardown {
  teardown(fn: () => unknown): void;
}

export async function startPowerfail(t: Teardown, dir: string, seed: number, opts: { before?: () => Promise<unknown>; frozenDirTimes?: boolean } = {}): Promise<Powerfail> {
  const base = path.join(dir, 'powerfail');
  const mount = path.join(dir, 'pf');
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  if (opts.frozenDirTimes) env.POWERFAIL_FROZEN_DIR_TIMES = '1';
  const proc = spawn(process.execPath, [mainJs, base, mount, String(seed)], { stdio: ['pipe', 'pipe', 'pipe'], env });
  let err = '';
  proc.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  let alive = true;
  void exited.then(() => (alive = false));

  const waiting: Array<(line: any) => void> = [];
  let buf = '';
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = JSON.parse(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      waiting.shift()?.(line);
    }
  });
  const next = (): Promise<any> =>
    new Promise((resolve, reject) => {
      waiting.push(resolve);
      void exited.then((code) => reject(new Error(`powerfail fs exited (${code}): ${err}`)));
    });
  const command = async (cmd: string): Promise<any> => {
    const answer = next();
    proc.stdin!.write(cmd + '\n');
    const line = await answer;
    if (line.error) throw new Error(`powerfail ${cmd}: ${line.error}`);
    return line;
  };

  const stop = async (): Promise<void> => {
    await opts.before?.();
    if (alive) {
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(timer);
    }
    await clearFuseMount(mount).catch(() => {});
  };
  t.teardown(stop);

  const first = await next();
  if (!first.mounted) throw new Error(`powerfail fs did not mount: ${JSON.stringify(first)} ${err}`);
  return {
    mount,
    base,
    proc,
    cut: async () => (await command('cut')).cut as CutReport,
    powerOn: async () => void (await command('on')),
    stop,
    log: () => err,
  };
}
