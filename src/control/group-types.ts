// VM groups (issue 13) as the control plane shows them; the composition root's ApplianceGroups
// (src/appliance-groups.ts) implements GroupControl over the group registry and the backup service.

import type { GroupBackupResult, CopyOrder } from '../backup/group-backup.js';
import type { JobContext } from './services.js';

export type { GroupBackupResult } from '../backup/group-backup.js';

export interface GroupView {
  name: string;
  /** Exactly one of vms, pattern, host: how the group names its VMs. */
  vms?: string[];
  pattern?: string;
  host?: string;
  createdAt: string;
  /** The registered VMs it holds now (a pattern or host resolved at this call). */
  members: string[];
  /** Names it lists that no VM is registered under (a backup reports them failed). */
  missing: string[];
}

export interface NewGroupRequest {
  name: string;
  vms?: string[];
  pattern?: string;
  host?: string;
}

export interface GroupBackupRequest {
  /** Default: each VM's workflow, else app-consistent. */
  workflow?: string;
  full?: boolean;
  /** Copies at once (default 2). */
  parallel?: number;
  /** Copy order (default busiest). */
  order?: CopyOrder;
}

export interface GroupControl {
  list(): Promise<GroupView[]>;
  get(name: string): Promise<GroupView>;
  create(req: NewGroupRequest): Promise<GroupView>;
  remove(name: string): Promise<void>;
  /** What the job would refuse at once (unknown group, empty group, bad options, unknown workflow). */
  checkBackup(name: string, req: GroupBackupRequest): Promise<void>;
  backup(ctx: JobContext, name: string, req: GroupBackupRequest): Promise<GroupBackupResult>;
}
