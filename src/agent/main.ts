// `vmvault agent --appliance URL --token T --name N [--pin SHA256] [--streams N] [--reach PREFIX]...`
// (bin/vmvault.js sends it here; `vmvault agent list` and `agent token ...` are the CLI's). Loads
// only the agent: its control client, sources, and the transfer sender.
//
// Exit codes: 0 stopped by SIGTERM/SIGINT, 2 usage, 4 the token was refused, 1 anything else.

import { parseArgs } from 'node:util';
import { Agent, AgentRefused } from './agent.js';
import { hostRequests } from './host-requests.js';
import { QemuRequests } from './qemu-requests.js';
import { registerHaRequests } from './ha-requests.js';
import { DEFAULT_SCRATCH_DIR, ScratchRequests } from './scratch-requests.js';
import { InPlaceRequests } from './in-place-requests.js';
import { QgaRequests } from './qga-requests.js';
import { Pacemaker } from '../plugins/pacemaker/pacemaker.js';

/** The agent's version as it registers (package.json's). */
export const AGENT_VERSION = '0.1.0';

const USAGE = `usage: vmvault agent --appliance URL --token TOKEN --name NAME [--pin SHA256] [--streams N]
                     [--reach PREFIX]... [--qmp-dir DIR]... [--qmp SOCKET]... [--pacemaker]
                     [--qga SOCKET]... [--scratch-dir DIR] [--in-place-dir DIR]...

Runs an agent near the hypervisors: it registers with the appliance at URL, takes copy tasks
(a VM disk's fleecing NBD export, a file or a block device), segments and fingerprints the
bytes here and sends only the segments the appliance lacks.
  --token    an agent token (vmvault agent token create NAME); or $VMVAULT_AGENT_TOKEN
  --name     this agent's name, as VMs name it (vmvault vm add ... --agent NAME)
  --pin      the appliance certificate's SHA-256 fingerprint (hex, colons allowed): the
             certificate is checked against it, not against a CA
  --streams  tasks at once (default 2)
  --reach    a source address prefix this agent can read (unix:/run/qemu/, tcp:10.1.,
             file:/dev/); repeatable; '*' for any. Without it the agent takes only the tasks
             of VMs that name it.
  --qmp-dir  a folder whose *.qmp sockets are this host's QEMU VMs (Proxmox VE:
             /var/run/qemu-server); repeatable. The appliance discovers the VMs through the
             agent (vmvault cluster) and drives their QMP through it (vmvault host add).
  --qmp      one QMP socket (unix:/path or /path) of a VM on this host; repeatable
  --qga      one guest-agent socket of a VM on this host (the --qmp-dir folders' *.qga sockets
             are served too): an app-consistent backup freezes the guest through it; repeatable
  --scratch-dir  where a backup of a VM on this host keeps its fleecing scratch images and
             QEMU's NBD socket (default ${DEFAULT_SCRATCH_DIR}); the appliance may make and
             remove files only inside it
  --in-place-dir  a folder holding VM disk files that restore --in-place may replace, through
             this agent, with a restore point's; repeatable; none by default (then this host's
             VMs can be restored only with --to)
  --pacemaker  this host is a Pacemaker cluster node: the appliance reads the cluster's HA
             state through this agent (vmvault cluster) and takes a VM's resource offline and
             back around restore --in-place (crm_mon, cibadmin, crm_resource run here)
SIGTERM or SIGINT stops it; its running copies go to another agent, which resumes them.`;

export async function main(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        appliance: { type: 'string' },
        token: { type: 'string' },
        name: { type: 'string' },
        pin: { type: 'string' },
        streams: { type: 'string' },
        reach: { type: 'string', multiple: true },
        'qmp-dir': { type: 'string', multiple: true },
        qmp: { type: 'string', multiple: true },
        pacemaker: { type: 'boolean' },
        'scratch-dir': { type: 'string' },
        'in-place-dir': { type: 'string', multiple: true },
        qga: { type: 'string', multiple: true },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    process.stderr.write(`vmvault agent: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const token = values.token ?? process.env.VMVAULT_AGENT_TOKEN;
  const missing = [values.appliance === undefined && '--appliance', token === undefined && '--token', values.name === undefined && '--name'].filter(Boolean);
  if (missing.length > 0) {
    process.stderr.write(`vmvault agent: ${missing.join(', ')} required\n${USAGE}\n`);
    return 2;
  }
  const streams = values.streams === undefined ? 2 : Number(values.streams);
  if (!Number.isInteger(streams) || streams < 1 || streams > 64) {
    process.stderr.write('vmvault agent: --streams must be an integer from 1 to 64\n');
    return 2;
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(values.name!)) {
    process.stderr.write(`vmvault agent: --name ${JSON.stringify(values.name)} is not 1 to 64 letters, digits, '.', '_' or '-'\n`);
    return 2;
  }
  const log = (line: string) => process.stderr.write(`${new Date().toISOString()} vmvault agent ${values.name}: ${line}\n`);
  let agent: Agent;
  let qemu: QemuRequests;
  let qga: QgaRequests;
  try {
    qemu = new QemuRequests({ qmpDirs: values['qmp-dir'] ?? [], qmpSockets: values.qmp ?? [], log });
    qemu.register(hostRequests);
    qga = new QgaRequests({ qmpDirs: values['qmp-dir'] ?? [], qgaSockets: values.qga ?? [], log });
    qga.register(hostRequests);
    new ScratchRequests(values['scratch-dir'] ?? DEFAULT_SCRATCH_DIR, log).register(hostRequests);
    new InPlaceRequests(values['in-place-dir'] ?? [], log).register(hostRequests);
    if (values.pacemaker === true) registerHaRequests(hostRequests, new Pacemaker());
    agent = new Agent({
      appliance: values.appliance!,
      token: token!,
      name: values.name!,
      ...(values.pin !== undefined ? { pinSha256: values.pin } : {}),
      streams,
      reach: values.reach ?? [],
      version: AGENT_VERSION,
      log,
      requests: hostRequests,
    });
  } catch (err) {
    process.stderr.write(`vmvault agent: ${(err as Error).message}\n`);
    return 2;
  }
  const onSignal = (sig: string) => {
    log(`${sig}: stopping`);
    void agent.stop();
  };
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));
  try {
    await agent.run();
    await qemu.stop();
    await qga.stop();
    log(`stopped (${agent.totals.tasksDone} task(s) done, ${agent.totals.tasksFailed} failed)`);
    return 0;
  } catch (err) {
    if (err instanceof AgentRefused) return 4;
    log(`failed: ${(err as Error).stack ?? String(err)}`);
    return 1;
  }
}
