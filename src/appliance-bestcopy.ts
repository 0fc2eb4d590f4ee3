// Restore from the best copy in the composition root (issue 14, part B): policy's BestCopy over
// the appliance's record of copies, handed to backup's restore (BackupService.setCopyPlanner)
// and to `verify --repair` (ApplianceServices.repairDamage). Backup does not import policy, so
// this file connects them.

import type { ApplianceServices } from './appliance-services.js';
import type { BackupService } from './backup/backup-service.js';
import type { VmRegistry } from './backup/vm-registry.js';
import type { Namespace } from './namespace/namespace.js';
import { BestCopy, type CopyCatalog } from './policy/best-copy.js';

export function wireBestCopy(o: { ns: Namespace; backups: BackupService; svc: ApplianceServices; vms: Pick<VmRegistry, 'list'>; copies: CopyCatalog }): BestCopy {
  const best = new BestCopy(o.ns, o.copies);
  o.backups.setCopyPlanner(best.planner);
  // A snapshot of a VM's share is one of its points (backup names them by their time).
  const pointOf = (share: string, snapshot: string) => {
    const vm = o.vms.list().find((v) => v.share === share);
    return vm ? { vm: vm.name, point: snapshot } : undefined;
  };
  o.svc.repairDamage = (problems, log) => best.repairProblems(problems, pointOf, log);
  return best;
}
