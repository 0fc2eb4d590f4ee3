// SIGKILL of the appliance while a writer streams data into the mount, several times. After each
// kill the mount is stale (its server is gone); the next start clears it and mounts again. Then:
// every file the writer had fsynced (and reported) reads back identical; a file overwritten
// without fsync holds, block by block, either the last fsynced version or the one being
// written, never anything else; a new file never fsynced holds its own bytes or zeros; an
// atomically replaced file is one whole version, at least the last one reported. Files that
// came through one restart do not change at the next. Finally the store verifies clean.

import t from 'tap';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { clearFuseMount, fuseMountsAt, probeMount } from '../src/fuse/mount-util.js';
import { type Appliance, startAppliance } from './helpers/appliance.js';
import { classify, pattern } from './helpers/block-pattern.js';
import { BIG_SIZE, curSize, fileKey, OV_FILES, OV_SIZE, syncedSize } from './helpers/crash-writer.js';
import { Rng } from './helpers/data.js';
import type { TestT } from './helpers/tap-types.js';
import { tmpDir } from './helpers/tmpdir.js';

const writerJs = path.join(path.dirname(fileURLToPath(import.meta.url)), 'helpers', 'crash-writer.js');
const ROUNDS = Number(process.env.VMVAULT_FUSE_CRASH_ROUNDS ?? 3);
const SEED = Number(process.env.VMVAULT_FUSE_CRASH_SEED ?? 20261122);

interface Reported {
  synced: Map<string, number>;
  replaced: number;
  lines: number;
}

function startWriter(dir: string, key: string, seed: number): { proc: ChildProcess; started: Promise<void>; done: Promise<Reported>; stderr: () => string } {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const proc = spawn(process.execPath, [writerJs, dir, key, String(seed)], { stdio: ['ignore', 'pipe', 'pipe'], env });
  const rep: Reported = { synced: new Map(), replaced: 0, lines: 0 };
  let buf = '';
  let err = '';
  let onStart: () => void = () => {};
  const started = new Promise<void>((resolve) => (onStart = resolve));
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
  const done = new Promise<Reported>((resolve) => proc.on('close', () => resolve(rep)));
  return { proc, started, done, stderr: () => err };
}

async function readOrNull(file: string): Promise<Buffer | null> {
  try {
    return await fs.readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Checks one round's files after the restart; returns the hash of every file found. */
async function checkRound(t: TestT, dir: string, key: string, rep: Reported): Promise<Map<string, string>> {
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
        t.fail(`${key}/${n} was fsynced but reads back different (${data.length} bytes, want ${syncedSize(i)})`);
      }
    } else {
      const r = classify(fk, data, [1], true);
      if (data.length > syncedSize(i) || r.bad.length) {
        bad++;
        t.fail(`${key}/${n} (not fsynced): ${data.length} bytes, ${r.bad.length} block(s) neither its own nor zeros, first at ${r.bad[0]}`);
      }
      notes.push(`${n} unsynced ${data.length} B`);
    }
  }
  for (const [n] of rep.synced) {
    if (/^s\d+$/.test(n) && !names.includes(n)) {
      bad++;
      t.fail(`${key}/${n} was fsynced but is missing`);
    }
  }
  // ov<j>: every block the last fsynced version or the next.
  for (let j = 0; j < OV_FILES; j++) {
    const n = `ov${j}`;
    const data = await readOrNull(path.join(dir, n));
    if (!data) {
      bad++;
      t.fail(`${key}/${n} is missing`);
      continue;
    }
    seen.set(n, sha(data));
    const v = rep.synced.get(n) ?? 1;
    if (v > 1) fsynced++;
    const r = classify(fileKey(key, n), data, [v, v + 1], false);
    if (data.length !== OV_SIZE || r.bad.length) {
      bad++;
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
    if (ok) fsynced += rep.replaced > 0 ? 1 : 0;
    else {
      bad++;
      t.fail(`${key}/cur: last replaced by version ${rep.replaced}, reads ${cur ? `${cur.length} bytes of no whole version` : 'missing'}`);
    }
    if (cur) seen.set('cur', sha(cur));
  }
  t.equal(bad, 0, `${key}: ${fsynced} fsynced file(s) identical; unsynced ones old or new block by block (${notes.join(', ')})`);
  return seen;
}

t.test(`SIGKILL of the appliance during writes, ${ROUNDS} times`, async (t) => {
  const dir = tmpDir(t);
  let app: Appliance = await startAppliance(t, dir);
  t.equal((await app.api('POST', '/shares', { name: 'vms' })).status, 201, 'share vms created');
  const rng = new Rng(SEED);
  t.comment(`seed ${SEED} (VMVAULT_FUSE_CRASH_SEED)`);
  const earlier = new Map<string, Map<string, string>>();

  for (let round = 0; round < ROUNDS; round++) {
    const key = `r${round}`;
    const rdir = () => path.join(app.mount, 'vms', key);
    await fs.mkdir(rdir());
    // The old versions, durable before the writer starts.
    for (let j = 0; j < OV_FILES; j++) {
      const fh = await fs.open(path.join(rdir(), `ov${j}`), 'wx');
      await fh.write(pattern(fileKey(key, `ov${j}`), 1, 0, OV_SIZE), 0, OV_SIZE, 0);
      await fh.sync();
      await fh.close();
    }
    const w = startWriter(rdir(), key, rng.next());
    await w.started;
    const afterMs = rng.range(700, 4500);
    let writerExited = false;
    void w.done.then(() => (writerExited = true));
    await sleep(afterMs);
    // The writer only stops when killed: an early exit is an error it met through the mount.
    t.notOk(writerExited, `${key}: the writer was still writing at the kill ${writerExited ? `(it failed: ${w.stderr().trim()})` : ''}`);
    await app.kill9();
    w.proc.kill('SIGKILL');
    const rep = await w.done;
    t.comment(`${key}: killed after ${afterMs} ms; the writer reported ${rep.lines - 1} fsync(s)`);

    t.equal(await probeMount(app.mount), 'stale', `${key}: the mount is stale after the kill`);
    try {
      app = await startAppliance(t, dir);
    } catch (err) {
      // Reported as a failure; the stale mount is then cleared here so the data checks still run.
      t.fail(`${key}: the appliance did not start over the stale mount: ${String((err as Error).message).split('\n').filter((l) => /cannot start|Error/.test(l)).join(' ')}`);
      await clearFuseMount(app.mount);
      app = await startAppliance(t, dir);
    }
    t.equal((await fuseMountsAt(app.mount)).length, 1, `${key}: the next start cleared the stale mount and mounted once`);
    const recovered = /recovered from an unclean shutdown[^\n]*/.exec(app.log());
    if (recovered) t.comment(`${key}: ${recovered[0]}`);
    const probe = path.join(app.mount, 'vms', `probe-${round}`);
    await fs.writeFile(probe, `round ${round}`);
    t.equal(await fs.readFile(probe, 'utf8'), `round ${round}`, `${key}: the new mount works`);

    earlier.set(key, await checkRound(t, rdir(), key, rep));
    for (const [k, files] of earlier) {
      if (k === key) continue;
      const now = new Map<string, string>();
      for (const n of files.keys()) {
        const b = await readOrNull(path.join(app.mount, 'vms', k, n));
        now.set(n, b ? sha(b) : 'missing');
      }
      t.same(Object.fromEntries(now), Object.fromEntries(files), `${k}: unchanged since it came through its restart`);
    }
  }

  // The store after all those kills: full verification (every segment re-read and re-hashed).
  const started = await app.api('POST', '/verify', { full: true });
  t.equal(started.status, 202, 'verify started');
  let job: { state: string; result: { problems: unknown[]; containers: number; segmentsChecked: number } | null; error: unknown } | undefined;
  for (let i = 0; i < 600; i++) {
    job = (await app.api('GET', `/jobs/${started.body.job}`)).body;
    if (job && !['queued', 'running'].includes(job.state)) break;
    await sleep(250);
  }
  t.equal(job?.state, 'succeeded', `the verify job succeeded ${JSON.stringify(job?.error ?? '')}`);
  t.same(job?.result?.problems, [], 'verify found no problems');
  t.ok((job?.result?.containers ?? 0) > 0 && (job?.result?.segmentsChecked ?? 0) > 0, `verify checked ${job?.result?.containers} containers, ${job?.result?.segmentsChecked} segments`);
  t.equal(await app.stop(), 0, 'the appliance stops cleanly');
});
