// What the appliance knows of a cluster manager's high availability (issue 13), as the
// Pacemaker plug-in reads it (`crm_mon --output-as=xml`) on a cluster node, through the agent on
// that node. Pacemaker has no per-resource "HA" flag: every primitive is managed by the cluster;
// a resource is tied to a VM by its `vmvault-vm` instance or meta attribute, else by a
// VirtualDomain/QEMU resource whose id equals the VM's name.

export interface HaResourceState {
  /** The cluster resource's id (`crm_resource --resource ID`). */
  resource: string;
  /** The VM this resource runs, when the tie above names one. */
  vm?: string;
  /** The resource agent, `class:provider:type` (e.g. `ocf:pacemaker:Dummy`). */
  agent: string;
  /** Pacemaker's role now: Started, Stopped, Starting, Stopping, Promoted, Unpromoted, Unknown. */
  role: string;
  /** The `target-role` meta attribute, when set (Started or Stopped). */
  targetRole?: string;
  /** False when the cluster is told to leave the resource alone (`is-managed=false`, maintenance). */
  managed: boolean;
  failed: boolean;
  /** The node it is active on; absent when stopped. */
  node?: string;
}

export interface HaClusterState {
  /** `corosync`'s cluster name, when crm_mon reports it. */
  cluster?: string;
  /** The designated controller's node name; absent while the cluster has none. */
  dc?: string;
  quorate: boolean;
  nodes: { name: string; online: boolean }[];
  resources: HaResourceState[];
}
