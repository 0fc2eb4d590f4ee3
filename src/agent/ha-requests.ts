// The HA plug-in's host requests (issue 13; protocol in README.md, "Host requests"): an agent
// started with `--pacemaker` on a Pacemaker cluster node answers
//   ha-state     {}                                          -> HaClusterState
//   ha-set-role  { resource, role: Started|Stopped, timeoutMs } -> HaResourceState once reached
// with the Pacemaker plug-in run on its own node. The appliance checks every answer
// (src/backup/host-ha.ts); the args are checked here, since a bug there must not make this
// agent run crm_resource with something odd.

import { vmError } from '../errors.js';
import type { HaControl } from '../plugins/pacemaker/pacemaker.js';
import { checkResourceId } from '../plugins/pacemaker/pacemaker.js';
import type { HostRequestTable } from './host-requests.js';

export const HA_STATE = 'ha-state';
export const HA_SET_ROLE = 'ha-set-role';

export function registerHaRequests(table: HostRequestTable, ha: Pick<HaControl, 'state' | 'setRole'>): void {
  table.register(HA_STATE, async () => ha.state());
  table.register(HA_SET_ROLE, async (args, ctx) => {
    const a = args as { resource?: unknown; role?: unknown; timeoutMs?: unknown } | null;
    if (a === null || typeof a !== 'object') throw vmError('INVALID_ARGUMENT', `${HA_SET_ROLE} takes { resource, role }`);
    checkResourceId(a.resource);
    if (a.role !== 'Started' && a.role !== 'Stopped') throw vmError('INVALID_ARGUMENT', `${HA_SET_ROLE}: role must be Started or Stopped`);
    // Leave the answer time to travel back before the appliance stops waiting.
    const asked = typeof a.timeoutMs === 'number' && Number.isInteger(a.timeoutMs) && a.timeoutMs > 0 ? a.timeoutMs : ctx.timeoutMs;
    const timeoutMs = Math.max(1000, Math.min(asked, ctx.timeoutMs - 2000));
    return ha.setRole(a.resource, a.role, { timeoutMs });
  });
}
