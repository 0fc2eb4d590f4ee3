// The journal of open quiesces: an appliance SIGKILLed while the guest is frozen leaves the
// journal saying so, and the next process's recover() thaws through the plug-ins, in reverse.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { tmpDir } from './helpers/tmpdir.js';
import { makeStandIns, killGroups } from './helpers/stand-in-plugins.js';
import { PluginRegistry } from '../src/backup/workflow/registry.js';
import { WorkflowEngine } from '../src/backup/workflow/engine.js';
import { QuiesceJournal, JOURNAL_FILE } from '../src/backup/workflow/journal.js';
import { loadPluginsFolder } from '../src/backup/workflow/executable-plugins.js';
import { defaultWorkflows } from '../src/backup/workflow/workflows.js';
import { isVmvaultError } from '../src/errors.js';

const CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), 'helpers', 'workflow-child.js');
const SPECS = { db: ['quiesce-database', 'unquiesce-database'], vm: ['quiesce-vm', 'unquiesce-vm', 'snapshot'], mover: ['copy'] };

t.test('SIGKILL during the freeze: recover() at the next start thaws VM then database', async (t) => {
  const dir = tmpDir(t, 'vmvault-journal-');
  const s = makeStandIns(dir, SPECS);
  t.teardown(() => killGroups(s.hangingGroups()));
  s.mark('vm', 'hang', 'snapshot');

  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  const child = fork(CHILD, [dir], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], execArgv: [], env });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); });
  const died = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_c, sig) => resolve(sig)));
  // Kill once the snapshot step runs: the database is checkpointed and the guest frozen.
  const deadline = Date.now() + 30_000;
  while (!s.calls().includes('vm:snapshot')) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`child never reached snapshot: ${stderr}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  child.kill('SIGKILL');
  t.equal(await died, 'SIGKILL', 'the child died of SIGKILL');
  // The hung script was in its own process group and outlives the child: end it as the
  // appliance's successor would find it (the OS would, if the whole appliance went down).
  killGroups(s.hangingGroups());
  t.same(s.calls(), ['db:quiesce-database', 'vm:quiesce-vm', 'vm:snapshot'], 'nothing was undone by the killed process');

  const journal = await QuiesceJournal.open(dir);
  t.same(journal.list().map((e) => [e.vm, e.quiesce, e.undo, e.plugin]), [
    ['web01', 'quiesce-database', 'unquiesce-database', 'db'],
    ['web01', 'quiesce-vm', 'unquiesce-vm', 'vm'],
  ], 'the journal names both open quiesces');
  t.equal(journal.list()[0].pid, child.pid, 'and the process that opened them');
  t.equal(fs.statSync(path.join(dir, JOURNAL_FILE)).mode & 0o777, 0o600, 'journal readable by the appliance only');

  const registry = new PluginRegistry();
  for (const p of (await loadPluginsFolder(s.pluginsDir)).plugins) registry.register(p);
  const log: string[] = [];
  const engine = new WorkflowEngine(registry, { journal, log: (l) => log.push(l) });
  const lines = await engine.recover();
  t.same(s.calls().slice(3), ['vm:unquiesce-vm', 'db:unquiesce-database'], 'thaw, then resume, in reverse order');
  t.match(lines[0], '2 quiesce(s) left open by a previous run');
  t.match(lines[1], /^recovered: ran unquiesce-vm for VM 'web01' \(quiesce-vm at .* by pid \d+, workflow app-consistent\) with plug-in vm/);
  t.match(lines[2], /^recovered: ran unquiesce-database for VM 'web01'/);
  t.same(log.filter((l) => l.startsWith('recovered') || l.startsWith('quiesce journal')), lines, 'the lines also went to the log');
  t.same(journal.list(), []);
  t.same((await QuiesceJournal.open(dir)).list(), [], 'and the file on disk says so');
  t.same(await engine.recover(), [], 'a second recover has nothing to do');
});

t.test('recover() keeps what it cannot undo', async (t) => {
  const dir = tmpDir(t, 'vmvault-journal-');
  const s = makeStandIns(dir, SPECS);
  const journal = await QuiesceJournal.open(dir);
  const target = { vm: 'db01', qmp: 'unix:/x' };
  await journal.add({ vm: 'db01', workflow: 'w', quiesce: 'quiesce-vm', undo: 'unquiesce-vm', plugin: 'vm', target });
  await journal.add({ vm: 'db01', workflow: 'w', quiesce: 'quiesce-app', undo: 'unquiesce-app', plugin: 'gone', target });
  s.mark('vm', 'fail', 'unquiesce-vm');
  const registry = new PluginRegistry();
  for (const p of (await loadPluginsFolder(s.pluginsDir)).plugins) registry.register(p);
  const engine = new WorkflowEngine(registry, { journal });
  const lines = await engine.recover();
  t.match(lines[1], "cannot run unquiesce-app for VM 'db01'");
  t.match(lines[1], 'the plug-in is not registered; left in the journal');
  t.match(lines[2], /^FAILED unquiesce-vm for VM 'db01'.*injected failure in unquiesce-vm; left in the journal/);
  t.equal(journal.list().length, 2);
  s.unmark('vm', 'fail', 'unquiesce-vm');
  await engine.recover();
  t.same(journal.list().map((e) => e.plugin), ['gone'], 'the undo that now works is gone from the journal');
});

t.test('a damaged or newer journal is refused with its file name', async (t) => {
  const dir = tmpDir(t, 'vmvault-journal-');
  const file = path.join(dir, JOURNAL_FILE);
  const cases: Array<[string, string, RegExp]> = [
    ['{"format":"vmvault-quiesce-jour', 'CORRUPT_RECORD', /is not JSON; check which VMs may still be frozen/],
    ['{"format":"other","version":1,"open":[]}', 'CORRUPT_RECORD', /is not a vmvault quiesce journal/],
    ['{"format":"vmvault-quiesce-journal","version":2,"open":[]}', 'UNSUPPORTED_FORMAT', /has version 2; this appliance reads 1/],
    ['{"format":"vmvault-quiesce-journal","version":1,"open":[{"id":1}]}', 'CORRUPT_RECORD', /malformed entry list/],
  ];
  for (const [text, code, msg] of cases) {
    fs.writeFileSync(file, text);
    try {
      await QuiesceJournal.open(dir);
      t.fail(`accepted ${text}`);
    } catch (err) {
      t.ok(isVmvaultError(err) && err.code === code, `${code} for ${text}`);
      t.match((err as Error).message, msg);
      t.match((err as Error).message, file);
    }
    t.equal(fs.readFileSync(file, 'utf8'), text, 'the file is left as it was');
  }
});

t.test('a journal that cannot be written: the quiesce is not sent, what was quiesced is undone', async (t) => {
  const dir = tmpDir(t, 'vmvault-journal-');
  const s = makeStandIns(dir, SPECS);
  // The database stand-in breaks the journal while it quiesces: the next journal write (for
  // quiesce-vm) fails. A directory where the journal's temporary file goes fails even for root.
  const tmp = path.join(dir, `${JOURNAL_FILE}.tmp`);
  const dbScript = path.join(s.pluginsDir, 'db');
  fs.writeFileSync(dbScript, fs.readFileSync(dbScript, 'utf8').replace('A="$VMVAULT_ACTION"\n', `A="$VMVAULT_ACTION"\n[ "$A" = quiesce-database ] && mkdir '${tmp}'\n`));
  const registry = new PluginRegistry();
  for (const p of (await loadPluginsFolder(s.pluginsDir)).plugins) registry.register(p);
  const journal = await QuiesceJournal.open(dir);
  const log: string[] = [];
  const engine = new WorkflowEngine(registry, { journal, log: (l) => log.push(l) });
  const run = engine.run(defaultWorkflows().get('app-consistent')!, { vm: 'web01', qmp: 'unix:/x' }, {});
  await t.rejects(run, { code: 'IO', message: /step 2 'quiesce-vm' not sent: the quiesce journal could not record it/ });
  t.same(s.calls(), ['db:quiesce-database', 'db:unquiesce-database'], 'the VM was never frozen; the database was resumed');
  t.match(log.join('\n'), /could not clear quiesce-database from the quiesce journal .*the next start repeats unquiesce-database/);
  t.same(journal.list().map((e) => e.quiesce), ['quiesce-database'], 'memory matches the file: the entry that could not be cleared');
  fs.rmdirSync(tmp);
  const again = await QuiesceJournal.open(dir);
  t.same(again.list().map((e) => e.quiesce), ['quiesce-database'], 'and the file says the same');
  await new WorkflowEngine(registry, { journal: again }).recover();
  t.same(s.calls().slice(2), ['db:unquiesce-database'], 'the next start repeats the (idempotent) undo');
  t.same(again.list(), []);
});

t.test('recover() leaves alone what a running workflow of the same engine holds', async (t) => {
  const dir = tmpDir(t, 'vmvault-journal-');
  const s = makeStandIns(dir, SPECS);
  t.teardown(() => killGroups(s.hangingGroups()));
  s.mark('vm', 'hang', 'snapshot');
  const registry = new PluginRegistry();
  for (const p of (await loadPluginsFolder(s.pluginsDir)).plugins) registry.register(p);
  const journal = await QuiesceJournal.open(dir);
  const engine = new WorkflowEngine(registry, { journal, actionTimeoutMs: 60_000, freezeTimeoutMs: 60_000 });
  const ac = new AbortController();
  const run = engine.run(defaultWorkflows().get('app-consistent')!, { vm: 'web01', qmp: 'unix:/x' }, { signal: ac.signal });
  run.catch(() => {});
  while (!s.calls().includes('vm:snapshot')) await new Promise((r) => setTimeout(r, 20));
  t.equal(journal.list().length, 2, 'two quiesces journaled');
  t.same(await engine.recover(), [], 'nothing left over: the run holds them');
  t.same(s.calls(), ['db:quiesce-database', 'vm:quiesce-vm', 'vm:snapshot'], 'no thaw behind the run\'s back');
  ac.abort();
  await t.rejects(run, { code: 'CANCELLED' });
  t.same(s.calls().slice(3), ['vm:unquiesce-vm', 'db:unquiesce-database'], 'the run undid them itself');
  t.same(journal.list(), []);
});
