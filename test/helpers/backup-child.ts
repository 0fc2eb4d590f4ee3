// A stand-in appliance process for the SIGKILL-during-freeze test: opens a store and namespace,
// runs one backup of the VM given in argv with a workflow whose snapshot step (plug-in
// `test-hang`) prints "frozen" and never returns, so the parent can kill this process while the
// guest is frozen. With `recover` it only runs BackupService.start() (the journal recovery an
// appliance runs at start) and prints its log lines as JSON.
//
// argv: <store dir> <data dir> <vm json> backup|recover

import fs from 'node:fs';
import path from 'node:path';
import { BackupService, type VmConfigLike } from '../../src/backup/backup-service.js';
import { Namespace } from '../../src/namespace/namespace.js';
import type { ActionContext, Plugin } from '../../src/plugins/plugin-api.js';
import { SegmentStore } from '../../src/store/store.js';
import { progress, vmLookup } from './backup.js';

const [storeDir, dataDir, vmJson, mode] = process.argv.slice(2);
const vm = JSON.parse(vmJson) as VmConfigLike;

class Hang implements Plugin {
  readonly name = 'test-hang';
  performs(action: string): boolean {
    return action === 'snapshot';
  }
  timeoutMs(): number {
    return 0;
  }
  async run(_action: string, _ctx: ActionContext): Promise<unknown> {
    process.stdout.write('frozen\n');
    return new Promise(() => {});
  }
}

fs.writeFileSync(
  path.join(dataDir, 'workflows.yaml'),
  'workflows:\n  hang:\n    - quiesce-vm\n    - action: snapshot\n      plugin: test-hang\n    - unquiesce-vm\n    - copy\n',
);
const store = await SegmentStore.open(storeDir);
const ns = await Namespace.open(store, { log: () => {} });
const svc = new BackupService(ns, vmLookup([vm]), { dataDir, plugins: [new Hang()], freezeTimeoutMs: 600_000 });
if (mode === 'recover') {
  const lines = await svc.start();
  process.stdout.write(JSON.stringify(lines) + '\n');
  await ns.close();
  await store.close();
} else {
  await svc.backup(vm.name, { workflow: 'hang' }, progress());
}
