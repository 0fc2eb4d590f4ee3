// The workflow engine against real executables standing in for the VM and the database (see
// helpers/stand-in-plugins.ts): order of actions, undo in reverse whatever fails, the freeze
// bound, cancel, and the journal of open quiesces.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { tmpDir } from './helpers/tmpdir.js';
import { makeStandIns, groupGone, killGroups, type StandIns } from './helpers/stand-in-plugins.js';
import { PluginRegistry } from '../src/backup/workflow/registry.js';
import { WorkflowEngine, type WorkflowReport } from '../src/backup/workflow/engine.js';
import { QuiesceJournal } from '../src/backup/workflow/journal.js';
import { defaultWorkflows } from '../src/backup/workflow/workflows.js';
import { loadPluginsFolder } from '../src/backup/workflow/executable-plugins.js';
import { isVmvaultError, type VmvaultError } from '../src/errors.js';
import type { TestT } from './helpers/tap-types.js';

const SPECS = {
  db: ['quiesce-database', 'unquiesce-database'],
  vm: ['quiesce-vm', 'unquiesce-vm', 'snapshot'],
  mover: ['copy'],
};
const APP = defaultWorkflows().get('app-consistent')!;
const TARGET = { vm: 'web01', qmp: 'unix:/nonexistent.qmp' };

async function setup(t: TestT, opts: { freezeTimeoutMs?: number; actionTimeoutMs?: number } = {}) {
  const dir = tmpDir(t, 'vmvault-wf-');
  const s = makeStandIns(dir, SPECS);
  t.teardown(() => killGroups(s.hangingGroups()));
  const log: string[] = [];
  const registry = new PluginRegistry({ log: (l) => log.push(l) });
  const folder = await loadPluginsFolder(s.pluginsDir);
  t.same(folder.problems, [], 'every stand-in loads');
  for (const p of folder.plugins) registry.register(p);
  const journal = await QuiesceJournal.open(dir);
  const engine = new WorkflowEngine(registry, { journal, log: (l) => log.push(l), ...opts });
  return { dir, s, log, registry, journal, engine };
}

async function failing(p: Promise<unknown>): Promise<VmvaultError> {
  try {
    await p;
  } catch (err) {
    if (isVmvaultError(err)) return err;
    throw err;
  }
  throw new Error('expected the run to fail');
}

t.test('app-consistent runs every action in order through the plug-in that performs it', async (t) => {
  const { s, engine, journal } = await setup(t);
  const report = await engine.run(APP, TARGET, {});
  t.same(s.calls(), ['db:quiesce-database', 'vm:quiesce-vm', 'vm:snapshot', 'vm:unquiesce-vm', 'db:unquiesce-database', 'mover:copy']);
  t.equal(report.ok, true);
  t.same(report.actions.map((a) => [a.action, a.plugin, a.phase, a.outcome]), [
    ['quiesce-database', 'db', 'run', 'ok'],
    ['quiesce-vm', 'vm', 'run', 'ok'],
    ['snapshot', 'vm', 'run', 'ok'],
    ['unquiesce-vm', 'vm', 'run', 'ok'],
    ['unquiesce-database', 'db', 'run', 'ok'],
    ['copy', 'mover', 'run', 'ok'],
  ]);
  t.same(report.actions[2].result, { did: 'snapshot' }, 'the answer\'s result is in the report');
  t.type(report.freezeMs, 'number');
  const frozen = report.actions.slice(1, 4).reduce((n, a) => n + a.durationMs, 0);
  t.ok(report.freezeMs! >= frozen - 5 && report.freezeMs! < frozen + 1000, `freeze ${report.freezeMs} ms spans quiesce-vm..unquiesce-vm (${frozen} ms)`);
  for (const a of report.actions) t.ok(!Number.isNaN(Date.parse(a.startedAt)) && a.durationMs >= 0, `${a.action} has start and duration`);
  t.same(journal.list(), [], 'journal empty after the run');
  const stdin = JSON.parse(fs.readFileSync(path.join(s.dir, 'vm', 'stdin-snapshot.json'), 'utf8'));
  t.same(stdin, { protocol: 1, action: 'snapshot', target: TARGET }, 'the script got {action, target} on stdin');
});

// For a failure at each step: what runs (the failing step's own call included), then the undo.
const FAILURES: Array<{ plugin: string; action: string; expect: string[]; stillOpen: string[] }> = [
  { plugin: 'db', action: 'quiesce-database', expect: ['db:quiesce-database', 'db:unquiesce-database'], stillOpen: [] },
  { plugin: 'vm', action: 'quiesce-vm', expect: ['db:quiesce-database', 'vm:quiesce-vm', 'vm:unquiesce-vm', 'db:unquiesce-database'], stillOpen: [] },
  { plugin: 'vm', action: 'snapshot', expect: ['db:quiesce-database', 'vm:quiesce-vm', 'vm:snapshot', 'vm:unquiesce-vm', 'db:unquiesce-database'], stillOpen: [] },
  // A failing unquiesce is retried once in the undo phase; it fails again (the marker stays) and
  // stays in the journal, while the database is still resumed.
  { plugin: 'vm', action: 'unquiesce-vm', expect: ['db:quiesce-database', 'vm:quiesce-vm', 'vm:snapshot', 'vm:unquiesce-vm', 'vm:unquiesce-vm', 'db:unquiesce-database'], stillOpen: ['quiesce-vm'] },
  { plugin: 'db', action: 'unquiesce-database', expect: ['db:quiesce-database', 'vm:quiesce-vm', 'vm:snapshot', 'vm:unquiesce-vm', 'db:unquiesce-database', 'db:unquiesce-database'], stillOpen: ['quiesce-database'] },
  { plugin: 'mover', action: 'copy', expect: ['db:quiesce-database', 'vm:quiesce-vm', 'vm:snapshot', 'vm:unquiesce-vm', 'db:unquiesce-database', 'mover:copy'], stillOpen: [] },
];

for (const kind of ['fail', 'exit', 'hang'] as const) {
  for (const f of FAILURES) {
    t.test(`${kind} at ${f.action}: every quiesce undone in reverse order`, async (t) => {
      const { s, engine, journal } = await setup(t, { actionTimeoutMs: 400 });
      s.mark(f.plugin, kind, f.action);
      const err = await failing(engine.run(APP, TARGET, {}));
      t.equal(err.code, kind === 'hang' ? 'TIMEOUT' : 'PLUGIN_FAILED');
      t.match(err.message, `'${f.action}' (plug-in ${f.plugin})`, 'the error names the step and its plug-in');
      if (kind === 'hang') t.match(err.message, 'did not finish within 400 ms');
      if (kind === 'exit') t.match(err.message, 'injected exit in', 'stderr is quoted');
      t.same(s.calls(), f.expect, 'calls in order, then the undo in reverse');
      const report = (err.details as { report: WorkflowReport }).report;
      t.equal(report.ok, false);
      t.same(report.stillOpen, f.stillOpen);
      t.same(journal.list().map((e) => e.quiesce), f.stillOpen, 'the journal keeps exactly what is still open');
      const quiesced = s.calls().filter((c) => c.includes(':quiesce-')).map((c) => c.split(':quiesce-')[1]);
      for (const q of quiesced) {
        if (f.stillOpen.includes(`quiesce-${q}`)) continue;
        t.ok(report.actions.some((a) => a.action === `unquiesce-${q}` && a.outcome === 'ok'), `quiesce-${q} was undone`);
      }
      if (kind === 'hang') {
        for (const g of s.hangingGroups()) t.ok(await groupGone(g), `hung script's process group ${g} was killed`);
      }
      if (f.stillOpen.length > 0) {
        const why = kind === 'hang' ? 'no answer within 400 ms' : kind === 'exit' ? 'exited with code 3' : 'injected failure';
        t.match(err.message, `STILL OPEN, retried at the next start: un${f.stillOpen[0]} (${f.plugin}): `);
        t.match(err.message.split('STILL OPEN')[1], why, 'with why the undo failed');
        s.unmark(f.plugin, kind, f.action);
        const lines = await engine.recover();
        t.match(lines.join('\n'), `recovered: ran un${f.stillOpen[0]}`);
        t.same(journal.list(), [], 'recover() closed what the run could not');
      }
    });
  }
}

t.test('the freeze bound thaws the VM and names the slow step', async (t) => {
  const { s, engine, journal } = await setup(t, { freezeTimeoutMs: 600, actionTimeoutMs: 20_000 });
  s.mark('vm', 'hang', 'snapshot');
  const t0 = Date.now();
  const err = await failing(engine.run(APP, TARGET, {}));
  const took = Date.now() - t0;
  t.equal(err.code, 'TIMEOUT');
  t.match(err.message, /guest freeze exceeded its bound of 600 ms .*'snapshot' \(plug-in vm\)/);
  t.match(err.message, 'snapshot is the slow step');
  t.same(s.calls(), ['db:quiesce-database', 'vm:quiesce-vm', 'vm:snapshot', 'vm:unquiesce-vm', 'db:unquiesce-database']);
  const report = (err.details as { report: WorkflowReport }).report;
  t.ok(report.freezeMs! >= 600 && report.freezeMs! < 5000, `freeze window ${report.freezeMs} ms: the bound, then the thaw`);
  t.equal(report.actions.find((a) => a.action === 'snapshot')!.outcome, 'freeze-timeout');
  t.ok(took < 10_000, `not waiting for the action's own 20 s deadline (${took} ms)`);
  t.same(journal.list(), []);
});

t.test('cancel during the freeze thaws and fails CANCELLED', async (t) => {
  const { s, engine, journal } = await setup(t, { actionTimeoutMs: 20_000 });
  s.mark('vm', 'hang', 'snapshot');
  const ac = new AbortController();
  const run = engine.run(APP, TARGET, { signal: ac.signal });
  const poll = setInterval(() => { if (s.calls().includes('vm:snapshot')) ac.abort(); }, 20);
  const err = await failing(run);
  clearInterval(poll);
  t.equal(err.code, 'CANCELLED');
  t.match(err.message, "cancelled during step 3 'snapshot'");
  t.same(s.calls(), ['db:quiesce-database', 'vm:quiesce-vm', 'vm:snapshot', 'vm:unquiesce-vm', 'db:unquiesce-database'], 'undo ran despite the cancel');
  t.same(journal.list(), []);
});

t.test('a step no plug-in performs fails before anything is quiesced', async (t) => {
  const { s, engine, journal } = await setup(t);
  const wf = { name: 'odd', steps: [{ action: 'quiesce-vm' }, { action: 'snapshot' }, { action: 'unquiesce-vm' }, { action: 'quiesce-app' }, { action: 'unquiesce-app' }], source: 'test' };
  const err = await failing(engine.run(wf, TARGET, {}));
  t.equal(err.code, 'NOT_FOUND');
  t.match(err.message, "no plug-in performs action 'quiesce-app' for VM 'web01'");
  t.same(s.calls(), [], 'nothing ran');
  t.same(journal.list(), []);
});

t.test('a plug-in pinned by the workflow must perform the action', async (t) => {
  const { engine } = await setup(t);
  const wf = { name: 'pinned', steps: [{ action: 'snapshot', plugin: 'db' }], source: 'test' };
  const err = await failing(engine.run(wf, TARGET, {}));
  t.match(err.message, "plug-in 'db' does not perform it");
});
