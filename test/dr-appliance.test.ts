// The DR copy end to end, with real parts only: a real appliance process (store, FUSE mount,
// control plane), two real QEMU VMs (-S, TCG, no guest) backed up through it, a policy with a
// lock, a share written through the mount; the `vmvault` launcher for dr copy / verify / restore.
//
// - a DR copy taken while a writer keeps writing through the mount restores (from the copy alone,
//   no appliance running) into an empty data directory; a fresh appliance on it serves every
//   VM's points and the share's latest point byte-identical, the VMs, the policy, and the lock,
//   which it enforces; what the writer had fsynced before the copy began is there, whole;
// - kill -9 of the appliance in the middle of a second copy leaves the first copy usable
//   (verify passes, it restores), and the next copy completes;
// - a flipped byte or a missing file in the copy is named by `dr verify` (exit 7) and `dr restore`
//   refuses it without writing anything; a non-empty target is refused.

import t from 'tap';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { QmpClient } from '../src/plugins/qemu/qmp.js';
import { startAppliance } from './helpers/appliance.js';
import { runCli } from './helpers/cli-run.js';
import { distinctBytes as bytes } from './helpers/data.js';
import { qemuIo, startQemu } from './helpers/qemu.js';
import { tmpDir } from './helpers/tmpdir.js';

const MiB = 1024 * 1024;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));


async function qemuWrite(qmp: string, qdev: string, cmds: string[]): Promise<void> {
  const c = await QmpClient.connect(qmp);
  try {
    for (const cmd of cmds) await qemuIo(c, qdev, cmd);
  } finally {
    c.close();
  }
}

t.test('DR copy of a live appliance, restore on an empty directory, crash mid-copy, damage', async (t) => {
  const dir = tmpDir(t, 'vmvault-dr-e2e-');
  const drDir = path.join(dir, 'dr-1');
  const vm1 = await startQemu({ t, dir, name: 'vm1', disks: [{ device: 'vda', sizeBytes: 8 * MiB, file: path.join(dir, 'vm1.qcow2') }] });
  const vm2 = await startQemu({ t, dir, name: 'vm2', disks: [{ device: 'vda', sizeBytes: 8 * MiB, file: path.join(dir, 'vm2.qcow2') }] });
  const aDir = path.join(dir, 'a');
  fs.mkdirSync(aDir);
  let a = await startAppliance(t, aDir, ['--freeze-timeout', '5']);
  const cliA = (...args: string[]) => runCli(['--url', a.url, '--token', a.token, ...args]);
  const ok = async (p: Promise<{ code: number | null; stdout: string; stderr: string }>, what: string) => {
    const r = await p;
    t.equal(r.code, 0, `${what}: ${r.stderr}`);
    return r;
  };

  // Two VMs with points; vm1 in a policy with a lock.
  await ok(cliA('vm', 'add', 'vm1', '--qmp', vm1.qmp, '--workflow', 'crash-consistent'), 'vm add vm1');
  await ok(cliA('vm', 'add', 'vm2', '--qmp', vm2.qmp, '--workflow', 'crash-consistent'), 'vm add vm2');
  // destination add takes --token as the destination's own token: ours comes from the environment.
  await ok(runCli(['--url', a.url, 'destination', 'add', 'dr-1', '--dir', drDir], { VMVAULT_TOKEN: a.token }), 'destination add');
  await ok(cliA('policy', 'create', 'gold', '--backup', '0 3 * * *', '--keep', 'daily=7', '--lock', '7d', '--dr', 'daily 04:00 -> dr-1'), 'policy create');
  await ok(cliA('policy', 'assign', 'gold', '--vm', 'vm1'), 'policy assign');
  await qemuWrite(vm1.qmp, vm1.qdevOf('vda'), ['write -P 0x11 0 3M', 'write -P 0x12 5M 1M']);
  await qemuWrite(vm2.qmp, vm2.qdevOf('vda'), ['write -P 0x21 1M 2M']);
  await ok(cliA('backup', 'vm1'), 'backup vm1');
  await ok(cliA('backup', 'vm2'), 'backup vm2');
  await qemuWrite(vm1.qmp, vm1.qdevOf('vda'), ['write -P 0x13 2M 2M']);
  await ok(cliA('backup', 'vm1'), 'backup vm1 again');
  const points = async (vm: string) => (JSON.parse((await cliA('backup', 'list', vm, '--json')).stdout) as Array<{ point: string }>).map((p) => p.point);
  const p1 = await points('vm1');
  const p2 = await points('vm2');
  t.equal(p1.length, 2);
  t.equal(p2.length, 1);
  const lock = (await a.api('GET', `/shares/vm1/snapshots/${p1[1]}`)).body.lockedUntil;
  t.ok(lock, `vm1's newest point is locked until ${lock}`);

  // A share of plain files (incompressible, so it fills several containers) with a snapshot.
  await ok(cliA('share', 'create', 'plain'), 'share create');
  fs.writeFileSync(path.join(a.mount, 'plain', 'big.bin'), bytes(24 * MiB, 5));
  await ok(cliA('snapshot', 'create', 'plain', 'day1'), 'snapshot');

  // What every share's points hold, read through A's mount.
  const want = new Map<string, string>();
  for (const p of p1) want.set(`vm1/.snapshots/${p}/vda.raw`, sha(fs.readFileSync(path.join(a.mount, 'vm1', '.snapshots', p, 'vda.raw'))));
  want.set(`vm2/.snapshots/${p2[0]}/vda.raw`, sha(fs.readFileSync(path.join(a.mount, 'vm2', '.snapshots', p2[0], 'vda.raw'))));
  want.set('plain/.snapshots/day1/big.bin', sha(bytes(24 * MiB, 5)));

  // A writer keeps writing (and fsyncing) files into the share during the copy.
  let stop = false;
  let n = 0;
  let fsyncedBeforeCopy = -1;
  const writer = (async () => {
    while (!stop) {
      const h = await fs.promises.open(path.join(a.mount, 'plain', `w${n}`), 'w');
      await h.write(bytes(256 * 1024, 1000 + n));
      await h.sync();
      await h.close();
      n++;
    }
  })();
  while (n < 3) await sleep(10);
  fsyncedBeforeCopy = n;
  const copy1 = await cliA('dr', 'copy', '--to', 'dr-1');
  const writtenAfterCopy = n;
  stop = true;
  await writer;
  t.equal(copy1.code, 0, copy1.stderr);
  t.match(copy1.stdout, /State\s+succeeded/);
  t.match(copy1.stdout, /Containers\s+\d+: \d+ copied, 0 already there/);
  t.ok(writtenAfterCopy > fsyncedBeforeCopy, `the writer wrote during the copy (${fsyncedBeforeCopy} files before, ${writtenAfterCopy} after)`);
  const verify1 = await runCli(['dr', 'verify', '--from', drDir]);
  t.equal(verify1.code, 0, verify1.stderr);
  t.match(verify1.stdout, /ok: every file matches the manifest/);
  const manifest1 = JSON.parse(fs.readFileSync(path.join(drDir, 'dr-manifest.json'), 'utf8')).body;

  // kill -9 of the appliance in the middle of the second copy.
  fs.writeFileSync(path.join(a.mount, 'plain', 'more.bin'), bytes(24 * MiB, 6));
  await ok(cliA('snapshot', 'create', 'plain', 'day2'), 'snapshot day2');
  const started = await a.api('POST', '/dr/copies', { to: drDir });
  t.equal(started.status, 202);
  let killedMidRun = false;
  for (let i = 0; i < 2000; i++) {
    const j = (await a.api('GET', `/jobs/${started.body.job}`)).body;
    if (j.state === 'running' && j.progress.done > 0 && j.progress.done < j.progress.total) {
      killedMidRun = true;
      break;
    }
    if (j.state !== 'running' && j.state !== 'queued') break;
    await sleep(5);
  }
  await a.kill9();
  t.ok(killedMidRun, 'the appliance was killed while the copy was under way');
  const afterKill = JSON.parse(fs.readFileSync(path.join(drDir, 'dr-manifest.json'), 'utf8')).body;
  t.equal(afterKill.copy, manifest1.copy, 'the manifest is still the first copy');
  const verify2 = await runCli(['dr', 'verify', '--from', drDir]);
  t.equal(verify2.code, 0, `the first copy is still whole after the kill: ${verify2.stdout}${verify2.stderr}`);

  // Restore from the copy alone into an empty directory; no appliance runs it.
  const bDir = path.join(dir, 'b');
  fs.mkdirSync(bDir);
  const bData = path.join(bDir, 'data');
  const restored = await runCli(['dr', 'restore', '--from', drDir, '--data', bData]);
  t.equal(restored.code, 0, restored.stderr);
  t.match(restored.stdout, new RegExp(`restored DR copy ${manifest1.copy}`));
  const b = await startAppliance(t, bDir, [], { data: bData });
  const cliB = (...args: string[]) => runCli(['--url', b.url, '--token', b.token, ...args]);
  for (const [rel, h] of want) t.equal(sha(fs.readFileSync(path.join(b.mount, ...rel.split('/')))), h, `${rel} identical on the restored appliance`);
  const vmsB = JSON.parse((await cliB('vm', 'list', '--json')).stdout) as Array<{ name: string }>;
  t.same(vmsB.map((v) => v.name).sort(), ['vm1', 'vm2'], 'the VMs');
  t.same((JSON.parse((await cliB('backup', 'list', 'vm1', '--json')).stdout) as Array<{ point: string }>).map((p) => p.point), p1, "vm1's points");
  const gold = await b.api('GET', '/policies/gold');
  t.equal(gold.status, 200, 'the policy');
  t.match(gold.body, { vms: ['vm1'], dr: 'daily 04:00 -> dr-1', lock: '7d' }, 'with its VM, lock and DR schedule');
  t.match(JSON.parse((await cliB('destination', 'list', '--json')).stdout), [{ name: 'dr-1', kind: 'dir', path: drDir }], 'and the destination');
  t.equal((await b.api('GET', `/shares/vm1/snapshots/${p1[1]}`)).body.lockedUntil, lock, 'the lock');
  const del = await b.api('DELETE', `/shares/vm1/snapshots/${p1[1]}`);
  t.equal(del.status, 423, 'and the restored appliance enforces it');
  // The writer's files: every one fsynced before the copy began is there, whole; none written
  // after the copy ended is.
  const wFiles = fs.readdirSync(path.join(b.mount, 'plain')).filter((f) => /^w\d+$/.test(f));
  for (let i = 0; i < fsyncedBeforeCopy; i++) t.ok(wFiles.includes(`w${i}`), `w${i} (fsynced before the copy) is there`);
  t.notOk(wFiles.some((f) => Number(f.slice(1)) > writtenAfterCopy), 'nothing written after the copy ended');
  for (const f of wFiles) {
    const got = fs.readFileSync(path.join(b.mount, 'plain', f));
    if (got.length > 0) t.equal(sha(got), sha(bytes(256 * 1024, 1000 + Number(f.slice(1)))), `${f} whole`);
  }
  const vb = await cliB('verify', '--full');
  t.equal(vb.code, 0, `the restored store verifies in full: ${vb.stdout}${vb.stderr}`);
  t.equal(await b.stop(), 0);

  // A restarts (recovering from the kill); the next copy completes and reuses what is there.
  a = await startAppliance(t, aDir);
  const copy3 = await runCli(['--url', a.url, '--token', a.token, 'dr', 'copy', '--to', drDir]);
  t.equal(copy3.code, 0, copy3.stderr);
  t.match(copy3.stdout, /Containers\s+\d+: \d+ copied, [1-9]\d* already there/, 'the incremental copy reuses containers');
  t.equal((await runCli(['dr', 'verify', '--from', drDir])).code, 0);
  t.equal(await a.stop(), 0);

  // Damage: a flipped byte in a container and a missing state file.
  const m = JSON.parse(fs.readFileSync(path.join(drDir, 'dr-manifest.json'), 'utf8')).body;
  const victim = m.containers.find((c: { sealed: boolean }) => c.sealed);
  const vp = path.join(drDir, victim.path);
  const buf = fs.readFileSync(vp);
  buf[100] ^= 1;
  fs.writeFileSync(vp, buf);
  const gone = m.files.find((f: { rel: string }) => f.rel === 'vms.json');
  fs.rmSync(path.join(drDir, gone.path));
  const bad = await runCli(['dr', 'verify', '--from', drDir]);
  t.equal(bad.code, 7, 'verify: exit 7 (damaged)');
  t.match(bad.stdout, new RegExp(`DAMAGED ${victim.path} \\(container [0-9a-f]{8}\\): SHA-256`));
  t.match(bad.stdout, new RegExp(`DAMAGED ${gone.path} \\(state file vms.json\\): the file is missing`));
  const cData = path.join(dir, 'c');
  const refused = await runCli(['dr', 'restore', '--from', drDir, '--data', cData]);
  t.equal(refused.code, 7);
  t.match(refused.stderr, /is damaged: .*SHA-256/);
  t.notOk(fs.existsSync(cData), 'nothing written');
  const notEmpty = await runCli(['dr', 'restore', '--from', drDir, '--data', bData]);
  t.equal(notEmpty.code, 6, 'a non-empty target is refused');
  t.match(notEmpty.stderr, /is not empty/);
});
