// The Pacemaker plug-in: reads a cluster's high-availability state and takes a VM's resource
// offline and back (issue 13), with Pacemaker's own tools run on a cluster node through a
// CommandRunner (this host, a host's agent, or a node's namespaces in the tests).
//
//   state()          crm_mon -1 --output-as=xml  +  cibadmin --query --scope resources
//   setRole(R, X)    crm_resource --resource R --set-parameter target-role --meta
//                      --parameter-value X, then polls state() until R's role is X (bounded)
//
// Every command has a deadline; a role that does not come within it is a TIMEOUT that says what
// the cluster reports instead ("resource db01 did not stop within 30 s; the cluster says Started
// on node2, failed").

import { vmError } from '../../errors.js';
import { type CommandRunner, fmtSeconds, localRunner } from './command-runner.js';
import { ID_PATTERN, parseCrmMon, resourceOfVm, resourceVms } from './crm-xml.js';
import type { HaClusterState, HaResourceState } from './ha-state.js';

export type TargetRole = 'Started' | 'Stopped';

export interface PacemakerOptions {
  /** Where the tools run. Default: this host. */
  run?: CommandRunner;
  /** Deadline of one tool run. Default 15 s. */
  commandTimeoutMs?: number;
  /** How long setRole waits for the role. Default 30 s. */
  roleTimeoutMs?: number;
  /** Poll interval while waiting. Default 250 ms (a Dummy's stop shows in 0.2-0.3 s). */
  pollMs?: number;
}

/** What the rest of vmvault needs of a cluster manager (the agent relays the same calls). */
export interface HaControl {
  state(): Promise<HaClusterState>;
  /** The resource of a VM, undefined when the VM is no cluster resource. */
  resourceOf(vm: string): Promise<HaResourceState | undefined>;
  /** Sets target-role and waits until the cluster reports that role; returns the state then. */
  setRole(resource: string, role: TargetRole, opts?: { timeoutMs?: number }): Promise<HaResourceState>;
}

export class Pacemaker implements HaControl {
  private readonly run: CommandRunner;
  private readonly commandTimeoutMs: number;
  private readonly roleTimeoutMs: number;
  private readonly pollMs: number;

  constructor(opts: PacemakerOptions = {}) {
    this.run = opts.run ?? localRunner();
    this.commandTimeoutMs = opts.commandTimeoutMs ?? 15_000;
    this.roleTimeoutMs = opts.roleTimeoutMs ?? 30_000;
    this.pollMs = opts.pollMs ?? 250;
  }

  async state(): Promise<HaClusterState> {
    const mon = await this.run(['crm_mon', '-1', '--output-as=xml'], { timeoutMs: this.commandTimeoutMs });
    // crm_mon prints its XML (with the error inside) also when it fails: parse it for the reason.
    if (mon.code !== 0 && !mon.stdout.includes('<pacemaker-result')) {
      throw vmError('PLUGIN_FAILED', `pacemaker: crm_mon exited with ${mon.code}: ${firstLine(mon.stderr) || 'no message'}`, { plugin: 'pacemaker' });
    }
    // Parsed first: a cluster that does not answer is best told by crm_mon's own reason.
    const live = parseCrmMon(mon.stdout);
    const cib = await this.run(['cibadmin', '--query', '--scope', 'resources'], { timeoutMs: this.commandTimeoutMs });
    if (cib.code !== 0) throw vmError('PLUGIN_FAILED', `pacemaker: cibadmin --query exited with ${cib.code}: ${firstLine(cib.stderr) || 'no message'}`, { plugin: 'pacemaker' });
    const vms = resourceVms(cib.stdout);
    return {
      ...live,
      resources: live.resources.map((r) => {
        const vm = vms.get(r.resource.replace(/:\d+$/, ''));
        return vm === undefined ? r : { resource: r.resource, vm, ...omit(r, 'resource') };
      }),
    };
  }

  async resourceOf(vm: string): Promise<HaResourceState | undefined> {
    return resourceOfVm(await this.state(), vm);
  }

  async setRole(resource: string, role: TargetRole, opts: { timeoutMs?: number } = {}): Promise<HaResourceState> {
    checkResourceId(resource);
    if (role !== 'Started' && role !== 'Stopped') throw vmError('INVALID_ARGUMENT', `target-role must be Started or Stopped, not ${String(role)}`);
    const timeoutMs = opts.timeoutMs ?? this.roleTimeoutMs;
    const before = await this.state();
    if (!before.resources.some((r) => baseId(r.resource) === resource)) {
      throw vmError('NOT_FOUND', `pacemaker: the cluster has no resource ${resource} (it has: ${before.resources.map((r) => r.resource).join(', ') || 'none'})`, { plugin: 'pacemaker', resource });
    }
    const r = await this.run(['crm_resource', '--resource', resource, '--set-parameter', 'target-role', '--meta', '--parameter-value', role], { timeoutMs: this.commandTimeoutMs });
    if (r.code !== 0) {
      throw vmError('PLUGIN_FAILED', `pacemaker: setting target-role ${role} on ${resource} failed (crm_resource exit ${r.code}): ${firstLine(r.stderr) || firstLine(r.stdout) || 'no message'}`, { plugin: 'pacemaker', resource });
    }
    return this.waitRole(resource, role, timeoutMs);
  }

  /** Polls until every instance of `resource` has `role` (Started: active somewhere, not failed). */
  async waitRole(resource: string, role: TargetRole, timeoutMs: number): Promise<HaResourceState> {
    const deadline = Date.now() + timeoutMs;
    let last: HaResourceState[] = [];
    let lastErr: Error | undefined;
    for (;;) {
      try {
        const s = await this.state();
        last = s.resources.filter((x) => baseId(x.resource) === resource);
        if (last.length === 0) throw vmError('NOT_FOUND', `pacemaker: resource ${resource} is gone from the cluster`, { plugin: 'pacemaker', resource });
        if (last.every((x) => reached(x, role))) return last[0];
        lastErr = undefined;
      } catch (err) {
        // A DC election or a node leaving makes crm_mon fail for a moment: keep polling, but a
        // resource that was deleted is final.
        if ((err as { code?: string }).code === 'NOT_FOUND') throw err;
        lastErr = err as Error;
      }
      if (Date.now() >= deadline) break;
      await new Promise((res) => setTimeout(res, Math.min(this.pollMs, Math.max(0, deadline - Date.now()))));
    }
    const verb = role === 'Stopped' ? 'stop' : 'start';
    const says = lastErr ? `the last query failed: ${lastErr.message}` : `the cluster says ${last.map(describe).join('; ')}`;
    throw vmError('TIMEOUT', `resource ${resource} did not ${verb} within ${fmtSeconds(timeoutMs)}; ${says}`, { plugin: 'pacemaker', resource, role });
  }
}

function reached(r: HaResourceState, role: TargetRole): boolean {
  if (role === 'Stopped') return r.role === 'Stopped' && r.node === undefined;
  return ['Started', 'Promoted', 'Unpromoted'].includes(r.role) && r.node !== undefined && !r.failed;
}

/** "Started on node2 (target-role Stopped, failed, unmanaged)". */
export function describe(r: HaResourceState): string {
  const notes = [
    ...(r.targetRole !== undefined ? [`target-role ${r.targetRole}`] : []),
    ...(r.failed ? ['failed'] : []),
    ...(r.managed ? [] : ['unmanaged']),
  ];
  return `${r.role}${r.node !== undefined ? ` on ${r.node}` : ''}${notes.length ? ` (${notes.join(', ')})` : ''}`;
}

function baseId(id: string): string {
  return id.replace(/:\d+$/, '');
}

export function checkResourceId(resource: unknown): asserts resource is string {
  if (typeof resource !== 'string' || !ID_PATTERN.test(resource)) {
    throw vmError('INVALID_ARGUMENT', `${JSON.stringify(String(resource)).slice(0, 80)} is not a Pacemaker resource id`, { plugin: 'pacemaker' });
  }
}

function omit<T extends object, K extends keyof T>(o: T, k: K): Omit<T, K> {
  const { [k]: _drop, ...rest } = o;
  return rest;
}

function firstLine(s: string): string {
  return s.trim().split('\n')[0]?.slice(0, 300) ?? '';
}
