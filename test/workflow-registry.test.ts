// Which plug-in performs an action: the first registered, a second one logged, none an error
// that names action and VM; optional steps skipped for a VM nothing serves.

import t from 'tap';
import { tmpDir } from './helpers/tmpdir.js';
import { makeStandIns } from './helpers/stand-in-plugins.js';
import { PluginRegistry } from '../src/backup/workflow/registry.js';
import { WorkflowEngine } from '../src/backup/workflow/engine.js';
import { QuiesceJournal } from '../src/backup/workflow/journal.js';
import { defaultWorkflows, parseWorkflows } from '../src/backup/workflow/workflows.js';
import { loadPluginsFolder } from '../src/backup/workflow/executable-plugins.js';
import { ExecutablePlugin } from '../src/plugins/script/executable-plugin.js';

const T = { vm: 'web01', qmp: 'unix:/x' };

t.test('the first registered plug-in wins, and the choice is logged', async (t) => {
  const log: string[] = [];
  const r = new PluginRegistry({ log: (l) => log.push(l) });
  const a = new ExecutablePlugin('/bin/a', { name: 'a', actions: ['snapshot'] });
  const b = new ExecutablePlugin('/bin/b', { name: 'b', actions: ['snapshot', 'copy'] });
  r.register(a);
  r.register(b);
  t.equal(r.find('snapshot', T), a);
  t.same(log, ['action snapshot for web01: plug-ins a, b all perform it; using a (registered first)']);
  t.equal(r.find('copy', T), b);
  t.equal(r.find('snapshot', T, 'b'), b, 'a workflow may pin one');
  t.throws(() => r.register(new ExecutablePlugin('/bin/a2', { name: 'a', actions: ['copy'] })), { code: 'ALREADY_EXISTS' });
  t.throws(() => r.find('quiesce-vm', T), {
    code: 'NOT_FOUND',
    message: "no plug-in performs action 'quiesce-vm' for VM 'web01': none of the registered plug-ins (a, b) performs it for this VM; configure what it needs (e.g. --qga for quiesce-vm, --pg for quiesce-database) or use a workflow without it",
  });
  t.throws(() => r.find('snapshot', T, 'nope'), { code: 'NOT_FOUND', message: "no plug-in named 'nope' (registered: a, b)" });
});

t.test('app-consistent for a VM without a database skips the database steps', async (t) => {
  const dir = tmpDir(t);
  const s = makeStandIns(dir, { vm: ['quiesce-vm', 'unquiesce-vm', 'snapshot'], mover: ['copy'] });
  const registry = new PluginRegistry();
  for (const p of (await loadPluginsFolder(s.pluginsDir)).plugins) registry.register(p);
  const engine = new WorkflowEngine(registry, { journal: await QuiesceJournal.open(dir) });
  const report = await engine.run(defaultWorkflows().get('app-consistent')!, T, {});
  t.same(report.actions.map((a) => [a.action, a.plugin, a.outcome]), [
    ['quiesce-database', '', 'skipped'],
    ['quiesce-vm', 'vm', 'ok'],
    ['snapshot', 'vm', 'ok'],
    ['unquiesce-vm', 'vm', 'ok'],
    ['unquiesce-database', '', 'skipped'],
    ['copy', 'mover', 'ok'],
  ]);
  t.equal(report.actions[0].error, 'optional, and no plug-in performs it for this VM');
  t.equal(report.actions[4].error, 'optional, and no plug-in performs it for this VM');
  t.same(s.calls(), ['vm:quiesce-vm', 'vm:snapshot', 'vm:unquiesce-vm', 'mover:copy']);
});

t.test('app-consistent for a VM nothing can freeze is refused before anything runs', async (t) => {
  const dir = tmpDir(t);
  const s = makeStandIns(dir, { db: ['quiesce-database', 'unquiesce-database'], vm: ['snapshot'], mover: ['copy'] });
  const registry = new PluginRegistry();
  for (const p of (await loadPluginsFolder(s.pluginsDir)).plugins) registry.register(p);
  const engine = new WorkflowEngine(registry, { journal: await QuiesceJournal.open(dir) });
  await t.rejects(engine.run(defaultWorkflows().get('app-consistent')!, T, {}), {
    code: 'NOT_FOUND',
    message: /cannot start: no plug-in performs action 'quiesce-vm' for VM 'web01'.*--qga for quiesce-vm/,
  });
  t.same(s.calls(), [], 'the database was not checkpointed either');
  const crash = await engine.run(defaultWorkflows().get('crash-consistent')!, T, {});
  t.equal(crash.ok, true, 'crash-consistent works for it');
});

t.test('a quiesce whose unquiesce nothing performs never starts', async (t) => {
  const dir = tmpDir(t);
  const s = makeStandIns(dir, { half: ['quiesce-app', 'snapshot'] });
  const registry = new PluginRegistry();
  for (const p of (await loadPluginsFolder(s.pluginsDir)).plugins) registry.register(p);
  const engine = new WorkflowEngine(registry, { journal: await QuiesceJournal.open(dir) });
  const wf = parseWorkflows('workflows:\n  w:\n    - quiesce-app\n    - snapshot\n    - action: unquiesce-app\n      optional: true\n', 'w.yaml').get('w')!;
  await t.rejects(engine.run(wf, T, {}), { code: 'NOT_FOUND', message: /step 1 'quiesce-app' can run but its 'unquiesce-app' \(step 3\) has no plug-in for this VM/ });
  t.same(s.calls(), []);
});
