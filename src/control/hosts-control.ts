// What the /hosts and /cluster routes need (issue 13); src/appliance-hosts.ts implements it.

import type { ClusterMapView } from '../backup/cluster-map.js';
import type { HostConfig } from '../backup/host-registry.js';

export type { ClusterMapView, ClusterHost, ClusterVm } from '../backup/cluster-map.js';

export interface HostView extends HostConfig {
  /** The agent's state in the pool: live, lost, or not registered. */
  agentState: 'live' | 'lost' | 'unregistered';
  /** VMs registered on this host. */
  vms: string[];
}

export interface HostsControl {
  listHosts(): Promise<HostView[]>;
  addHost(req: { name: string; agent: string }): Promise<HostView>;
  /** CONFLICT while VMs are registered on it. */
  removeHost(name: string): Promise<void>;
  /** Asks every host's agent now (all at once) and answers the aggregated map. */
  cluster(opts?: { sampleMs?: number }): Promise<ClusterMapView>;
}
