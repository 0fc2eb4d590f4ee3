// VMs that move (issue 13): before a backup of a VM on a host, the cluster map is refreshed and
// the VM looked for by its uuid (else its name). Found on another host (or another socket): its
// record's host and qmp follow it, logged in the job, and its incremental chain continues, since
// the checkpoint bitmaps are persistent in its qcow2 and travel with the disk. Its host
// unreachable, or the VM found nowhere: the backup fails with that reason before touching
// anything.

import { vmError } from '../errors.js';
import { type ClusterMap, findInMap } from './cluster-map.js';
import type { VmConfig } from './vm-registry.js';

export interface PlacementParts {
  vms: { get(name: string): VmConfig; relocate(name: string, to: { host?: string; qmp: string; uuid?: string }): Promise<VmConfig> };
  map: ClusterMap;
}

/** The VM's record, updated to where the map finds it now. */
export async function followVm(parts: PlacementParts, name: string, log: (line: string) => void): Promise<VmConfig> {
  const vm = parts.vms.get(name);
  if (vm.host === undefined) return vm;
  const view = await parts.map.refresh();
  const found = findInMap(view, vm);
  if (!found) {
    const own = view.hosts.find((h) => h.name === vm.host);
    const down = view.hosts.filter((h) => h.state !== 'ok');
    if (own === undefined) {
      throw vmError('NOT_FOUND', `VM ${name} is recorded on host ${vm.host}, which is not in the host list (vmvault host list), and no host has it now`, { vm: name, host: vm.host });
    }
    if (own.state !== 'ok') {
      throw vmError('IO', `VM ${name} is skipped: its host ${vm.host} is unreachable (${own.reason}), and no other host has it`, { vm: name, host: vm.host, hostReason: 'host-unreachable' });
    }
    const also = down.length > 0 ? `; unreachable: ${down.map((h) => `${h.name} (${h.reason})`).join(', ')}` : '';
    throw vmError('NOT_FOUND', `VM ${name} (${vm.uuid !== undefined ? `uuid ${vm.uuid}` : 'by name'}) runs on no host the appliance reaches: not on ${vm.host} any more${also}`, { vm: name, host: vm.host });
  }
  if (found.host.name === vm.host && found.vm.qmp === vm.qmp && (vm.uuid !== undefined || found.vm.uuid === '')) return vm;
  const moved = found.host.name !== vm.host || found.vm.qmp !== vm.qmp;
  const next = await parts.vms.relocate(name, { host: found.host.name, qmp: found.vm.qmp, uuid: vm.uuid ?? found.vm.uuid });
  if (moved) log(`VM ${name} moved: host ${vm.host} (${vm.qmp}) -> host ${found.host.name} (${found.vm.qmp}); its record follows and its incremental chain continues`);
  else log(`VM ${name}: recorded its uuid ${found.vm.uuid}`);
  return next;
}
