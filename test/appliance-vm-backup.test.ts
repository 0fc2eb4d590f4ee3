// The whole path a person takes, with real parts only: the appliance process (store, FUSE mount,
// control plane, backup service as appliance.ts wires them), the `vmvault` launcher as a child,
// and a real QEMU (-S, TCG, no guest). vm add, vm list, backup (a job watched to the end),
// backup list, the point seen through the mount, restore; the VM registry survives a restart.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { startAppliance } from './helpers/appliance.js';
import { runCli } from './helpers/cli-run.js';
import { startQemu } from './helpers/qemu.js';
import { tmpDir } from './helpers/tmpdir.js';

const MiB = 1024 * 1024;

t.test('vm add, backup, backup list, restore through the real appliance and CLI', async (t) => {
  const dir = tmpDir(t, 'vmvault-e2e-');
  const q = await startQemu({ t, dir, name: 'web01', disks: [{ device: 'vda', sizeBytes: 8 * MiB, file: path.join(dir, 'vda.qcow2') }] });
  let app = await startAppliance(t, dir, ['--freeze-timeout', '5']);
  const cli = (...args: string[]) => runCli(['--url', app.url, '--token', app.token, ...args]);
  t.match(app.log(), /workflows: app-consistent, crash-consistent \(built in\)/, 'the workflows it read are logged at start');

  const added = await cli('vm', 'add', 'web01', '--qmp', q.qmp, '--workflow', 'crash-consistent');
  t.equal(added.code, 0, added.stderr);
  t.match(added.stdout, /State\s+prelaunch/);
  t.match(added.stdout, /Disks\s+vda\s+8\.00 MiB\s+qcow2/);

  const list = await cli('vm', 'list');
  t.equal(list.code, 0, list.stderr);
  t.match(list.stdout, /^NAME\s+STATE\s+DISKS\s+LAST BACKUP\nweb01\s+prelaunch\s+vda 8\.00 MiB qcow2\s+never\n$/);

  const backup = await cli('backup', 'web01');
  t.equal(backup.code, 0, backup.stderr);
  t.match(backup.stdout, /Job\s+[0-9a-f]{12} \(backup of vm web01\)\nState\s+succeeded/);
  const point = /Point\s+(\S+) \(full, workflow crash-consistent\)/.exec(backup.stdout)?.[1];
  t.ok(point, `a point: ${backup.stdout}`);
  t.match(backup.stdout, /Frozen\s+not frozen/);

  const points = await cli('backup', 'list', 'web01');
  t.equal(points.code, 0);
  t.match(points.stdout, new RegExp(`^POINT\\s+KIND\\s+READ\\s+WRITTEN\\s+DURATION\\s+FROZEN\\s+WORKFLOW\\n${point}\\s+full\\s+`));
  const json = JSON.parse((await cli('backup', 'list', 'web01', '--json')).stdout);
  t.match(json, [{ vm: 'web01', point, kind: 'full', disks: [{ device: 'vda', sizeBytes: 8 * MiB }] }]);

  const snapDir = path.join(app.mount, 'web01', '.snapshots', point!);
  // The mount also shows the disk's catalog view, vda.raw.files/.
  const expected = ['vda.raw', 'vda.raw.files', 'vm.json'];
  t.same(fs.readdirSync(snapDir).sort(), expected, 'the point through the mount');
  t.equal(fs.statSync(path.join(snapDir, 'vda.raw')).size, 8 * MiB);

  const to = path.join(dir, 'restored');
  const restored = await cli('restore', 'web01', '--to', to, '--format', 'qcow2');
  t.equal(restored.code, 0, restored.stderr);
  t.match(restored.stdout, new RegExp(`Point\\s+${point}`));
  t.same(fs.readdirSync(to).sort(), ['vda.qcow2', 'vm.json']);
  const again = await cli('restore', 'web01', '--to', to, '--format', 'qcow2');
  t.equal(again.code, 6, 'files there already: conflict, before any job');
  t.match(again.stderr, /vda\.qcow2 exists; restore into an empty directory/);
  const intoMount = await cli('restore', 'web01', '--to', path.join(app.mount, 'web01', 'restored'));
  t.equal(intoMount.code, 2, 'the appliance never writes through its own mount');
  t.match(intoMount.stderr, /is inside the appliance's mount/);

  // The registry and the points outlive the process.
  t.equal(await app.stop(), 0);
  app = await startAppliance(t, dir);
  t.match(app.log(), /protecting 1 VM\(s\)/);
  const after = await cli('vm', 'list', '--json');
  t.match(JSON.parse(after.stdout), [{ name: 'web01', workflow: 'crash-consistent', lastBackup: { point } }]);
  t.equal(await app.stop(), 0);
});
