// How the backup opens a VM's QMP monitor (issue 13; the roster's contract, which group and ha
// call): a VM on a host (`host` in its record) gets a channel relayed through that host's agent
// (host-qmp.ts); any other connects to its socket directly (QmpClient).

import { vmError } from '../errors.js';
import { QmpClient } from '../plugins/qemu/qmp.js';
import type { QmpChannel } from '../plugins/qemu/qmp-channel.js';
import type { AgentPool } from './agent-pool.js';
import { HostQmpChannel } from './host-qmp.js';
import type { VmConfig } from './vm-registry.js';

export type QmpOpener = (vm: Pick<VmConfig, 'name' | 'qmp' | 'host'>) => Promise<QmpChannel>;

export interface QmpOpenerOptions {
  /** The agents (absent: a VM on a host cannot be reached; NOT_SUPPORTED says so). */
  pool?: AgentPool;
  /** The agent of a host (hosts.json); NOT_FOUND for an unknown host. */
  agentOf?: (host: string) => string;
  /** Connect and command timeout. Default 10 s. */
  timeoutMs?: number;
}

export function makeQmpOpener(o: QmpOpenerOptions = {}): QmpOpener {
  return async (vm) => {
    if (vm.host === undefined) return QmpClient.connect(vm.qmp, { timeoutMs: o.timeoutMs });
    if (o.pool === undefined || o.agentOf === undefined) {
      throw vmError('NOT_SUPPORTED', `VM ${vm.name} is on host ${vm.host}, reached through its agent, but this appliance runs no agent pool or host list`, { vm: vm.name });
    }
    const agent = o.agentOf(vm.host);
    return HostQmpChannel.open(o.pool, { host: vm.host, agent, socket: vm.qmp, timeoutMs: o.timeoutMs });
  };
}

/** What backup-service does without a host list: every VM's socket directly. */
export const directQmpOpener: QmpOpener = (vm) => QmpClient.connect(vm.qmp);
