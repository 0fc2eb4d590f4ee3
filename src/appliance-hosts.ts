// The control plane's hosts and cluster map (issue 13), over the host list (hosts.json), the
// agent pool and the cluster map. Part of the composition root: the only place where control/
// meets these backup/ parts. Public methods validate their input themselves.

import type { AgentPool } from './backup/agent-pool.js';
import { type ClusterMap, type ClusterMapView } from './backup/cluster-map.js';
import { checkHostName, type HostConfig, type HostRegistry } from './backup/host-registry.js';
import type { VmRegistry } from './backup/vm-registry.js';
import type { HostsControl, HostView } from './control/hosts-control.js';
import type { NewVmRequest } from './control/services.js';
import { vmError } from './errors.js';

export class ApplianceHosts implements HostsControl {
  constructor(
    private readonly hosts: HostRegistry,
    private readonly vms: VmRegistry,
    private readonly pool: AgentPool | undefined,
    readonly map: ClusterMap,
  ) {}

  async listHosts(): Promise<HostView[]> {
    return this.hosts.list().map((h) => this.view(h));
  }

  async addHost(req: { name: string; agent: string }): Promise<HostView> {
    return this.view(await this.hosts.add(req));
  }

  async removeHost(name: string): Promise<void> {
    checkHostName(name);
    const on = this.vms.list().filter((v) => v.host === name);
    if (on.length > 0) throw vmError('CONFLICT', `host ${name} still has VMs registered on it: ${on.map((v) => v.name).join(', ')} (vmvault vm remove them, or let them move first)`, { host: name });
    await this.hosts.remove(name);
  }

  async cluster(opts: { sampleMs?: number } = {}): Promise<ClusterMapView> {
    const sampleMs = opts.sampleMs;
    if (sampleMs !== undefined && (!Number.isInteger(sampleMs) || sampleMs < 0 || sampleMs > 10_000)) throw vmError('INVALID_ARGUMENT', 'sampleMs must be an integer from 0 to 10000');
    return this.map.refresh(sampleMs !== undefined ? { sampleMs } : {});
  }

  /** The agent of a host (NOT_FOUND for a host not in the list). */
  agentOf(host: string): string {
    return this.hosts.get(host).agent;
  }

  /**
   * Fills a new VM's placement (issue 13): `fromCluster` takes host, qmp and uuid from the map
   * (the VM of that name on exactly one host); `host` must be in the list, and its uuid is taken
   * from the map when the host's agent finds the socket.
   */
  async prepareVm(req: NewVmRequest): Promise<NewVmRequest> {
    if (req === null || typeof req !== 'object') return req;
    const { fromCluster, ...rest } = req;
    if (fromCluster === true) {
      if (rest.qmp !== undefined || rest.host !== undefined) throw vmError('INVALID_ARGUMENT', 'fromCluster takes host and qmp from the cluster map: give neither');
      const view = await this.map.refresh();
      const hits = view.hosts.flatMap((h) => (h.state === 'ok' ? h.vms.filter((v) => v.name === rest.name).map((v) => ({ h, v })) : []));
      if (hits.length === 0) {
        const down = view.hosts.filter((h) => h.state !== 'ok').map((h) => `${h.name} (${h.reason})`);
        throw vmError('NOT_FOUND', `no VM named ${JSON.stringify(rest.name)} on any host (vmvault cluster shows them)${down.length > 0 ? `; unreachable: ${down.join(', ')}` : ''}`, { vm: rest.name });
      }
      if (hits.length > 1) throw vmError('CONFLICT', `VMs named ${rest.name} run on hosts ${hits.map((x) => x.h.name).join(', ')}; add it with --host and --qmp`, { vm: rest.name });
      return { ...rest, host: hits[0].h.name, qmp: hits[0].v.qmp, ...(rest.uuid === undefined && hits[0].v.uuid !== '' ? { uuid: hits[0].v.uuid } : {}) };
    }
    if (fromCluster !== undefined && fromCluster !== false) throw vmError('INVALID_ARGUMENT', 'fromCluster is true or false');
    if (rest.host === undefined) return rest;
    this.hosts.get(rest.host);
    if (rest.uuid === undefined && rest.qmp !== undefined) {
      // Best effort: the uuid makes a later move recognisable; without it the name is used.
      const view = await this.map.refresh().catch(() => undefined);
      const v = view?.hosts.find((h) => h.name === rest.host)?.vms.find((x) => x.qmp === rest.qmp);
      if (v !== undefined && v.uuid !== '') return { ...rest, uuid: v.uuid };
    }
    return rest;
  }

  private view(h: HostConfig): HostView {
    const a = this.pool?.list().find((x) => x.name === h.agent);
    return { ...h, agentState: a === undefined ? 'unregistered' : a.state, vms: this.vms.list().filter((v) => v.host === h.name).map((v) => v.name) };
  }
}
