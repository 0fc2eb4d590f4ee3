// The Pacemaker plug-in against a real three-node cluster (corosync + pacemakerd in network
// namespaces, test/helpers/pacemaker.ts): the state it reads, taking a resource offline and
// back, the clear errors for an unknown resource and a role that never comes, and a node that
// dies: its resource is restarted on another node, and the plug-in sees it there.

import t from 'tap';
import { isVmvaultError } from '../src/errors.js';
import { localRunner } from '../src/plugins/pacemaker/command-runner.js';
import { Pacemaker } from '../src/plugins/pacemaker/pacemaker.js';
import { pacemakerAvailable, startPacemakerCluster } from './helpers/pacemaker.js';

const skip = pacemakerAvailable();

t.test('state, stop and start, errors, failover', { skip, timeout: 240_000 }, async (t) => {
  const cluster = await startPacemakerCluster(t);
  await cluster.addDummy('res-web01', 'web01', { node: 'node2' });
  await cluster.addDummy('db01', undefined, { node: 'node3' });
  await cluster.waitFor('both resources started', (x) => (x.match(/role="Started"/g) ?? []).length === 2);
  const pm = new Pacemaker({ run: localRunner(cluster.node('node1').prefix), roleTimeoutMs: 20_000 });

  const s = await pm.state();
  t.ok(s.dc !== undefined && ['node1', 'node2', 'node3'].includes(s.dc), `a DC: ${s.dc}`);
  t.equal(s.quorate, true);
  t.same(s.nodes, [
    { name: 'node1', online: true },
    { name: 'node2', online: true },
    { name: 'node3', online: true },
  ]);
  t.same(await pm.resourceOf('web01'), { resource: 'res-web01', vm: 'web01', agent: 'ocf:pacemaker:Dummy', role: 'Started', managed: true, failed: false, node: 'node2' });
  t.same(await pm.resourceOf('db01'), { resource: 'db01', agent: 'ocf:pacemaker:Dummy', role: 'Started', managed: true, failed: false, node: 'node3' });

  // Offline and back, read from another node than the one that runs it.
  const stopped = await pm.setRole('res-web01', 'Stopped');
  t.same([stopped.role, stopped.node, stopped.targetRole], ['Stopped', undefined, 'Stopped']);
  const started = await pm.setRole('res-web01', 'Started');
  t.same([started.role, started.node, started.targetRole], ['Started', 'node2', 'Started']);

  await t.rejects(pm.setRole('nosuch', 'Stopped'), { code: 'NOT_FOUND', message: /the cluster has no resource nosuch \(it has: res-web01, db01\)/ });
  await t.rejects(pm.setRole('bad id;rm', 'Stopped'), { code: 'INVALID_ARGUMENT' });

  // A resource the cluster may not touch never stops: a bounded wait and the cluster's word.
  await cluster.exec(['crm_resource', '--resource', 'db01', '--meta', '--set-parameter', 'is-managed', '--parameter-value', 'false']);
  const t0 = Date.now();
  const err = await pm.setRole('db01', 'Stopped', { timeoutMs: 2_000 }).catch((e) => e);
  t.ok(isVmvaultError(err, 'TIMEOUT'), `TIMEOUT: ${(err as Error).message}`);
  t.match((err as Error).message, /^resource db01 did not stop within 2 s; the cluster says Started on node3 \(target-role Stopped, unmanaged\)$/);
  t.ok(Date.now() - t0 < 8_000, 'the wait is bounded');
  await cluster.exec(['crm_resource', '--resource', 'db01', '--meta', '--delete-parameter', 'is-managed']);
  await pm.setRole('db01', 'Started');

  // Failover: node2 loses power; the cluster restarts web01 elsewhere, and the plug-in sees it.
  const f0 = Date.now();
  await cluster.kill(cluster.node('node2'));
  const moved = await pm.waitRole('res-web01', 'Started', 60_000).then(async function again(r): Promise<typeof r> {
    if (r.node !== 'node2') return r;
    await new Promise((res) => setTimeout(res, 250));
    return pm.waitRole('res-web01', 'Started', 60_000).then(again);
  });
  t.ok(moved.node === 'node1' || moved.node === 'node3', `web01 restarted on ${moved.node} in ${((Date.now() - f0) / 1000).toFixed(1)} s`);
  const after = await pm.state();
  t.same(after.nodes.find((n) => n.name === 'node2'), { name: 'node2', online: false }, 'node2 is offline');
  t.equal(after.quorate, true, 'two of three keep quorum');
  t.equal((await pm.resourceOf('web01'))?.vm, 'web01');
});

t.test('no cluster on the host: a clear error', { skip }, async (t) => {
  // The tools run, but no pacemakerd answers (this host runs none).
  const pm = new Pacemaker({ commandTimeoutMs: 10_000 });
  await t.rejects(pm.state(), { code: 'PLUGIN_FAILED', message: /^pacemaker: crm_mon failed/ });
  // A host without Pacemaker's tools at all.
  const none = new Pacemaker({ run: localRunner(['env', 'PATH=/nonexistent']) });
  await t.rejects(none.state(), { message: /crm_mon|No such file/ });
});
