// The control plane's group services (issue 13): the group registry, resolved against the VM
// registry at each call, and the group backup (src/backup/group-backup.ts) over the backup
// service. Part of the composition root.

import { checkOrder, checkParallel, type GroupBackupEngine, type GroupBackupResult, runGroupBackup } from './backup/group-backup.js';
import { checkGroupName, type GroupMemberLike, type GroupRegistry, type VmGroup } from './backup/groups.js';
import { checkWorkflowName, type VmConfig } from './backup/vm-registry.js';
import type { GroupBackupRequest, GroupControl, GroupView, NewGroupRequest } from './control/group-types.js';
import { jobProgress } from './control/job-progress.js';
import type { JobContext } from './control/services.js';
import { vmError } from './errors.js';

export interface GroupParts {
  groups: GroupRegistry;
  /** The registered VMs now (a VM record may carry `host`, which the hosts part adds). */
  vms: () => VmConfig[];
  engine?: GroupBackupEngine;
  /** The same workflow check a single VM's backup makes before its job starts. */
  checkBackup?: (vm: string, req: { workflow?: string }) => Promise<void>;
  /** The policy that names the group, if any (issue 14): such a group is not removed. */
  usedBy?: (group: string) => string | undefined;
}

export class ApplianceGroups implements GroupControl {
  constructor(private readonly parts: GroupParts) {}

  private registered(): GroupMemberLike[] {
    return this.parts.vms().map((v) => {
      const host = (v as VmConfig & { host?: unknown }).host;
      return typeof host === 'string' ? { name: v.name, host } : { name: v.name };
    });
  }

  private view(g: VmGroup): GroupView {
    const r = this.parts.groups.resolve(g.name, this.registered());
    return { ...g, members: r.vms, missing: r.missing };
  }

  async list(): Promise<GroupView[]> {
    return this.parts.groups.list().map((g) => this.view(g));
  }

  async get(name: string): Promise<GroupView> {
    return this.view(this.parts.groups.get(name));
  }

  async create(req: NewGroupRequest): Promise<GroupView> {
    return this.view(await this.parts.groups.create(req));
  }

  async remove(name: string): Promise<void> {
    const policy = this.parts.usedBy?.(name);
    if (policy !== undefined) {
      this.parts.groups.get(name); // NOT_FOUND first for a bad or unknown name
      throw vmError('CONFLICT', `group ${name} is assigned to policy ${policy}; unassign it first (vmvault policy unassign ${policy} --group ${name}); its VMs and their points stay either way`, { group: name, policy });
    }
    await this.parts.groups.remove(name);
  }

  /** The group's registered members now (NOT_FOUND for an unknown group). */
  members(name: string): string[] {
    return this.parts.groups.resolve(name, this.registered()).vms;
  }

  async checkBackup(name: string, req: GroupBackupRequest): Promise<void> {
    checkGroupName(name);
    if (req.parallel !== undefined) checkParallel(req.parallel);
    if (req.order !== undefined) checkOrder(req.order);
    if (req.workflow !== undefined) checkWorkflowName(req.workflow);
    const g = await this.get(name);
    if (g.members.length === 0) {
      throw vmError('INVALID_ARGUMENT', `group ${name} has no registered VM${g.missing.length > 0 ? ` (it lists ${g.missing.join(', ')}, none registered)` : ''}`, { group: name });
    }
    if (this.parts.engine === undefined) throw vmError('NOT_SUPPORTED', 'this appliance has no backup service: VMs can be registered but not backed up');
    if (this.parts.checkBackup !== undefined) {
      for (const vm of g.members) await this.parts.checkBackup(vm, req.workflow !== undefined ? { workflow: req.workflow } : {});
    }
  }

  async backup(ctx: JobContext, name: string, req: GroupBackupRequest): Promise<GroupBackupResult> {
    const engine = this.parts.engine;
    if (engine === undefined) throw vmError('NOT_SUPPORTED', 'this appliance has no backup service');
    // Resolved now, at the run: a pattern or host takes the VMs registered (or moved) since.
    const g = await this.get(name);
    const hosts = new Map(this.registered().map((m) => [m.name, m.host]));
    const members = [...g.members, ...g.missing].map((vm) => (hosts.get(vm) !== undefined ? { name: vm, host: hosts.get(vm)! } : { name: vm }));
    return runGroupBackup(
      engine,
      name,
      members,
      {
        ...(req.workflow !== undefined ? { workflow: req.workflow } : {}),
        ...(req.full === true ? { full: true } : {}),
        ...(req.parallel !== undefined ? { parallel: req.parallel } : {}),
        ...(req.order !== undefined ? { order: req.order } : {}),
      },
      jobProgress(ctx),
    );
  }
}
