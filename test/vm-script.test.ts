// A VM's `script` (issue 11): the operator's executable the built-in script plug-in runs for the
// VM's workflow actions. Through the API with the real backup service, registry, namespace, store
// and a real QEMU (-S, TCG, no guest): the script is checked when the VM is added (absolute,
// exists, a regular file, executable: each refusal says what to do, and nothing is registered),
// shown in the VM's view, and a backup with a workflow that names its actions runs them, in
// order, with the VM's name; a script that fails its quiesce fails the backup with its words and
// leaves no point.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { ApplianceServices } from '../src/appliance-services.js';
import { ApplianceVms } from '../src/appliance-vms.js';
import { BackupService } from '../src/backup/backup-service.js';
import { VmRegistry } from '../src/backup/vm-registry.js';
import { loadWorkflows } from '../src/backup/workflow/workflows.js';
import { buildServer } from '../src/control/server.js';
import { openNs } from './helpers/ns.js';
import { startQemu } from './helpers/qemu.js';
import { tmpDir } from './helpers/tmpdir.js';

const TOKEN = 'beef'.repeat(16);
const AUTH = { authorization: `Bearer ${TOKEN}` };
const MiB = 1024 * 1024;

const WORKFLOWS = `workflows:
  scripted:
    description: the application's own quiesce around the snapshot
    actions: [quiesce-app, snapshot, unquiesce-app, copy]
`;

/** Describes quiesce-app/unquiesce-app; each run appends "action vm" to LOG; FAIL=1 fails quiesce-app. */
function script(log: string, fail: string): string {
  return `#!/bin/sh
case "$1" in
  describe) echo '{"protocol": 1, "actions": ["quiesce-app", "unquiesce-app"]}' ;;
  run)
    cat > /dev/null
    echo "$VMVAULT_ACTION $VMVAULT_VM" >> '${log}'
    if [ "$VMVAULT_ACTION" = quiesce-app ] && [ -e '${fail}' ]; then
      echo '{"ok": false, "error": "the application refused to pause: 3 writers busy"}'
    else
      echo '{"ok": true}'
    fi ;;
esac
`;
}

t.test('vm add --script: checked, shown, and run for the workflow actions it performs', async (t) => {
  const dir = tmpDir(t, 'vmvault-vmscript-');
  const { ns } = await openNs(t, path.join(dir, 'store'));
  const data = path.join(dir, 'data');
  fs.mkdirSync(data);
  const wfFile = path.join(dir, 'workflows.yaml');
  fs.writeFileSync(wfFile, WORKFLOWS);
  const registry = await VmRegistry.open(data);
  const backups = new BackupService(ns, registry, { dataDir: data, qmpTimeoutMs: 5000, workflowsFile: wfFile });
  const vms = new ApplianceVms({ registry, engine: backups, workflows: () => loadWorkflows(wfFile, { extraActions: ['quiesce-app', 'unquiesce-app'] }) });
  const app = await buildServer(new ApplianceServices(ns, undefined, vms), { token: TOKEN });
  t.teardown(() => app.close());
  const call = (method: 'GET' | 'POST', url: string, body?: unknown) =>
    app.inject({ method, url, headers: body === undefined ? AUTH : { ...AUTH, 'content-type': 'application/json' }, payload: body === undefined ? undefined : JSON.stringify(body) });
  const waitJob = async (id: string) => {
    for (const until = Date.now() + 120_000; ; ) {
      const job = (await call('GET', `/api/v1/jobs/${id}`)).json();
      if (job.state !== 'queued' && job.state !== 'running') return job;
      if (Date.now() > until) throw new Error(`job ${id} still ${job.state}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  const log = path.join(dir, 'script.log');
  const fail = path.join(dir, 'fail-next');
  const exe = path.join(dir, 'app-quiesce.sh');
  fs.writeFileSync(exe, script(log, fail), { mode: 0o755 });
  const notExec = path.join(dir, 'not-exec.sh');
  fs.writeFileSync(notExec, script(log, fail), { mode: 0o644 });

  const refusals: Array<[unknown, RegExp]> = [
    ['relative/app.sh', /script path "relative\/app\.sh" must be absolute/],
    [`${dir}/../x.sh`, /must not contain '\.' or '\.\.' components/],
    [path.join(dir, 'missing.sh'), /script .*missing\.sh does not exist on the appliance host/],
    [dir, /script .* is not a regular file/],
    [notExec, /script .*not-exec\.sh is not executable; chmod \+x it/],
  ];
  for (const [s, re] of refusals) {
    const r = await call('POST', '/api/v1/vms', { name: 'web01', qmp: 'unix:/run/qemu/web01.qmp', script: s });
    t.equal(r.statusCode, 400, `script ${JSON.stringify(s)}`);
    t.match(r.json().error.message, re);
  }
  t.same((await call('GET', '/api/v1/vms')).json().vms, [], 'no refused VM was registered');

  const q = await startQemu({ t, dir, name: 'web01', disks: [{ device: 'vda', sizeBytes: 8 * MiB, file: path.join(dir, 'vda.qcow2') }] });
  const added = await call('POST', '/api/v1/vms', { name: 'web01', qmp: q.qmp, script: exe, workflow: 'scripted' });
  t.equal(added.statusCode, 201, added.body);
  t.equal(added.json().script, exe, 'the view shows the script');

  const ok = await waitJob((await call('POST', '/api/v1/vms/web01/backups', {})).json().job);
  t.equal(ok.state, 'succeeded', JSON.stringify(ok.error));
  t.same(fs.readFileSync(log, 'utf8').trim().split('\n'), ['quiesce-app web01', 'unquiesce-app web01'], 'the script ran its actions, in order, for web01');
  t.ok(ok.log.some((l: string) => /quiesce-app \(plug-in script\): ok/.test(l)), 'the job log names the action and the script plug-in');

  fs.writeFileSync(fail, '');
  fs.rmSync(log);
  const bad = await waitJob((await call('POST', '/api/v1/vms/web01/backups', {})).json().job);
  t.equal(bad.state, 'failed');
  t.match(bad.error.message, /the application refused to pause: 3 writers busy/, 'the script\'s own words reach the job');
  t.same(fs.readFileSync(log, 'utf8').trim().split('\n'), ['quiesce-app web01', 'unquiesce-app web01'], 'a failed quiesce is still undone');
  t.equal((await call('GET', '/api/v1/vms/web01/backups')).json().backups.length, 1, 'the failed backup made no point');
});
