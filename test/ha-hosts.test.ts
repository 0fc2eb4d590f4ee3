// HA through the hosts' agents (issue 13), against a real three-node Pacemaker cluster
// (test/helpers/pacemaker.ts) and a real paused QEMU: each node has an agent whose host-request
// table holds the real QEMU requests and the HA requests (src/agent/ha-requests.ts) with the
// Pacemaker plug-in run in that node's namespaces. The HTTP hop between agent and pool is left
// out (an in-process loop polls the real AgentPool as the agent's long-poll does; the hosts
// netns test covers the wire).
// - HostHa reads the state and takes a resource offline and back through an agent;
// - the cluster map carries each VM's resource (role, node), and after a node dies, where the
//   cluster restarted it; a malformed ha-state answer is a host problem, not a half-read map;
// - an in-place restore of the HA VM routes offline/online through the VM's host agent.

import path from 'node:path';
import fs from 'node:fs';
import t from 'tap';
import { HostRequestTable } from '../src/agent/host-requests.js';
import { registerHaRequests } from '../src/agent/ha-requests.js';
import { QemuRequests } from '../src/agent/qemu-requests.js';
import { AgentPool } from '../src/backup/agent-pool.js';
import { BackupService } from '../src/backup/backup-service.js';
import { ClusterMap } from '../src/backup/cluster-map.js';
import type { HostRequest } from '../src/backup/host-requests.js';
import { checkHaState, HostHa } from '../src/backup/host-ha.js';
import { localRunner } from '../src/plugins/pacemaker/command-runner.js';
import { Pacemaker } from '../src/plugins/pacemaker/pacemaker.js';
import { QmpClient } from '../src/plugins/qemu/qmp.js';
import { DiskModel, progress, vmLookup } from './helpers/backup.js';
import { openNs } from './helpers/ns.js';
import { pacemakerAvailable, startPacemakerCluster } from './helpers/pacemaker.js';
import { qemuIo, startQemu } from './helpers/qemu.js';
import { tmpDir } from './helpers/tmpdir.js';

type Answer = { ok: boolean; result?: unknown; error?: { code: string; message: string } };

/** An agent's poll loop, in process (as test/host-requests.test.ts). */
function agentLoop(t: { teardown(fn: () => unknown): void }, pool: AgentPool, name: string, table: HostRequestTable, tamper?: (r: HostRequest, a: Answer) => Answer): void {
  pool.register({ name, version: 'test', hostname: name.replace(/^agent-/, ''), addresses: [], streams: 1, reach: [], requests: table.kinds() }, '127.0.0.1');
  const ac = new AbortController();
  void (async () => {
    while (!ac.signal.aborted) {
      try {
        await pool.poll(name, 200, [], ac.signal);
        for (const r of pool.takeRequests(name)) {
          void table.run(r, ac.signal).then((a) => {
            if (!ac.signal.aborted) pool.answerRequest(name, r.id, tamper ? tamper(r, a as Answer) : a);
          });
        }
      } catch {
        return;
      }
    }
  })();
  t.teardown(() => ac.abort());
}

const MiB = 1024 * 1024;

t.test('HA state and roles through the agents, in the cluster map, around an in-place restore', { skip: pacemakerAvailable(), timeout: 300_000 }, async (t) => {
  const cluster = await startPacemakerCluster(t);
  await cluster.addDummy('vm-web01', 'web01', { node: 'node3' });
  await cluster.waitFor('vm-web01 started', (x) => /<resource id="vm-web01"[^>]*role="Started"/.test(x));

  const dir = tmpDir(t, 'vmvault-hahosts-');
  const disk = path.join(dir, 'web01.qcow2');
  let q = await startQemu({ t, dir, name: 'web01', disks: [{ device: 'vda', file: disk, sizeBytes: 8 * MiB }] });

  const pool = new AgentPool({ lostAfterMs: 5000 });
  t.teardown(() => pool.close());
  let tamper = false;
  const qemus: QemuRequests[] = [];
  for (const n of cluster.nodes) {
    const table = new HostRequestTable();
    // The VM's QMP socket belongs to host node2 (its agent alone discovers it).
    const qr = new QemuRequests({ qmpDirs: [], qmpSockets: n.name === 'node2' ? [q.qmpPath] : [], log: () => {} });
    qemus.push(qr);
    qr.register(table);
    registerHaRequests(table, new Pacemaker({ run: localRunner(n.prefix), roleTimeoutMs: 20_000 }));
    agentLoop(t, pool, `agent-${n.name}`, table, (r, a) => (tamper && r.kind === 'ha-state' && n.name === 'node1' && a.ok ? { ok: true, result: { ...(a.result as object), quorate: 'yes' } } : a));
  }
  t.teardown(() => Promise.all(qemus.map((x) => x.stop())));

  // HostHa through node1's agent.
  const ha1 = new HostHa(pool, 'agent-node1', { roleTimeoutMs: 20_000 });
  const s = await ha1.state();
  t.same(s.nodes.map((n) => `${n.name}:${n.online}`), ['node1:true', 'node2:true', 'node3:true']);
  t.same(await ha1.resourceOf('web01'), { resource: 'vm-web01', vm: 'web01', agent: 'ocf:pacemaker:Dummy', role: 'Started', managed: true, failed: false, node: 'node3' });
  const off = await ha1.setRole('vm-web01', 'Stopped');
  t.same([off.role, off.node], ['Stopped', undefined], 'offline through the agent');
  const on = await new HostHa(pool, 'agent-node2').setRole('vm-web01', 'Started');
  t.same([on.role, on.node], ['Started', 'node3'], 'back online through another node\'s agent');
  await t.rejects(ha1.setRole('nosuch', 'Stopped'), { code: 'NOT_FOUND', message: /the cluster has no resource nosuch/ });
  await t.rejects(ha1.setRole('bad id', 'Stopped'), { code: 'INVALID_ARGUMENT' }, 'the agent checks the args too');
  t.throws(() => checkHaState({ quorate: true, nodes: [{ name: '../x', online: true }], resources: [] }), /answer.nodes\[0\].name is not a valid string/);

  // The cluster map: web01 on host node2, its resource running on node3.
  const hosts = cluster.nodes.map((n) => ({ name: n.name, agent: `agent-${n.name}`, createdAt: new Date().toISOString() }));
  const map = new ClusterMap({ pool, hosts: () => hosts, registered: () => [{ name: 'web01', qmp: q.qmp }] });
  const v1 = await map.refresh();
  const web = v1.hosts.find((h) => h.name === 'node2')!.vms.find((v) => v.name === 'web01');
  t.same(web?.ha, { resource: 'vm-web01', vm: 'web01', agent: 'ocf:pacemaker:Dummy', role: 'Started', targetRole: 'Started', managed: true, failed: false, node: 'node3' }, 'the map shows the VM\'s resource');

  // A malformed answer: that host's problem, the others still fill the map.
  tamper = true;
  const v2 = await map.refresh();
  tamper = false;
  t.match(v2.hosts.find((h) => h.name === 'node1')!.problems.join('\n'), /HA state: agent agent-node1 answered ha-state with something malformed: answer.quorate is not true or false/);
  t.equal(v2.hosts.find((h) => h.name === 'node2')!.vms.find((v) => v.name === 'web01')?.ha?.node, 'node3');

  // node3 loses power: the next map shows the resource where the cluster put it.
  await cluster.kill(cluster.node('node3'));
  let moved: string | undefined;
  for (let i = 0; i < 120 && (moved === undefined || moved === 'node3'); i++) {
    await new Promise((r) => setTimeout(r, 500));
    const v = await map.refresh({ timeoutMs: 10_000 });
    const h = v.hosts.find((x) => x.name === 'node2')!.vms.find((x) => x.name === 'web01')?.ha;
    moved = h?.role === 'Started' ? h.node : undefined;
  }
  t.ok(moved === 'node1' || moved === 'node2', `after node3 died, the map shows vm-web01 started on ${moved}`);
  const v3 = await map.refresh({ timeoutMs: 10_000 });
  // (Its agent here runs in-process, so it still answers: its Pacemaker tools no longer can.)
  t.match(v3.hosts.find((h) => h.name === 'node3')!.problems.join('\n'), /^HA state: /m, 'the dead node\'s HA state is a problem of its host, said');

  // In-place restore of the HA VM, its resource offline and back through its host's agent.
  const { ns } = await openNs(t, path.join(dir, 'store'));
  const data = path.join(dir, 'data');
  fs.mkdirSync(data);
  fs.writeFileSync(path.join(data, 'workflows.yaml'), 'workflows:\n  crash:\n    - snapshot\n    - copy\n');
  const vm = { name: 'web01', share: 'web01', qmp: q.qmp, workflow: 'crash' };
  const svc = new BackupService(ns, vmLookup([vm]), { dataDir: data, vmStopWaitMs: 15_000, haFor: () => new HostHa(pool, 'agent-node2', { roleTimeoutMs: 20_000 }) });
  const model = new DiskModel(8 * MiB);
  const c = await QmpClient.connect(q.qmp);
  await qemuIo(c, q.qdevOf('vda'), model.write(0x42, 0, MiB));
  await c.close();
  const rec = await svc.backup('web01', {}, progress());
  // The stand-in for a VirtualDomain agent: QEMU stops when its resource is reported Stopped.
  const watcher = (async () => {
    for (let i = 0; i < 400; i++) {
      if ((await ha1.resourceOf('web01').catch(() => undefined))?.role === 'Stopped') return q.stop();
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const p = progress();
  const res = await svc.restoreInPlace('web01', { point: rec.point }, p);
  await watcher;
  t.same(res.files, [disk]);
  t.equal(res.ha?.resource, 'vm-web01');
  t.match(res.ha?.after, /^Started on node[12]$/);
  t.match(p.lines.join('\n'), /taking cluster resource vm-web01 offline[\s\S]*is Stopped[\s\S]*is now the point[\s\S]*cluster resource vm-web01 is Started on node[12]/);
  q = await startQemu({ t, dir, name: 'web01', disks: [{ device: 'vda', file: disk }] });
  t.ok(q.pid > 0, 'QEMU opens the restored disk');
});
