// WorkflowRuntime.open: the data directory's workflows.yaml and plugins/ folder, the caller's
// plug-ins ahead of the built-ins, and the journal, in one call.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { tmpDir } from './helpers/tmpdir.js';
import { makeStandIns } from './helpers/stand-in-plugins.js';
import { WorkflowRuntime } from '../src/backup/workflow/runtime.js';
import type { Plugin } from '../src/backup/workflow/plugin.js';

t.test('opens what the data directory holds', async (t) => {
  const dataDir = tmpDir(t);
  const s = makeStandIns(dataDir, { app: ['quiesce-app', 'unquiesce-app', 'flush-caches'], vm: ['quiesce-vm', 'unquiesce-vm', 'snapshot'] });
  fs.writeFileSync(path.join(dataDir, 'workflows.yaml'), 'workflows:\n  app-first:\n    - quiesce-app\n    - flush-caches\n    - quiesce-vm\n    - snapshot\n    - unquiesce-vm\n    - unquiesce-app\n    - copy\n');
  const copied: string[] = [];
  // The backup service's own plug-in for copy (plug-ins know nothing of the store; this one
  // would); here an in-process plug-in is the real thing the engine calls.
  const copy: Plugin = {
    name: 'copy',
    performs: (a) => a === 'copy',
    run: async (a, ctx) => { copied.push(`${ctx.target.vm}:${String(ctx.state.get('snapshot') ?? 'none')}`); return { bytes: 0 }; },
  };
  const log: string[] = [];
  const rt = await WorkflowRuntime.open({ dataDir, plugins: [copy], log: (l) => log.push(l) });
  t.same(rt.registry.list().map((p) => p.name), ['copy', 'postgresql', 'script', 'app', 'vm'], 'caller first, then built-ins, then the folder');
  t.same(rt.pluginProblems, []);
  t.same([...rt.workflows.keys()].sort(), ['app-consistent', 'app-first', 'crash-consistent']);
  const state = new Map<string, unknown>([['snapshot', 'point-1']]);
  const report = await rt.engine.run(rt.workflow('app-first'), { vm: 'web01', qmp: 'unix:/x' }, { state });
  t.same(report.actions.map((a) => a.plugin), ['app', 'app', 'vm', 'vm', 'vm', 'app', 'copy']);
  t.same(copied, ['web01:point-1'], 'the run\'s state reaches the plug-ins');
  t.same(s.calls(), ['app:quiesce-app', 'app:flush-caches', 'vm:quiesce-vm', 'vm:snapshot', 'vm:unquiesce-vm', 'app:unquiesce-app']);
  t.throws(() => rt.workflow('nightly'), { code: 'NOT_FOUND', message: "no workflow named 'nightly' (defined: app-consistent, crash-consistent, app-first)" });
  t.same(await rt.engine.recover(), []);
});

t.test('a folder plug-in may not take a built-in name; an explicit workflows file must exist', async (t) => {
  const dataDir = tmpDir(t);
  const s = makeStandIns(dataDir, { postgresql: ['quiesce-database', 'unquiesce-database'] });
  const rt = await WorkflowRuntime.open({ dataDir, pluginsDir: s.pluginsDir });
  t.same(rt.registry.list().map((p) => p.name), ['postgresql', 'script']);
  t.match(rt.pluginProblems[0], /calls itself 'postgresql', a name already taken; rename it/);
  await t.rejects(WorkflowRuntime.open({ dataDir, workflowsFile: path.join(dataDir, 'nope.yaml') }), { code: 'NOT_FOUND', message: /nope\.yaml does not exist/ });
});
