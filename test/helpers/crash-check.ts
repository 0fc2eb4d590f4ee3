// The writer side of the appliance crash tests (fuse-crash, power-cut): starts crash-writer.js,
// collects what it reported as durable, and checks a round's files after the appliance came
// back. Moved here from fuse-crash.test.ts so both tests hold the appliance to the same rules.

import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { classify, pattern } from './block-pattern.js';
import { BIG_SIZE, curSize, fileKey, OV_FILES, OV_SIZE, syncedSize } from './crash-writer.js';
import type { TestT } from './tap-types.js';

const writerJs = path.join(path.dirname(fileURLToPath(import.meta.url)), 'crash-writer.js');

export interface Reported {
  synced: Map<string, number>;
  replaced: number;
  lines: number;
}

export function startWriter(dir: string, key: string, seed: number): { proc: ChildProcess; started: Promise<void>; done: Promise<Reported>; stderr: () => string } {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const proc = spawn(process.execPath, [writerJs, dir, key, String(seed)], { stdio: ['ignore', 'pipe', 'pipe'], env });
  const rep: Reported = { synced: new Map(), replaced: 0, lines: 0 };
  let buf = '';
  let err = '';
  let onStart: () => void = () => {};
  let onEarlyExit: (e: Error) => void = () => {};
  // A writer that dies before it starts (it could not open the mount, a crash) must fail the
  // test with its stderr, not leave it waiting for a start that never comes.
  const started = new Promise<void>((resolve, reject) => {
    onStart = resolve;
    onEarlyExit = reject;
  });
  started.catch(() => {});
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = JSON.parse(buf.slice(0, nl)) as { started?: true; synced?: string; replaced?: string; version?: number };
      buf = buf.slice(nl + 1);
      rep.lines++;
      if (line.started) onStart();
      if (line.synced) rep.synced.set(line.synced, line.version ?? 1);
      if (line.replaced) rep.replaced = line.version!;
    }
  });
  proc.stderr!.on('data', (d) => (err += d));
  const done = new Promise<Reported>((resolve) =>
    proc.on('close', (code, signal) => {
      onEarlyExit(new Error(`the crash writer exited (${signal ?? code}) before it started writing: ${err.trim() || '(no stderr)'}`));
      resolve(rep);
    }),
  );
  return { proc, started, done, stderr: () => err };
}

export async function readOrNull(file: string): Promise<Buffer | null> {
  try {
    return await fs.readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

export const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

export interface CheckOptions {
  /**
   * Set when the atomic replace of `cur` (which rests on a directory fsync) is known not to be
   * durable yet: its check is then reported as a todo with this reason instead of failing.
   */
  dirFsyncTodo?: string;
  /** Added to across rounds, for a run's summary. */
  tally?: Tally;
}

export interface Tally {
  /** Files the writer had reported durable (fsync returned) that read back different or not at all. */
  lostFiles: number;
  /** Their acknowledged sizes. */
  lostBytes: number;
  /** Unsynced files holding anything but their own bytes, zeros, or whole versions. */
  tornFiles: number;
}

/** Checks one round's files after the restart; returns the hash of every file found. */
export async function checkRound(t: TestT, dir: string, key: string, rep: Reported, opts: CheckOptions = {}): Promise<Map<string, string>> {
  const seen = new Map<string, string>();
  const names = (await fs.readdir(dir)).sort();
  const expected = (n: string) => /^s\d+$/.test(n) || /^ov\d$/.test(n) || ['big', 'cur', 'cur.tmp'].includes(n);
  t.same(names.filter((n) => !expected(n)), [], `${key}: no names but the writer's (${names.length} entries)`);
  let fsynced = 0;
  let bad = 0;
  const notes: string[] = [];
  // s<i>: the reported ones whole; an unreported one (being written) its own bytes or zeros.
  for (const n of names.filter((x) => /^s\d+$/.test(x))) {
    const i = Number(n.slice(1));
    const data = (await readOrNull(path.join(dir, n)))!;
    seen.set(n, sha(data));
    const fk = fileKey(key, n);
    if (rep.synced.has(n)) {
      fsynced++;
      if (!data.equals(pattern(fk, 1, 0, syncedSize(i)))) {
        bad++;
        if (opts.tally) {
          opts.tally.lostFiles++;
          opts.tally.lostBytes += syncedSize(i);
        }
        t.fail(`${key}/${n} was fsynced but reads back different (${data.length} bytes, want ${syncedSize(i)})`);
      }
    } else {
      const r = classify(fk, data, [1], true);
      if (data.length > syncedSize(i) || r.bad.length) {
        bad++;
        if (opts.tally) opts.tally.tornFiles++;
        t.fail(`${key}/${n} (not fsynced): ${data.length} bytes, ${r.bad.length} block(s) neither its own nor zeros, first at ${r.bad[0]}`);
      }
      notes.push(`${n} unsynced ${data.length} B`);
    }
  }
  for (const [n] of rep.synced) {
    if (/^s\d+$/.test(n) && !names.includes(n)) {
      bad++;
      if (opts.tally) {
        opts.tally.lostFiles++;
        opts.tally.lostBytes += syncedSize(Number(n.slice(1)));
      }
      t.fail(`${key}/${n} was fsynced but is missing`);
    }
  }
  // ov<j>: every block the last fsynced version or the next.
  for (let j = 0; j < OV_FILES; j++) {
    const n = `ov${j}`;
    const data = await readOrNull(path.join(dir, n));
    if (!data) {
      bad++;
      if (opts.tally) {
        opts.tally.lostFiles++;
        opts.tally.lostBytes += OV_SIZE;
      }
      t.fail(`${key}/${n} is missing`);
      continue;
    }
    seen.set(n, sha(data));
    const v = rep.synced.get(n) ?? 1;
    if (v > 1) fsynced++;
    const r = classify(fileKey(key, n), data, [v, v + 1], false);
    if (data.length !== OV_SIZE || r.bad.length) {
      bad++;
      if (opts.tally) opts.tally.tornFiles++;
      t.fail(`${key}/${n}: ${data.length} bytes (want ${OV_SIZE}); ${r.bad.length} block(s) neither version ${v} nor ${v + 1}, first at ${r.bad[0]}`);
    }
    notes.push(`${n} v${v}:${r.counts.get(v) ?? 0}/v${v + 1}:${r.counts.get(v + 1) ?? 0}`);
  }
  // big: its own bytes or zeros, never longer than written.
  const big = await readOrNull(path.join(dir, 'big'));
  if (big) {
    seen.set('big', sha(big));
    const r = classify(fileKey(key, 'big'), big, [1], true);
    if (big.length > BIG_SIZE || r.bad.length) {
      bad++;
      if (opts.tally) opts.tally.tornFiles++;
      t.fail(`${key}/big: ${big.length} bytes, ${r.bad.length} block(s) neither its own nor zeros, first at ${r.bad[0]}`);
    }
    notes.push(`big ${(big.length / 2 ** 20).toFixed(0)} MiB (${r.counts.get(-1) ?? 0} zero blocks)`);
  }
  // cur: one whole version, the last reported or a later one.
  const cur = await readOrNull(path.join(dir, 'cur'));
  if (rep.replaced > 0 || cur) {
    const fk = fileKey(key, 'cur');
    const whole = (k: number) => cur !== null && cur.length === curSize(k) && cur.equals(pattern(fk, k, 0, curSize(k)));
    const ok = rep.replaced > 0 ? whole(rep.replaced) || whole(rep.replaced + 1) : whole(1);
    const what = `${key}/cur: last replaced by version ${rep.replaced}, reads ${cur ? `${cur.length} bytes of no whole version` : 'missing'}`;
    if (ok) fsynced += rep.replaced > 0 ? 1 : 0;
    else if (opts.dirFsyncTodo) {
      // A whole older version is what a lost directory fsync leaves; anything else is a failure.
      const older = Array.from({ length: rep.replaced }, (_, k) => k + 1).some(whole);
      if (older) t.fail(what, { todo: opts.dirFsyncTodo });
      else {
        bad++;
        if (opts.tally) opts.tally.tornFiles++;
        t.fail(`${what} (not even an older one)`);
      }
    } else {
      bad++;
      if (opts.tally) {
        opts.tally.lostFiles++;
        opts.tally.lostBytes += curSize(rep.replaced);
      }
      t.fail(what);
    }
    if (cur) seen.set('cur', sha(cur));
  }
  t.equal(bad, 0, `${key}: ${fsynced} fsynced file(s) identical; unsynced ones old or new block by block (${notes.join(', ')})`);
  return seen;
}
