// Hosts, discovery and VMs that move (issue 13), with real parts: three hypervisor hosts as
// network namespaces, an agent on each (`--qmp-dir`, the Proxmox layout), paused QEMUs whose QMP
// sockets only their host's agent uses, and a real appliance that reaches them only through the
// agents (QMP relayed, NBD read by the host's agent).
// - the cluster map shows every host's VMs (name, uuid, state, disks);
// - a VM added from the map backs up through its host's agent; the restore point reads back equal;
// - the VM "moves" (QEMU stopped on node1, its qcow2 started on node2 with the same uuid; the
//   checkpoint bitmap is persistent in the qcow2): the map shows it on node2, the next backup
//   follows it (logged), is incremental, reads about the change, and reads back equal; the
//   scratch a backup killed on node1 left there is removed by that backup on node2;
// - node3's agent is killed: the map reports node3 unreachable with the reason and its VMs
//   unknown; a backup of its VM fails with that reason while another VM's backup succeeds;
// - vm101, stopped on node2, gets its first point back in place through node2's agent
//   (`--in-place-dir`): its qcow2 reads as that point.

import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { QmpClient } from '../src/plugins/qemu/qmp.js';
import { agentCopyFigures } from './helpers/agent-rig.js';
import { runCli } from './helpers/cli-run.js';
import { DiskModel } from './helpers/backup.js';
import { makeClusterRig } from './helpers/cluster-rig.js';
import { netnsAvailable } from './helpers/netns.js';
import { qemuIo } from './helpers/qemu.js';
import { runTool } from './helpers/run-tool.js';
import { tmpDir } from './helpers/tmpdir.js';

const MiB = 1024 * 1024;
const skip = netnsAvailable();
process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';

async function until(what: string, fn: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The message of an assertion: short when it holds, the whole story when it does not. */
function why(ok: boolean, what: string, diag: () => string): string {
  return ok ? what : `${what}\n${diag()}`;
}

function jobText(job: any): string {
  return (job.log ?? []).map((l: any) => (typeof l === 'string' ? l : l.message)).join('\n');
}

t.test('three hosts: the map, a backup through the host agent, a VM that moves, a host that goes away', { skip, timeout: 900_000 }, async (t) => {
  const dir = tmpDir(t, 'vmvault-cluster-');
  const size = 16 * MiB;
  // The agents may restore the VMs' disks (the rig's <dir>/disks) in place.
  const rig = await makeClusterRig(t, dir, { hosts: 3, vmsPerHost: 2, diskBytes: size, agentLostSeconds: 6, agentArgs: ['--in-place-dir', path.join(dir, 'disks')] });
  await rig.agentsLive();

  // The map: every host's VMs, by name and uuid, paused (-S: prelaunch).
  const map = (await rig.api('GET', '/cluster')).body;
  t.same(
    map.hosts.map((h: any) => [h.name, h.state, h.vms.map((v: any) => `${v.name}/${v.uuid}/${v.state}`)]),
    rig.hosts.map((h) => [h.name, 'ok', rig.vms.filter((v) => v.host === h).sort((a, b) => a.vmid - b.vmid).map((v) => `${v.name}/${v.uuid}/prelaunch`)]),
    'the map has every VM on its host',
  );
  t.same(map.hosts[0].vms[0].disks.map((d: any) => [d.device, d.format, d.sizeBytes]), [['vda', 'qcow2', size]]);
  // The same through the CLI (a user's process; the test's certificate is self-signed).
  const cli = (args: string[]) => runCli(['--url', `https://127.0.0.1:${new URL(rig.app.url).port}`, '--token', rig.app.token, ...args], { NODE_TLS_REJECT_UNAUTHORIZED: '0' });
  const c1 = await cli(['cluster']);
  t.equal(c1.code, 0, why(c1.code === 0, 'vmvault cluster exits 0', () => c1.stderr));
  t.match(c1.stdout, /node1\s+vm101\s+prelaunch\s+-\s+vda 16(\.0+)? MiB qcow2/, 'vmvault cluster shows the map');
  const c2 = await cli(['host', 'list']);
  t.match(c2.stdout, /node3\s+agent3\s+live/, 'vmvault host list');

  // vm101 on node1, added from the map.
  const vm = rig.vms.find((v) => v.name === 'vm101')!;
  const add = await rig.api('POST', '/vms', { name: 'vm101', fromCluster: true, workflow: 'crash-consistent' });
  t.equal(add.status, 201, why(add.status === 201, 'vm101 added from the map', () => JSON.stringify(add.body)));
  t.same([add.body.host, add.body.uuid, add.body.qmp], ['node1', vm.uuid, vm.q.qmp]);

  const model = new DiskModel(size);
  const write = async (socket: string, writes: Array<[number, number, number]>) => {
    const c = await QmpClient.connect(socket);
    try {
      for (const [p, off, len] of writes) await qemuIo(c, '/machine/peripheral/vda/virtio-backend', model.write(p, off, len));
    } finally {
      await c.close();
    }
  };
  const pointSha = async (point: string) => {
    const h = createHash('sha256');
    for await (const c of fs.createReadStream(path.join(rig.app.mount, 'vm101', '.snapshots', point, 'vda.raw'))) h.update(c as Buffer);
    return h.digest('hex');
  };
  const backup = async (name: string) => {
    const res = await rig.api('POST', `/vms/${name}/backups`, {});
    if (res.status !== 202) return { state: 'refused', error: res.body.error, log: [] };
    return rig.waitJob(res.body.job);
  };

  await write(vm.q.qmp, [[0x11, 0, 4 * MiB], [0x22, 9 * MiB, 1 * MiB]]);
  const j1 = await backup('vm101');
  t.equal(j1.state, 'succeeded', why(j1.state === 'succeeded', 'backup 1 through node1', () => `${JSON.stringify(j1.error)}\n${jobText(j1)}\n${rig.hosts[0].agent.log()}`));
  t.match(jobText(j1), /QMP through host node1's agent: agent:node1 unix:/);
  t.same(agentCopyFigures(j1)?.agents, ['agent1'], "node1's agent copied it");
  t.equal(await pointSha(j1.result.point), model.sha(), 'point 1 reads back equal');

  // The move: a change, a clean stop on node1 (persistent bitmaps written into the qcow2), and
  // the same disk and uuid started by a QEMU on node2.
  await write(vm.q.qmp, [[0x33, 2 * MiB, 256 * 1024]]);
  // What a backup killed on node1 leaves there: its scratch image in node1's agent's folder.
  const stale = path.join(rig.hosts[0].scratchDir, 'vm101');
  fs.mkdirSync(stale, { recursive: true });
  fs.writeFileSync(path.join(stale, 'fleece-0123456789abcdef-vda.qcow2'), Buffer.alloc(64 * 1024, 1));
  await vm.q.stop();
  const moved = await rig.startVm(rig.hosts[1], 'vm101', vm.uuid, 250, vm.disk, size);
  await write(moved.q.qmp, [[0x44, 12 * MiB, 128 * 1024]]);
  const map2 = (await rig.api('GET', '/cluster')).body;
  t.notOk(map2.hosts[0].vms.some((v: any) => v.uuid === vm.uuid), 'not on node1 any more');
  const there = map2.hosts[1].vms.find((v: any) => v.uuid === vm.uuid);
  t.same([there?.name, there?.qmp, there?.registered], ['vm101', moved.q.qmp, 'vm101'], 'on node2, recognised as the registered vm101');
  t.ok(there.load.dirtyBytes >= 384 * 1024, `the dirty bitmap travelled with the disk: ${there.load.dirtyBytes} dirty bytes`);

  const j2 = await backup('vm101');
  t.equal(j2.state, 'succeeded', why(j2.state === 'succeeded', 'backup 2 after the move', () => `${JSON.stringify(j2.error)}\n${jobText(j2)}\n${rig.hosts[1].agent.log()}`));
  t.match(jobText(j2), /VM vm101 moved: host node1 \(unix:[^)]*\/101\.qmp\) -> host node2 \(unix:[^)]*\/250\.qmp\)/);
  t.equal(j2.result.kind, 'incremental', 'the chain continues on the new host');
  const f2 = agentCopyFigures(j2)!;
  t.same(f2.agents, ['agent2'], "node2's agent copied it");
  t.ok(f2.read >= 384 * 1024 && f2.read < 4 * MiB, `the incremental read ${f2.read} bytes for a 384 KiB change`);
  t.equal(await pointSha(j2.result.point), model.sha(), 'point 2 reads back equal');
  const rec = (await rig.api('GET', '/vms/vm101')).body;
  t.same([rec.host, rec.qmp], ['node2', moved.q.qmp], 'the record follows the VM');
  // The backup on node2 cleared what the killed run left on node1, and forgot node1 then.
  t.notOk(fs.existsSync(stale), "the stale scratch on the former host node1 is gone");
  t.match(jobText(j2), /stale scratch of VM vm101 on its former host node1 \(agent agent1\) removed/);
  t.equal(rec.formerHosts, undefined, 'node1 is no longer remembered as holding scratch of vm101');

  // node3 goes away: its agent is killed.
  const add3 = await cli(['vm', 'add', 'vm301', '--from-cluster', '--workflow', 'crash-consistent']);
  t.equal(add3.code, 0, why(add3.code === 0, 'vm add vm301 --from-cluster', () => add3.stderr));
  t.match(add3.stdout, /Host\s+node3 \(uuid 00000003-0000-4000-8000-000000000001\)/);
  await rig.hosts[2].agent.kill('SIGKILL');
  await until('agent3 to be lost', async () => (await rig.api('GET', '/hosts')).body.hosts.find((h: any) => h.name === 'node3').agentState === 'lost');
  const map3 = (await rig.api('GET', '/cluster')).body;
  const n3 = map3.hosts.find((h: any) => h.name === 'node3');
  t.equal(n3.state, 'unreachable');
  t.match(n3.reason, /agent agent3 is lost/);
  t.same(n3.vms.map((v: any) => [v.name, v.state]), [['vm301', 'unknown'], ['vm302', 'unknown']], "node3's VMs are listed as unknown");
  t.same(map3.hosts.filter((h: any) => h.name !== 'node3').map((h: any) => h.state), ['ok', 'ok'], 'the other hosts answer');
  t.match((await cli(['cluster'])).stdout, /host node3 unreachable: agent agent3 is lost/, 'vmvault cluster says why');

  const [j3, j4] = await Promise.all([backup('vm301'), backup('vm101')]);
  t.equal(j3.state, 'failed', 'the backup of vm301 fails');
  t.match(j3.error?.message ?? '', /vm301 is skipped: its host node3 is unreachable \(agent agent3 is lost/);
  t.equal(j4.state, 'succeeded', why(j4.state === 'succeeded', 'vm101 backs up while node3 is away', () => `${JSON.stringify(j4.error)}\n${jobText(j4)}`));
  t.equal(await pointSha(j4.result.point), model.sha(), 'the other VM backs up meanwhile');

  // vm101 stopped on node2 and its first point restored in place: the disk file is on node2, so
  // node2's agent writes it (the bytes travel in its host requests, over its long-poll).
  await moved.q.stop();
  const want = await pointSha(j1.result.point);
  const rs = await rig.api('POST', '/vms/vm101/restores', { inPlace: true, point: j1.result.point });
  t.equal(rs.status, 202, why(rs.status === 202, 'in-place restore started', () => JSON.stringify(rs.body)));
  const j5 = await rig.waitJob(rs.body.job);
  t.equal(j5.state, 'succeeded', why(j5.state === 'succeeded', 'in-place restore through node2\'s agent', () => `${JSON.stringify(j5.error)}\n${jobText(j5)}\n${rig.hosts[1].agent.log()}`));
  t.match(jobText(j5), /vda: written beside .* \(qcow2\) on host node2 \(through agent agent2\)/);
  const raw = path.join(dir, 'vm101-check.raw');
  const conv = await runTool('qemu-img', ['convert', '-O', 'raw', vm.disk, raw]);
  t.equal(conv.code, 0, conv.stderr);
  t.equal(createHash('sha256').update(fs.readFileSync(raw)).digest('hex'), want, "vm101's disk is point 1's again");
  t.same(fs.readdirSync(path.dirname(vm.disk)).filter((f) => f.includes('vmvault-restore')), [], 'no partial file');
});
