// App-consistent backup of a VM on a host (issue 13): its guest agent's socket is on that host,
// so the guest is frozen and thawed through the host's agent (qga-open/-execute/-close), as its
// QMP is relayed.
// - the agent relays only the backup's commands, and only on its own sockets (FORBIDDEN else);
// - a real test guest (TCG) whose QMP and guest-agent sockets the agent of a host (network
//   namespace) serves (--qmp, --qga): an app-consistent backup through that agent freezes the
//   guest's file systems and thaws them (the job log, the agent's log, the guest's status after).

import path from 'node:path';
import t from 'tap';
import { HostRequestTable } from '../src/agent/host-requests.js';
import { QgaRequests } from '../src/agent/qga-requests.js';
import { makeClusterRig } from './helpers/cluster-rig.js';
import { bootGuest, guestUnavailable } from './helpers/guest.js';
import { netnsAvailable } from './helpers/netns.js';
import { tmpDir } from './helpers/tmpdir.js';

process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';

function jobText(job: any): string {
  return (job.log ?? []).map((l: any) => (typeof l === 'string' ? l : l.message)).join('\n');
}

t.test("the agent relays only a backup's guest-agent commands, on its own sockets", async (t) => {
  const dir = tmpDir(t, 'vmvault-qgareq-');
  const table = new HostRequestTable();
  const q = new QgaRequests({ qmpDirs: [path.join(dir, 'qemu-server')], qgaSockets: ['unix:/run/vm7/qga.sock'] });
  t.teardown(() => q.stop());
  q.register(table);
  const stop = new AbortController().signal;
  const code = async (kind: string, args: unknown) => {
    const a = await table.run({ v: 1, id: 'x', kind, args, timeoutMs: 5000 }, stop);
    return a.ok ? 'ok' : a.error.code;
  };
  t.equal(await code('qga-open', { address: 'unix:/etc/passwd' }), 'FORBIDDEN', 'a socket it does not serve');
  t.equal(await code('qga-open', { address: `unix:${path.join(dir, 'qemu-server', '101.qmp')}` }), 'FORBIDDEN', 'a QMP socket is not a guest agent');
  t.equal(await code('qga-open', { address: `unix:${path.join(dir, 'qemu-server', '..', 'x.qga')}` }), 'FORBIDDEN', 'not normalised');
  t.equal(await code('qga-open', { address: 'relative.qga' }), 'INVALID_ARGUMENT');
  t.equal(await code('qga-execute', { session: 'nope', command: 'guest-exec' }), 'FORBIDDEN', 'guest-exec is never relayed');
  t.equal(await code('qga-execute', { session: 'nope', command: 'guest-file-open' }), 'FORBIDDEN', 'nor file access');
  t.equal(await code('qga-execute', { session: 'nope', command: 'guest-ping' }), 'NOT_FOUND', 'an unknown session');
  t.equal(await code('qga-close', { session: 'nope' }), 'ok');
});

const skip = netnsAvailable() ?? guestUnavailable() ?? undefined;

t.test('an app-consistent backup of a VM on a host freezes its guest through the host agent', { skip, timeout: 900_000 }, async (t) => {
  const dir = tmpDir(t, 'vmvault-hqga-');
  const rig = await makeClusterRig(t, dir, { hosts: 1, vmsPerHost: 0 });
  const g = await bootGuest(t, { dir: path.join(dir, 'guest') });
  const host = rig.hosts[0];
  // The guest's sockets are this host's: its agent serves them (and the appliance never opens them).
  host.agentArgs = ['--qmp', g.qmp, '--qga', g.qga!];
  await host.agent.kill();
  host.startAgent();
  await rig.agentsLive();
  const end = Date.now() + 60_000;
  let add: { status: number; body: any };
  for (;;) {
    add = await rig.api('POST', '/vms', { name: 'vmvault-test-guest', fromCluster: true, qga: g.qga, workflow: 'app-consistent' });
    if (add.status === 201 || Date.now() > end) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  t.equal(add.status, 201, JSON.stringify(add.body));
  t.equal(add.body.host, 'node1');

  const res = await rig.api('POST', '/vms/vmvault-test-guest/backups', {});
  t.equal(res.status, 202, JSON.stringify(res.body));
  const job = await rig.waitJob(res.body.job, 600_000);
  const text = jobText(job);
  t.equal(job.state, 'succeeded', job.state === 'succeeded' ? 'the app-consistent backup succeeds' : `${JSON.stringify(job.error)}\n${text}\n${host.agent.log()}`);
  t.match(text, /quiesce-vm \(plug-in qemu\): ok/, 'quiesce-vm ran');
  t.match(text, /guest frozen \d+ ms/);
  t.match(host.agent.log(), /guest-agent session \S+: guest-fsfreeze-freeze: [1-9]/, "the guest's file systems were frozen through the host's agent");
  t.match(host.agent.log(), /guest-agent session \S+: guest-fsfreeze-thaw: [1-9]/, 'and thawed');
  t.match(host.agent.log(), new RegExp(`guest-agent session \\S+ opened on unix:${g.qgaPath!.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`), "through the host's agent");
  t.match(host.agent.log(), /guest-agent session \S+ on \S+: closed by the appliance/, 'the session is closed after');
  t.equal(await g.agent('guest-fsfreeze-status'), 'thawed', 'the guest runs thawed after');
});
