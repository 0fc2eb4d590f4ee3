// fio with verification through the mount: random 4 KiB writes from two jobs, a sequential pass
// with 1 MiB blocks, and random 64 KiB overwrites of the data that pass left. fio writes a
// header with a checksum into every block and reads everything back. After a restart fio
// verifies the files again without writing (--verify_only), and a block changed behind fio's
// back must make that fail, so a pass is not vacuous.

import t from 'tap';
import fs from 'node:fs/promises';
import path from 'node:path';
import { type Appliance, startAppliance } from './helpers/appliance.js';
import { describeRun, runTool, type ToolResult } from './helpers/run-tool.js';
import type { TestT } from './helpers/tap-types.js';
import { tmpDir } from './helpers/tmpdir.js';

const MiB = 1024 * 1024;

interface FioJob {
  jobname: string;
  error: number;
  read: { io_bytes: number; bw: number };
  write: { io_bytes: number; bw: number };
}

interface FioRun {
  run: ToolResult;
  jobs: FioJob[];
}

async function fio(cwd: string, args: string[], timeoutMs = 240_000): Promise<FioRun> {
  // No verify state files (fio writes them into its working directory, which is the test's).
  const run = await runTool('fio', [...args, '--output-format=json', '--verify_state_save=0'], { timeoutMs, cwd });
  // fio prints warnings ("multiple writers may overwrite blocks that belong to other jobs",
  // about its own jobs sharing a file) on stdout ahead of the JSON.
  const at = run.stdout.indexOf('{');
  let jobs: FioJob[] = [];
  try {
    if (at >= 0) jobs = (JSON.parse(run.stdout.slice(at)) as { jobs: FioJob[] }).jobs;
  } catch {
    // left empty: the assertions below say what happened
  }
  return { run, jobs };
}

/** fio wrote `size` bytes per job and read all of them back to verify, without errors. */
function assertVerified(tt: TestT, label: string, r: FioRun, jobs: number, size: number, wrote = true): void {
  tt.equal(r.run.code, 0, `${label}: ${describeRun(r.run)}`);
  tt.notMatch(r.run.stdout + r.run.stderr, /verify:|bad magic|bad header|crc32c: verify failed|md5: verify failed/i, `${label}: no verify errors in fio's output`);
  tt.equal(r.jobs.length, jobs, `${label}: ${jobs} job(s) reported`);
  for (const [i, j] of r.jobs.entries()) {
    tt.equal(j.error, 0, `${label}: job ${i} error 0`);
    if (wrote) tt.equal(j.write.io_bytes, size, `${label}: job ${i} wrote ${size / MiB} MiB`);
    tt.equal(j.read.io_bytes, size, `${label}: job ${i} read back and verified ${size / MiB} MiB`);
  }
  const mbps = (bw: number) => (bw / 1024).toFixed(1);
  tt.comment(`${label}: ${r.jobs.map((j) => `write ${mbps(j.write.bw)} MiB/s verify ${mbps(j.read.bw)} MiB/s`).join('; ')} (${r.run.ms} ms)`);
}

t.test('fio with verification through the mount', async (t) => {
  const dir = tmpDir(t);
  let app: Appliance = await startAppliance(t, dir);
  t.equal((await app.api('POST', '/shares', { name: 'vms' })).status, 201, 'share vms created');
  const vms = () => path.join(app.mount, 'vms');
  const common = ['--ioengine=psync', '--verify_fatal=1', '--end_fsync=1'];

  // Random 4 KiB writes, one file per job so each job verifies only what it wrote itself.
  const RAND = 24 * MiB;
  const randArgs = () => [
    '--name=rand',
    `--directory=${vms()}`,
    '--filename_format=rand.$jobnum',
    `--size=${RAND}`,
    '--bs=4k',
    '--rw=randwrite',
    '--numjobs=2',
    '--verify=crc32c',
    ...common,
  ];
  assertVerified(t, 'randwrite 4k x2', await fio(dir, [...randArgs(), '--do_verify=1']), 2, RAND);

  // Sequential 1 MiB writes, two jobs on one file, each on its own 128 MiB (offset_increment).
  const SEQ = 128 * MiB;
  const seqArgs = (name: string, rw: string, bs: string, verify: string) => [
    `--name=${name}`,
    `--filename=${path.join(vms(), 'seq.dat')}`,
    `--size=${SEQ}`,
    `--offset_increment=${SEQ}`,
    '--numjobs=2',
    `--bs=${bs}`,
    `--rw=${rw}`,
    `--verify=${verify}`,
    ...common,
  ];
  assertVerified(t, 'write 1M x2', await fio(dir, [...seqArgs('seq', 'write', '1M', 'md5'), '--do_verify=1']), 2, SEQ);
  t.equal((await fs.stat(path.join(vms(), 'seq.dat'))).size, 2 * SEQ, 'seq.dat is 256 MiB');

  // Random 64 KiB overwrites of every block of that file: each changes committed data.
  assertVerified(t, 'randwrite 64k over seq.dat x2', await fio(dir, [...seqArgs('ow', 'randwrite', '64k', 'crc32c'), '--do_verify=1']), 2, SEQ);

  t.equal(await app.stop(), 0, 'the appliance stops cleanly');
  app = await startAppliance(t, dir);
  assertVerified(t, 'after a restart: verify_only rand', await fio(dir, [...randArgs(), '--verify_only']), 2, RAND, false);
  assertVerified(t, 'after a restart: verify_only seq.dat', await fio(dir, [...seqArgs('ow', 'randwrite', '64k', 'crc32c'), '--verify_only']), 2, SEQ, false);

  // The check has teeth: one 4 KiB block changed behind fio's back fails verification.
  const fh = await fs.open(path.join(vms(), 'rand.0'), 'r+');
  try {
    await fh.write(Buffer.alloc(4096, 0x5c), 0, 4096, 1 * MiB);
    await fh.sync();
  } finally {
    await fh.close();
  }
  const bad = await fio(dir, [...randArgs(), '--verify_only']);
  t.not(bad.run.code, 0, 'a changed block makes fio --verify_only fail');
  t.match(bad.run.stdout + bad.run.stderr, /verify|bad magic/i, `fio names the bad block: ${(bad.run.stderr.match(/.*(verify|bad magic).*/i) ?? [''])[0]}`);
  t.equal(await app.stop(), 0, 'the appliance stops cleanly again');
});
