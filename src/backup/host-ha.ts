// A cluster manager reached through a host's agent (issue 13): the agent runs the Pacemaker
// plug-in on its node (`vmvault agent --pacemaker`, src/agent/ha-requests.ts) and this side
// asks it over host requests. The answers are untrusted: checked field by field (checkHaState),
// a malformed one is refused with the path of the bad field.

import { vmError } from '../errors.js';
import { resourceOfVm } from '../plugins/pacemaker/crm-xml.js';
import type { HaClusterState, HaResourceState } from '../plugins/pacemaker/ha-state.js';
import type { HaControl, TargetRole } from '../plugins/pacemaker/pacemaker.js';
import type { AgentPool } from './agent-pool.js';

export const HA_STATE = 'ha-state';
export const HA_SET_ROLE = 'ha-set-role';

const MAX_NODES = 64;
const MAX_RESOURCES = 4096;
const NAME = /^[A-Za-z0-9_][A-Za-z0-9_.:@-]{0,254}$/;

class Bad extends Error {}

function obj(v: unknown, at: string): Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Bad(`${at} is not an object`);
  return v as Record<string, unknown>;
}
function str(v: unknown, at: string, re?: RegExp): string {
  if (typeof v !== 'string' || v.length > 255 || (re !== undefined && !re.test(v))) throw new Bad(`${at} is not a valid string`);
  return v;
}
function bool(v: unknown, at: string): boolean {
  if (typeof v !== 'boolean') throw new Bad(`${at} is not true or false`);
  return v;
}

export function checkHaResource(v: unknown, at = 'resource'): HaResourceState {
  const o = obj(v, at);
  return {
    resource: str(o.resource, `${at}.resource`, NAME),
    ...(o.vm !== undefined ? { vm: str(o.vm, `${at}.vm`, /^[^/\0]{1,255}$/) } : {}),
    agent: str(o.agent, `${at}.agent`),
    role: str(o.role, `${at}.role`, /^[A-Za-z]{1,32}$/),
    ...(o.targetRole !== undefined ? { targetRole: str(o.targetRole, `${at}.targetRole`, /^[A-Za-z]{1,32}$/) } : {}),
    managed: bool(o.managed, `${at}.managed`),
    failed: bool(o.failed, `${at}.failed`),
    ...(o.node !== undefined ? { node: str(o.node, `${at}.node`, NAME) } : {}),
  };
}

export function checkHaState(v: unknown): HaClusterState {
  try {
    const o = obj(v, 'answer');
    if (!Array.isArray(o.nodes) || o.nodes.length > MAX_NODES) throw new Bad(`answer.nodes is not a list of at most ${MAX_NODES}`);
    if (!Array.isArray(o.resources) || o.resources.length > MAX_RESOURCES) throw new Bad(`answer.resources is not a list of at most ${MAX_RESOURCES}`);
    return {
      ...(o.cluster !== undefined ? { cluster: str(o.cluster, 'answer.cluster') } : {}),
      ...(o.dc !== undefined ? { dc: str(o.dc, 'answer.dc', NAME) } : {}),
      quorate: bool(o.quorate, 'answer.quorate'),
      nodes: o.nodes.map((n, i) => {
        const x = obj(n, `answer.nodes[${i}]`);
        return { name: str(x.name, `answer.nodes[${i}].name`, NAME), online: bool(x.online, `answer.nodes[${i}].online`) };
      }),
      resources: o.resources.map((r, i) => checkHaResource(r, `answer.resources[${i}]`)),
    };
  } catch (err) {
    if (err instanceof Bad) throw new Error(err.message);
    throw err;
  }
}

/** HaControl through `agent` (the agent on one node of the cluster). */
export class HostHa implements HaControl {
  constructor(
    private readonly pool: Pick<AgentPool, 'request'>,
    private readonly agent: string,
    private readonly opts: { timeoutMs?: number; roleTimeoutMs?: number } = {},
  ) {}

  state(): Promise<HaClusterState> {
    return this.pool.request(this.agent, HA_STATE, {}, this.opts.timeoutMs ?? 20_000, checkHaState);
  }

  /** Undefined also when the agent does not handle HA (no --pacemaker: not a cluster node). */
  async resourceOf(vm: string): Promise<HaResourceState | undefined> {
    let state: HaClusterState;
    try {
      state = await this.state();
    } catch (err) {
      if ((err as { details?: { hostReason?: string } }).details?.hostReason === 'not-supported') return undefined;
      throw err;
    }
    return resourceOfVm(state, vm);
  }

  async setRole(resource: string, role: TargetRole, o: { timeoutMs?: number } = {}): Promise<HaResourceState> {
    if (role !== 'Started' && role !== 'Stopped') throw vmError('INVALID_ARGUMENT', `target-role must be Started or Stopped, not ${String(role)}`);
    const roleMs = o.timeoutMs ?? this.opts.roleTimeoutMs ?? 30_000;
    // The agent's own wait is roleMs; the request waits that plus its own margin.
    return this.pool.request(this.agent, HA_SET_ROLE, { resource, role, timeoutMs: roleMs }, roleMs + 5_000, (r) => {
      try {
        return checkHaResource(r, 'answer');
      } catch (err) {
        throw new Error((err as Error).message);
      }
    });
  }
}
