// Instant recovery end to end, with the real test guest (TCG, qemu-ga) and a real appliance
// process (store, FUSE mount, control plane):
// 1. the guest is backed up; `vmvault recover` starts it again from a clone of the point on the
//    mount: it boots and its guest agent answers; a file written inside it lands in the clone's
//    disk, not in the point's;
// 2. bad input: unknown VM or point, a name in use, migrate of a VM not recovered, a target that
//    is not writable, inside the mount, or not a directory; each refused before any job starts;
// 3. `recover --migrate --to DIR`: afterwards query-block shows DIR's files, QEMU holds no file
//    of the mount, and the appliance stops (its mount unmounted) while the guest still answers and
//    writes.

import t from 'tap';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { startAppliance, type Appliance } from './helpers/appliance.js';
import { runCli } from './helpers/cli-run.js';
import { bootGuest, guestUnavailable } from './helpers/guest.js';
import { qga, qgaRun, qmp } from './helpers/qemu-sockets.js';
import { tmpDir } from './helpers/tmpdir.js';

const why = guestUnavailable();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function job(app: Appliance, res: { status: number; body: any }, ms = 600_000): Promise<any> {
  if (res.status !== 202) throw new Error(`expected 202, got ${res.status}: ${JSON.stringify(res.body)}`);
  const until = Date.now() + ms;
  for (;;) {
    const j = await app.api('GET', `/jobs/${res.body.job}`);
    if (j.body.state === 'succeeded' || j.body.state === 'failed' || j.body.state === 'cancelled') return j.body;
    if (Date.now() > until) throw new Error(`job ${res.body.job} did not end: ${JSON.stringify(j.body)}`);
    await sleep(200);
  }
}

/** Waits until the guest agent at `sock` answers guest-ping. */
async function agentUp(sock: string, ms: number): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    try {
      await qga(sock, 'guest-ping', undefined, 3000);
      return Date.now() - t0;
    } catch (err) {
      if (Date.now() - t0 > ms) throw new Error(`the guest agent at ${sock} did not answer within ${ms} ms: ${(err as Error).message}`);
      await sleep(300);
    }
  }
}

/** Runs a shell command in the guest through its agent; its exit code and stdout. */
async function guestSh(sock: string, script: string, ms = 60_000): Promise<{ code: number | null; out: string }> {
  const { pid } = await qga<{ pid: number }>(sock, 'guest-exec', { path: '/bin/sh', arg: ['-c', script], 'capture-output': true }, 30_000);
  const until = Date.now() + ms;
  for (;;) {
    const [st] = (await qgaRun(sock, [{ execute: 'guest-exec-status', arguments: { pid } }], 30_000)) as Array<{ exited: boolean; exitcode?: number; 'out-data'?: string }>;
    if (st.exited) return { code: st.exitcode ?? null, out: Buffer.from(st['out-data'] ?? '', 'base64').toString('utf8') };
    if (Date.now() > until) throw new Error(`guest command ${script} still running`);
    await sleep(200);
  }
}

function fileHas(file: string, marker: string): boolean {
  try {
    execFileSync('grep', ['-a', '-q', '-F', marker, file], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

t.test('recover a backed-up guest from the mount, then migrate it off the mount', { skip: why ?? false, timeout: 1_500_000 }, async (t) => {
  const dir = tmpDir(t, 'vmvault-recover-');
  const pids: number[] = [];
  t.teardown(() => {
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  });
  const app = await startAppliance(t, path.join(dir, 'app'));
  const cli = (...args: string[]) => runCli(['--url', app.url, '--token', app.token, ...args]);

  // 1. A point of the real guest, then the guest stopped (the original is "lost").
  const g = await bootGuest(t, { dir: path.join(dir, 'guest') });
  const add = await app.api('POST', '/vms', { name: 'g1', qmp: g.qmp, qga: g.qga });
  t.equal(add.status, 201, 'VM registered');
  const b = await job(app, await app.api('POST', '/vms/g1/backups', {}));
  t.equal(b.state, 'succeeded', `backup: ${b.error?.message ?? b.result?.point}`);
  const point = b.result.point as string;
  await g.stop();

  const r = await cli('recover', 'g1', '--json');
  t.equal(r.code, 0, `vmvault recover g1 exits 0 (${r.stderr.trim()})`);
  const rec = JSON.parse(r.stdout).result;
  t.equal(rec.name, 'g1-recovery', 'default name <vm>-recovery');
  t.equal(rec.point, point, 'the newest point');
  t.equal(rec.state, 'running');
  pids.push(rec.pid);
  t.ok(rec.disks.every((d: { file: string }) => d.file.startsWith(app.mount + '/g1-recovery/')), `disks on the mount: ${rec.disks.map((d: { file: string }) => d.file).join(', ')}`);
  const qgaSock = rec.qga.replace(/^unix:/, '');
  const qmpSock = rec.qmp.replace(/^unix:/, '');
  const bootMs = await agentUp(qgaSock, 300_000);
  t.pass(`the recovered guest's agent answers ${bootMs} ms after the job ended`);
  const mounted = await guestSh(qgaSock, 'grep " /mnt " /proc/mounts');
  t.match(mounted.out, /vda/, 'the guest mounted its disk (vda) from the clone');

  const marker = `vmvault-recovered-${randomBytes(8).toString('hex')}`;
  const w = await guestSh(qgaSock, `printf '%s\\n' ${marker} > /mnt/recover-proof && sync && cat /mnt/recover-proof`);
  t.equal(w.out.trim(), marker, 'the guest wrote a file on its disk');
  // Through the mount from this process (not the FUSE server): the clone has it, the point not.
  t.ok(fileHas(path.join(app.mount, 'g1-recovery', 'vda.raw'), marker), "the write is in the clone's vda.raw");
  t.notOk(fileHas(path.join(app.mount, 'g1', '.snapshots', point, 'vda.raw'), marker), "the point's vda.raw is unchanged");

  const list = await cli('recover', 'list');
  t.equal(list.code, 0);
  t.match(list.stdout, /g1-recovery\s+g1\s+\S+\s+running/, `recover list shows it running:\n${list.stdout}`);

  // 2. Bad input, each refused before a job starts.
  const bad = async (method: string, route: string, body: unknown, status: number, re: RegExp, what: string) => {
    const res = await app.api(method, route, body);
    t.equal(res.status, status, `${what}: ${status}`);
    t.match(res.body?.error?.message ?? '', re, `${what}: ${res.body?.error?.message}`);
  };
  await bad('POST', '/vms/nosuch/recoveries', {}, 404, /nosuch/, 'unknown VM');
  await bad('POST', '/vms/g1/recoveries', { point: '2001-01-01T000000Z' }, 404, /no restore point/, 'unknown point');
  await bad('POST', '/vms/g1/recoveries', {}, 409, /g1-recovery exists already/, 'the default name in use');
  await bad('POST', '/vms/g1/recoveries', { name: 'g1' }, 409, /share named g1 exists/, 'a share of that name');
  await bad('POST', '/recoveries/g1/migrate', { to: path.join(dir, 'prod') }, 404, /no instant recovery named "g1"/, 'migrate of a VM not recovered');
  const ro = path.join(dir, 'ro');
  fs.mkdirSync(ro);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'ro,size=1m', 'tmpfs', ro]);
  t.teardown(() => execFileSync('umount', ['-l', ro]));
  await bad('POST', '/recoveries/g1-recovery/migrate', { to: ro }, 400, /not writable/, 'a read-only target');
  await bad('POST', '/recoveries/g1-recovery/migrate', { to: path.join(app.mount, 'g1') }, 400, /inside the appliance's mount/, 'a target on the mount');
  const file = path.join(dir, 'a-file');
  fs.writeFileSync(file, 'x');
  await bad('POST', '/recoveries/g1-recovery/migrate', { to: file }, 400, /not a directory/, 'a target that is a file');
  await bad('DELETE', '/shares/g1-recovery?force=true', undefined, 409, /recovered VM g1-recovery, which runs from it/, 'deleting the clone the VM runs from');
  const cliBad = await cli('recover', 'g1', '--migrate');
  t.equal(cliBad.code, 2, `recover --migrate without --to is a usage error: ${cliBad.stderr.trim()}`);

  // 3. Migrate to production storage while it runs.
  const prod = path.join(dir, 'prod');
  const m = await job(app, await app.api('POST', '/recoveries/g1-recovery/migrate', { to: prod, format: 'qcow2' }));
  t.equal(m.state, 'succeeded', `migrate: ${m.error?.message ?? ''}\n${m.log?.join('\n')}`);
  t.equal(m.kind, 'recover');
  t.ok(m.progress.done > 0 && m.progress.done === m.progress.total, `progress from query-block-jobs: ${m.progress.done} / ${m.progress.total} bytes`);
  t.equal(m.result.state, 'migrated');
  const blocks = await qmp<Array<{ inserted?: { file: string; image: { filename: string; format: string } } }>>(qmpSock, 'query-block');
  const files = blocks.filter((x) => x.inserted).map((x) => x.inserted!.image.filename);
  t.same(files, [path.join(prod, 'vda.qcow2')], `query-block shows the target: ${files.join(', ')}`);
  const nodes = await qmp<Array<{ file: string }>>(qmpSock, 'query-named-block-nodes');
  t.notOk(nodes.some((n) => n.file.startsWith(app.mount)), 'no block node of the mount is left');
  const fds = fs.readdirSync(`/proc/${rec.pid}/fd`).map((fd) => {
    try {
      return fs.readlinkSync(`/proc/${rec.pid}/fd/${fd}`);
    } catch {
      return '';
    }
  });
  t.notOk(fds.some((f) => f.startsWith(app.mount + '/')), 'QEMU has no file of the mount open');

  const rel = await cli('recover', 'release', 'g1-recovery', '--drop-clone');
  t.equal(rel.code, 0, `release --drop-clone: ${rel.stdout.trim()} ${rel.stderr.trim()}`);
  t.equal((await app.api('GET', '/shares/g1-recovery')).status, 404, 'the clone is gone');
  // The appliance stops and unmounts; the VM does not notice.
  t.equal(await app.stop(), 0, 'the appliance stopped cleanly');
  t.notOk(fs.readFileSync('/proc/mounts', 'utf8').includes(` ${app.mount} `), 'the mount is gone');
  await agentUp(qgaSock, 30_000);
  const after = await guestSh(qgaSock, `printf after > /mnt/after-migrate && sync && cat /mnt/after-migrate /mnt/recover-proof`);
  t.equal(after.out, `after${marker}\n`, 'the guest still writes and reads its disk (and kept what it wrote on the mount)');
  t.ok(fileHas(path.join(prod, 'vda.qcow2'), marker), "the write from before the migration is in the target's file");
});
