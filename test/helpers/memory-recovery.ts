// Instant recovery for the in-memory control services: no QEMU and no mount here, so no recovery
// ever exists; every call checks its names and answers as the real service does for an unknown
// recovery or VM. The real service: recover-service.test.ts and recover-guest.test.ts.

import type { JobContext, MigrateRequest, RecoverRequest, RecoveryControl, RecoveryView } from '../../src/control/services.js';
import { vmError } from '../../src/errors.js';
import { validateName } from '../../src/namespace/names.js';

export class MemoryRecovery implements RecoveryControl {
  constructor(private readonly hasVm: (name: string) => boolean) {}

  private none(name: string): never {
    validateName('share', name);
    throw vmError('NOT_FOUND', `no instant recovery named ${JSON.stringify(name)}`);
  }

  async list(): Promise<RecoveryView[]> {
    return [];
  }
  async get(name: string): Promise<RecoveryView> {
    return this.none(name);
  }
  async checkRecover(vm: string, req: RecoverRequest): Promise<{ point: string; name: string }> {
    if (req.name !== undefined) validateName('share', req.name);
    if (req.point !== undefined) validateName('snapshot', req.point);
    if (!this.hasVm(vm)) throw vmError('NOT_FOUND', `no VM ${JSON.stringify(vm)}`);
    throw vmError('NOT_FOUND', `VM ${vm} has no restore point to recover from`);
  }
  async recover(_ctx: JobContext, vm: string, req: RecoverRequest): Promise<RecoveryView> {
    await this.checkRecover(vm, req);
    throw vmError('NOT_FOUND', 'unreachable');
  }
  async checkMigrate(name: string, _req: MigrateRequest): Promise<void> {
    this.none(name);
  }
  async migrate(_ctx: JobContext, name: string): Promise<RecoveryView> {
    return this.none(name);
  }
  async stop(name: string): Promise<{ name: string; clone: 'kept' | 'dropped' }> {
    return this.none(name);
  }
  async release(name: string): Promise<{ name: string; clone: 'kept' | 'dropped'; pid: number | null }> {
    return this.none(name);
  }
}
