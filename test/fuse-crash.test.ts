// SIGKILL of the appliance while a writer streams data into the mount, several times. After each
// kill the mount is stale (its server is gone); the next start clears it and mounts again. Then:
// every file the writer had fsynced (and reported) reads back identical; a file overwritten
// without fsync holds, block by block, either the last fsynced version or the one being
// written, never anything else; a new file never fsynced holds its own bytes or zeros; an
// atomically replaced file is one whole version, at least the last one reported. Files that
// came through one restart do not change at the next. Finally the store verifies clean.

import t from 'tap';
import fs from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { clearFuseMount, fuseMountsAt, probeMount } from '../src/fuse/mount-util.js';
import { type Appliance, startAppliance } from './helpers/appliance.js';
import { pattern } from './helpers/block-pattern.js';
import { checkRound, readOrNull, sha, startWriter } from './helpers/crash-check.js';
import { fileKey, OV_FILES, OV_SIZE } from './helpers/crash-writer.js';
import { Rng } from './helpers/data.js';
import { tmpDir } from './helpers/tmpdir.js';

const ROUNDS = Number(process.env.VMVAULT_FUSE_CRASH_ROUNDS ?? 3);
const SEED = Number(process.env.VMVAULT_FUSE_CRASH_SEED ?? 20261122);

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
