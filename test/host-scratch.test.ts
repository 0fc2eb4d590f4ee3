// A VM on a host needs nothing of the appliance's data folder (issue 13): its fleecing scratch
// images and QEMU's NBD socket are made by that host's agent in its own --scratch-dir, and the
// agent makes and removes files only there.
// - the agent's scratch requests (real qemu-img): an image made in <dir>/<vm>/; removal of a path
//   outside the folder, not normalised, through a link out, or not a scratch image is refused
//   (FORBIDDEN) and the file stays;
// - a host (network namespace) with its agent and a paused QEMU, a real appliance: during the
//   backup the scratch image and nbd.sock are in the agent's folder (listed while the backup
//   runs, and QEMU's scratch node names that file); after it they are gone, and the appliance's
//   <data>/scratch holds nothing for the VM; a stale scratch node a killed run left in QEMU, with
//   its image in the agent's folder, is removed through the agent.

import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { ScratchRequests } from '../src/agent/scratch-requests.js';
import { HostRequestTable } from '../src/agent/host-requests.js';
import { HostRequests } from '../src/backup/host-requests.js';
import { HostScratch } from '../src/backup/host-scratch.js';
import { QmpClient } from '../src/plugins/qemu/qmp.js';
import { makeClusterRig } from './helpers/cluster-rig.js';
import { netnsAvailable } from './helpers/netns.js';
import { qemuIo } from './helpers/qemu.js';
import { runTool } from './helpers/run-tool.js';
import { tmpDir } from './helpers/tmpdir.js';

const MiB = 1024 * 1024;
process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';

function jobText(job: any): string {
  return (job.log ?? []).map((l: any) => (typeof l === 'string' ? l : l.message)).join('\n');
}

t.test("the agent's scratch requests stay inside its folder", async (t) => {
  const dir = tmpDir(t, 'vmvault-scratch-');
  const root = path.join(dir, 'agent-scratch');
  const table = new HostRequestTable();
  new ScratchRequests(root).register(table);
  const stop = new AbortController().signal;
  const run = (kind: string, args: unknown) => table.run({ v: 1, id: 'x', kind, args, timeoutMs: 30_000 }, stop);

  const made = await run('scratch-create', { vm: 'web01', device: 'vda', size: 4 * MiB });
  t.ok(made.ok, JSON.stringify(made));
  const r = (made as { result: { path: string; dir: string } }).result;
  t.equal(r.dir, path.join(fs.realpathSync(root), 'web01'));
  t.match(path.basename(r.path), /^fleece-[0-9a-f]{6}-vda\.qcow2$/);
  t.equal(path.dirname(r.path), r.dir);
  const info = await runTool('qemu-img', ['info', '--output=json', r.path]);
  t.same([JSON.parse(info.stdout).format, JSON.parse(info.stdout)['virtual-size']], ['qcow2', 4 * MiB], 'a qcow2 of the asked size');

  // Bad input: never made or removed outside the folder.
  const outside = path.join(dir, 'elsewhere');
  fs.mkdirSync(outside);
  const victim = path.join(outside, 'fleece-abcdef-vda.qcow2');
  fs.writeFileSync(victim, 'precious');
  fs.symlinkSync(outside, path.join(fs.realpathSync(root), 'linked'));
  for (const p of [
    victim,
    '/etc/passwd',
    `${root}/web01/../../elsewhere/fleece-abcdef-vda.qcow2`,
    path.join(root, 'linked', 'fleece-abcdef-vda.qcow2'),
    path.join(root, 'web01'),
    path.join(root, 'web01', 'not-a-scratch.qcow2'),
    'fleece-abcdef-vda.qcow2',
  ]) {
    const a = await run('scratch-remove', { path: p });
    t.same(a.ok ? 'removed' : (a as { error: { code: string } }).error.code, 'FORBIDDEN', `scratch-remove ${p} is refused`);
  }
  t.equal(fs.readFileSync(victim, 'utf8'), 'precious', 'the file outside is untouched');
  for (const args of [{ vm: '..', device: 'vda', size: MiB }, { vm: 'a/b', device: 'vda', size: MiB }, { vm: 'web01', device: 'vda', size: -1 }, { vm: 'web01', device: 'vda', size: 1.5 }, { vm: 'web01', device: '', size: MiB }]) {
    const a = await run('scratch-create', args);
    t.same(a.ok ? 'made' : (a as { error: { code: string } }).error.code, 'INVALID_ARGUMENT', `scratch-create ${JSON.stringify(args)} is refused`);
  }
  const byLink = await run('scratch-create', { vm: 'linked', device: 'vda', size: MiB });
  t.same(byLink.ok ? 'made' : (byLink as { error: { code: string } }).error.code, 'FORBIDDEN', 'a VM folder that is a link out is refused');
  t.same(fs.readdirSync(outside), ['fleece-abcdef-vda.qcow2'], 'nothing made outside through the link');

  t.same(await run('scratch-remove', { path: r.path }), { ok: true, result: null }, 'its own image is removed');
  t.notOk(fs.existsSync(r.path));
  t.same(await run('scratch-remove', { path: r.path }), { ok: true, result: null }, 'again: already gone');
  t.same(await run('scratch-remove', { vm: 'web01' }), { ok: true, result: null });
  t.same(await run('scratch-remove', { vm: 'linked' }), { ok: true, result: null }, 'a link is removed as a link');
  t.same(fs.readdirSync(root), [], 'the folder is empty');
  t.ok(fs.existsSync(victim), 'not followed');
  t.throws(() => new ScratchRequests('/'), { code: 'INVALID_ARGUMENT' });
  t.throws(() => new ScratchRequests('relative/dir'), { code: 'INVALID_ARGUMENT' });
});

t.test("the appliance refuses an agent's scratch answer that is not a scratch image in the VM's folder", async (t) => {
  // The appliance's real request machinery; the test answers as a lying agent would.
  const hr = new HostRequests(() => ({ state: 'live' }), () => {});
  t.teardown(() => hr.close());
  const answerWith = async (result: unknown, vm = 'web01', scratch = new HostScratch({ request: hr.request.bind(hr) }, 'node1', 'a1', vm)) => {
    const made = scratch.create('vda', MiB);
    const [req] = hr.take('a1');
    t.same([req.kind, req.args], ['scratch-create', { vm, device: 'vda', size: MiB }]);
    hr.answer('a1', req.id, { ok: true, result });
    return made;
  };
  const good = { dir: '/var/tmp/vmvault-agent/web01', path: '/var/tmp/vmvault-agent/web01/fleece-0a0b0c-vda.qcow2' };
  for (const [why, result] of [
    ['a file outside the folder', { ...good, path: '/etc/passwd' }],
    ['a folder of another VM', { dir: '/var/tmp/vmvault-agent/db01', path: '/var/tmp/vmvault-agent/db01/fleece-0a0b0c-vda.qcow2' }],
    ['a path that climbs out', { ...good, path: '/var/tmp/vmvault-agent/web01/../../../etc/fleece-0a0b0c-vda.qcow2' }],
    ['a relative path', { dir: 'web01', path: 'web01/fleece-0a0b0c-vda.qcow2' }],
    ['not a scratch image name', { ...good, path: '/var/tmp/vmvault-agent/web01/disk.qcow2' }],
    ['a folder too long for a socket', { dir: `/${'d'.repeat(100)}/web01`, path: `/${'d'.repeat(100)}/web01/fleece-0a0b0c-vda.qcow2` }],
    ['no object', 'yes'],
  ] as const) {
    await t.rejects(answerWith(result), { code: 'IO', details: { hostReason: 'bad-answer' } }, `refused: ${why}`);
  }
  const scratch = new HostScratch({ request: hr.request.bind(hr) }, 'node1', 'a1', 'web01');
  t.throws(() => scratch.socketPath(), { code: 'INVALID_ARGUMENT' }, 'no socket before the agent named the folder');
  t.equal(await answerWith(good, 'web01', scratch), good.path, 'a good answer is taken');
  t.equal(scratch.socketPath(), '/var/tmp/vmvault-agent/web01/nbd.sock', 'the socket goes in the folder the agent named');
  await t.rejects(answerWith({ dir: '/srv/other/web01', path: '/srv/other/web01/fleece-0a0b0c-vdb.qcow2' }, 'web01', scratch), { code: 'IO' }, 'a second disk in another folder is refused');
});

t.test("a host VM's backup makes its scratch and socket on the host, in the agent's folder", { skip: netnsAvailable(), timeout: 600_000 }, async (t) => {
  const dir = tmpDir(t, 'vmvault-hscr-');
  const size = 64 * MiB;
  const rig = await makeClusterRig(t, dir, { hosts: 1, vmsPerHost: 1, diskBytes: size });
  await rig.agentsLive();
  const host = rig.hosts[0];
  const vm = rig.vms[0];
  const add = await rig.api('POST', '/vms', { name: vm.name, fromCluster: true, workflow: 'crash-consistent' });
  t.equal(add.status, 201, JSON.stringify(add.body));

  // Data to copy (so the backup lasts a while), and a stale scratch node as a killed run leaves
  // it: its image in another folder of the agent's scratch.
  const staleDir = path.join(host.scratchDir, 'killed-run');
  fs.mkdirSync(staleDir, { recursive: true });
  const staleFile = path.join(staleDir, 'fleece-0a0b0c-vda.qcow2');
  t.equal((await runTool('qemu-img', ['create', '-q', '-f', 'qcow2', staleFile, String(size)])).code, 0);
  const c = await QmpClient.connect(vm.q.qmp);
  try {
    for (let i = 0; i < 8; i++) await qemuIo(c, vm.q.qdevOf('vda'), `write -P ${0x10 + i} ${i * 8 * MiB} ${4 * MiB}`);
    await c.execute('blockdev-add', { driver: 'qcow2', 'node-name': 'vmv-s-0a0b0c-0', file: { driver: 'file', filename: staleFile }, backing: vm.q.nodeOf('vda') });
  } finally {
    await c.close();
  }

  // List the agent's folder while the backup runs.
  const seen = new Set<string>();
  let watching = true;
  const vmDir = path.join(host.scratchDir, vm.name);
  const watcher = (async () => {
    while (watching) {
      for (const n of fs.existsSync(vmDir) ? fs.readdirSync(vmDir) : []) seen.add(n.replace(/^fleece-[0-9a-f]{6}-/, 'fleece-*-'));
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  const res = await rig.api('POST', `/vms/${vm.name}/backups`, {});
  t.equal(res.status, 202, JSON.stringify(res.body));
  const job = await rig.waitJob(res.body.job);
  watching = false;
  await watcher;
  const text = jobText(job);
  t.equal(job.state, 'succeeded', job.state === 'succeeded' ? 'the backup succeeds' : `${JSON.stringify(job.error)}\n${text}\n${host.agent.log()}`);

  const realVmDir = path.join(fs.realpathSync(host.scratchDir), vm.name);
  const m = /scratch image (\S+) \(on host node1 by agent agent1\)/.exec(text);
  t.ok(m, 'the job names the scratch image made on the host');
  t.equal(path.dirname(m?.[1] ?? ''), realVmDir, "the scratch image is in the agent's folder");
  t.match(host.agent.log(), new RegExp(`scratch: made ${realVmDir}/fleece-[0-9a-f]{6}-vda\\.qcow2 \\(${size} bytes\\)`), 'the agent made it');
  t.ok(seen.has('fleece-*-vda.qcow2'), `the scratch image was there during the backup (seen: ${[...seen].join(', ')})`);
  t.ok(seen.has('nbd.sock'), "QEMU's NBD socket was in the agent's folder during the backup");
  t.match(text, new RegExp(`removed scratch node vmv-s-0a0b0c-0 and ${staleFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} left by an interrupted backup`), 'the stale node is removed');
  t.notOk(fs.existsSync(staleFile), "the stale image is removed on the host, by the agent");
  t.match(host.agent.log(), `scratch: removed ${fs.realpathSync(staleDir)}/fleece-0a0b0c-vda.qcow2`);

  t.notOk(fs.existsSync(vmDir), "nothing is left in the agent's folder for the VM");
  const appScratch = path.join(rig.app.data, 'scratch');
  t.same(fs.existsSync(appScratch) ? fs.readdirSync(appScratch) : [], [], "the appliance's <data>/scratch holds nothing");
  const q = await QmpClient.connect(vm.q.qmp);
  try {
    const nodes = await q.execute<Array<{ 'node-name': string }>>('query-named-block-nodes', { flat: true });
    t.same(nodes.filter((n) => n['node-name'].startsWith('vmv-')), [], 'no scratch node left in QEMU');
  } finally {
    await q.close();
  }
});
