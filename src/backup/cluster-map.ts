// The cluster map (issue 13): every host's VMs, as each host's agent discovers them, asked of all
// hosts at once and aggregated: host -> VMs (name, uuid, state, disks, I/O load). It is what
// `vmvault cluster` and GET /api/v1/cluster show, what a backup consults to follow a VM that moved
// (vm-placement.ts), and what the group backup ranks by load.
//
// I/O load per VM: the write-bytes rate from two query-blockstats samples (the agent's own, when
// asked to sample, else this map's previous refresh and this one), and the dirty bytes of its
// disks' bitmaps (the largest bitmap per disk: what an incremental from the oldest checkpoint
// must read). A host whose agent is unknown, lost, or silent past the deadline is in the map with
// that reason, and the VMs last seen there (or registered there) are listed with state 'unknown'.
//
// `ha` on each VM: asked of each host's agent that handles `ha-state` (vmvault agent --pacemaker,
// src/agent/ha-requests.ts) beside its discovery; a VM gets its cluster resource (tied by the
// `vmvault-vm` attribute, else resource id = the VM's name, for the registered name first). A
// host whose agent has no HA gets the state another host's agent reported for a cluster that
// lists it as a node. A failed `ha-state` is a problem of that host, not an unreachable host.

import { resourceOfVm } from '../plugins/pacemaker/crm-xml.js';
import type { HaClusterState, HaResourceState } from '../plugins/pacemaker/ha-state.js';
import { checkHaState, HA_STATE } from './host-ha.js';
import type { AgentPool } from './agent-pool.js';
import { checkDiscovery, type DiscoveredVm, type Discovery } from './discovery.js';
import type { HostConfig } from './host-registry.js';

export interface ClusterDisk {
  device: string;
  file: string;
  format: string;
  sizeBytes: number;
  /** The largest dirty bitmap's count on this disk (bytes), 0 without bitmaps. */
  dirtyBytes: number;
}

export interface ClusterVm {
  name: string;
  /** Lower-case; '' when unknown (the host did not answer). */
  uuid: string;
  /** QEMU's run state (running, paused, ...), 'unknown' for a host that did not answer. */
  state: string;
  /** The QMP socket on its host (unix:/path). */
  qmp: string;
  disks: ClusterDisk[];
  load: {
    /** Bytes written per second between two samples; absent until there are two. */
    wrBytesPerSec?: number;
    /** Sum of the disks' dirtyBytes. */
    dirtyBytes: number;
  };
  /** The vmvault VM registered for it (matched by uuid, else name), when one is. */
  registered?: string;
  /** Filled by the Pacemaker plug-in (issue 13, ha). */
  ha?: HaResourceState;
}

export interface ClusterHost {
  name: string;
  agent: string;
  state: 'ok' | 'unreachable';
  /** Why the host is unreachable (the agent's name and the cause). */
  reason?: string;
  /** What the agent's host calls itself. */
  hostname?: string;
  vms: ClusterVm[];
  /** QMP sockets that did not answer, with the reason (they are VMs we could not read). */
  failed: Array<{ qmp: string; error: string }>;
  /** Folders the agent could not read. */
  problems: string[];
  ms: number;
}

export interface ClusterMapView {
  takenAt: string;
  ms: number;
  hosts: ClusterHost[];
}

export interface ClusterMapOptions {
  pool: AgentPool | undefined;
  hosts: () => HostConfig[];
  /** The registered VMs (name, uuid, host), to mark which map VMs they are. */
  registered: () => Array<{ name: string; uuid?: string; host?: string; qmp: string }>;
  /** Deadline for one host's answer. Default 5000 ms. */
  timeoutMs?: number;
  /** Per-socket timeout at the agent. Default 1500 ms. */
  socketTimeoutMs?: number;
  log?: (line: string) => void;
}

export class ClusterMap {
  private lastView: ClusterMapView | undefined;
  /** Previous blockstats sample per host+uuid: agent clock and bytes written. */
  private readonly samples = new Map<string, { at: number; wr: number }>();
  private inFlight: Promise<ClusterMapView> | undefined;

  constructor(private readonly o: ClusterMapOptions) {}

  last(): ClusterMapView | undefined {
    return this.lastView;
  }

  /**
   * Asks every host's agent at once; resolves when all answered or timed out. Concurrent callers
   * share one refresh. `sampleMs`: the agents take two block-stats samples that far apart.
   */
  refresh(opts: { sampleMs?: number; timeoutMs?: number } = {}): Promise<ClusterMapView> {
    this.inFlight ??= this.refreshNow(opts).finally(() => (this.inFlight = undefined));
    return this.inFlight;
  }

  private async refreshNow(opts: { sampleMs?: number; timeoutMs?: number }): Promise<ClusterMapView> {
    const t0 = performance.now();
    const timeoutMs = (opts.timeoutMs ?? this.o.timeoutMs ?? 5000) + (opts.sampleMs ?? 0);
    const list = this.o.hosts();
    const [hosts, ha] = await Promise.all([
      Promise.all(list.map((h) => this.askHost(h, timeoutMs, opts.sampleMs ?? 0))),
      Promise.all(list.map((h) => this.askHa(h, timeoutMs))),
    ]);
    fillHa(hosts, ha, this.o.log);
    const view: ClusterMapView = { takenAt: new Date().toISOString(), ms: Math.round(performance.now() - t0), hosts };
    this.lastView = view;
    return view;
  }

  private async askHost(h: HostConfig, timeoutMs: number, sampleMs: number): Promise<ClusterHost> {
    const t0 = performance.now();
    const base = { name: h.name, agent: h.agent, failed: [], problems: [] };
    if (this.o.pool === undefined) return this.unreachable(h, 'this appliance runs no agent pool', t0);
    let d: Discovery;
    try {
      d = await this.o.pool.request(h.agent, 'discover', { socketTimeoutMs: this.o.socketTimeoutMs ?? 1500, sampleMs }, timeoutMs, checkDiscovery);
    } catch (err) {
      const reason = (err as Error).message;
      this.o.log?.(`cluster map: host ${h.name} unreachable: ${reason}`);
      return this.unreachable(h, reason, t0);
    }
    const reg = this.o.registered();
    const vms: ClusterVm[] = [];
    const failed: ClusterHost['failed'] = [];
    for (const v of d.vms) {
      if (!v.ok) {
        failed.push({ qmp: v.qmp, error: v.error });
        continue;
      }
      vms.push(this.vmOf(h, d, v, reg));
    }
    vms.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return { ...base, state: 'ok', hostname: d.hostname, vms, failed, problems: d.problems, ms: Math.round(performance.now() - t0) };
  }

  private vmOf(h: HostConfig, d: Discovery, v: Extract<DiscoveredVm, { ok: true }>, reg: ReturnType<ClusterMapOptions['registered']>): ClusterVm {
    const wr = v.disks.reduce((n, x) => n + x.wrBytes, 0);
    const key = `${h.name}/${v.uuid}`;
    let rate = v.wrBytesPerSec;
    const prev = this.samples.get(key);
    if (rate === undefined && prev !== undefined && d.sampledAt > prev.at && wr >= prev.wr) rate = Math.round(((wr - prev.wr) * 1000) / (d.sampledAt - prev.at));
    this.samples.set(key, { at: d.sampledAt, wr });
    const disks = v.disks.map((x) => ({ device: x.device, file: x.file, format: x.format, sizeBytes: x.sizeBytes, dirtyBytes: x.dirtyBitmaps.reduce((m, b) => Math.max(m, b.count), 0) }));
    const registered = reg.find((r) => r.uuid !== undefined && r.uuid === v.uuid) ?? reg.find((r) => r.uuid === undefined && r.name === v.name);
    return {
      name: v.name,
      uuid: v.uuid,
      state: v.status,
      qmp: v.qmp,
      disks,
      load: { ...(rate !== undefined ? { wrBytesPerSec: rate } : {}), dirtyBytes: disks.reduce((n, x) => n + x.dirtyBytes, 0) },
      ...(registered ? { registered: registered.name } : {}),
    };
  }

  /** The host's HA state, when its agent handles ha-state; an error is kept as the host's problem. */
  private async askHa(h: HostConfig, timeoutMs: number): Promise<HaClusterState | Error | undefined> {
    if (this.o.pool === undefined) return undefined;
    try {
      return await this.o.pool.request(h.agent, HA_STATE, {}, timeoutMs, checkHaState);
    } catch (err) {
      // An agent without --pacemaker (or unreachable: discovery says so already).
      const why = (err as { details?: { hostReason?: string } }).details?.hostReason;
      if ((err as { code?: string }).code === 'NOT_SUPPORTED' || (why !== 'failed' && why !== 'bad-answer')) return undefined;
      return err as Error;
    }
  }

  /** The host with its reason, and the VMs last seen there or registered there, as unknown. */
  private unreachable(h: HostConfig, reason: string, t0: number): ClusterHost {
    const seen = this.lastView?.hosts.find((x) => x.name === h.name)?.vms ?? [];
    const vms: ClusterVm[] = seen.map((v) => ({ ...v, state: 'unknown', load: { dirtyBytes: v.load.dirtyBytes } }));
    for (const r of this.o.registered()) {
      if (r.host !== h.name || vms.some((v) => v.registered === r.name || (r.uuid !== undefined && v.uuid === r.uuid))) continue;
      vms.push({ name: r.name, uuid: r.uuid ?? '', state: 'unknown', qmp: r.qmp, disks: [], load: { dirtyBytes: 0 }, registered: r.name });
    }
    return { name: h.name, agent: h.agent, state: 'unreachable', reason, vms, failed: [], problems: [], ms: Math.round(performance.now() - t0) };
  }
}

/** Puts each VM's cluster resource into the map (see the file's head). */
function fillHa(hosts: ClusterHost[], ha: Array<HaClusterState | Error | undefined>, log?: (line: string) => void): void {
  const states = ha.filter((s): s is HaClusterState => s !== undefined && !(s instanceof Error));
  for (const [i, host] of hosts.entries()) {
    const own = ha[i];
    if (own instanceof Error) {
      host.problems.push(`HA state: ${own.message}`);
      log?.(`cluster map: host ${host.name}: HA state: ${own.message}`);
    }
    const state = own !== undefined && !(own instanceof Error) ? own : states.find((s) => s.nodes.some((n) => n.name === host.hostname || n.name === host.name));
    if (state === undefined) continue;
    for (const vm of host.vms) {
      let res: HaResourceState | undefined;
      try {
        res = (vm.registered !== undefined ? resourceOfVm(state, vm.registered) : undefined) ?? resourceOfVm(state, vm.name);
      } catch (err) {
        host.problems.push(`HA state of VM ${vm.name}: ${(err as Error).message}`);
      }
      if (res !== undefined) vm.ha = res;
    }
  }
}

/** Where a VM is in a map: by uuid when known, else by name. */
export function findInMap(view: ClusterMapView, vm: { name: string; uuid?: string }): { host: ClusterHost; vm: ClusterVm } | undefined {
  for (const host of view.hosts) {
    if (host.state !== 'ok') continue;
    const hit = vm.uuid !== undefined ? host.vms.find((v) => v.uuid === vm.uuid) : host.vms.find((v) => v.name === vm.name);
    if (hit) return { host, vm: hit };
  }
  return undefined;
}
