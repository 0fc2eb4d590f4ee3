// The control plane's instant-recovery services over backup/'s RecoveryService. Part of the
// composition root: jobs' progress adapted to the service's byte progress.

import type { RecoveryService } from './backup/recovery/recovery-service.js';
import { jobProgress } from './control/job-progress.js';
import type { JobContext, MigrateRequest, RecoverRequest, RecoveryControl, RecoveryView } from './control/services.js';

export class ApplianceRecovery implements RecoveryControl {
  constructor(private readonly svc: RecoveryService) {}

  /** The recovery whose VM runs from `share` (its clone, not migrated yet), if any. */
  usingShare(share: string): string | undefined {
    return this.svc.list().find((r) => r.clone === share && r.state === 'running')?.name;
  }

  async list(): Promise<RecoveryView[]> {
    return this.svc.list();
  }

  async get(name: string): Promise<RecoveryView> {
    return this.svc.get(name);
  }

  checkRecover(vm: string, req: RecoverRequest): Promise<{ point: string; name: string }> {
    return this.svc.check(vm, req);
  }

  recover(ctx: JobContext, vm: string, req: RecoverRequest): Promise<RecoveryView> {
    return this.svc.recover(vm, req, jobProgress(ctx));
  }

  async checkMigrate(name: string, req: MigrateRequest): Promise<void> {
    await this.svc.checkMigrate(name, req);
  }

  migrate(ctx: JobContext, name: string, req: MigrateRequest): Promise<RecoveryView> {
    return this.svc.migrate(name, req, jobProgress(ctx));
  }

  stop(name: string, opts: { dropClone?: boolean }): Promise<{ name: string; clone: 'kept' | 'dropped' }> {
    return this.svc.stop(name, opts);
  }

  release(name: string, opts: { dropClone?: boolean }): Promise<{ name: string; clone: 'kept' | 'dropped'; pid: number | null }> {
    return this.svc.release(name, opts);
  }
}
