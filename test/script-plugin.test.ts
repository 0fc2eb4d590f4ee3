// The script plug-in and the plug-ins folder against real executables whose output is
// hostile: not JSON, huge, failing, hanging (with children), chatty on stderr.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { tmpDir } from './helpers/tmpdir.js';
import { groupGone, killGroups } from './helpers/stand-in-plugins.js';
import { runExecutable, MAX_STDERR_BYTES } from '../src/plugins/script/executable.js';
import { ExecutablePlugin, describeExecutable, runAction } from '../src/plugins/script/executable-plugin.js';
import { ScriptPlugin } from '../src/plugins/script/script-plugin.js';
import { loadPluginsFolder } from '../src/backup/workflow/executable-plugins.js';
import { PluginRegistry } from '../src/backup/workflow/registry.js';
import { WorkflowEngine } from '../src/backup/workflow/engine.js';
import { QuiesceJournal } from '../src/backup/workflow/journal.js';
import type { ActionContext } from '../src/backup/workflow/plugin.js';

function script(dir: string, name: string, body: string, mode = 0o755): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, `#!/bin/sh\n${body}\n`, { mode });
  return file;
}

function ctx(log: string[], signal = new AbortController().signal): ActionContext {
  return { target: { vm: 'web01', qmp: 'unix:/x' }, signal, log: (l) => log.push(l), state: new Map() };
}

t.test('an answer that is not a JSON object is refused, quoting its start', async (t) => {
  const dir = tmpDir(t);
  const cases: Array<[string, RegExp]> = [
    ['echo hello', /answered with something that is not JSON: "hello"/],
    ['true', /answered with something that is not JSON: \(nothing\)/],
    ['echo "[1,2]"', /JSON that is not an object: "\[1,2\]"/],
    ['echo \'{"result":1}\'', /the answer lacks "ok": true or false/],
    ['echo \'{"ok":false}\'', /reported failure: \(no "error" given\)/],
    ['echo \'{"ok":false,"error":"disk on fire"}\'', /reported failure: disk on fire/],
  ];
  for (const [body, msg] of cases) {
    const file = script(dir, 'p', body);
    await t.rejects(runAction(file, 'snapshot', ctx([]), 5000), { code: 'PLUGIN_FAILED', message: msg }, body);
  }
});

t.test('huge stdout is capped: the process group is killed and the call fails', async (t) => {
  const dir = tmpDir(t);
  const file = script(dir, 'p', 'echo $$ > "$0.pid"; exec yes "{}"');
  const t0 = Date.now();
  await t.rejects(runAction(file, 'copy', ctx([]), 60_000), { code: 'PLUGIN_FAILED', message: /wrote more than 1048576 bytes to stdout; killed it/ });
  t.ok(Date.now() - t0 < 10_000, 'without waiting for the deadline');
  const pgid = Number(fs.readFileSync(`${file}.pid`, 'utf8'));
  t.ok(await groupGone(pgid), 'the writer is dead');
});

t.test('non-zero exit: the code and the last stderr lines, stderr into the log', async (t) => {
  const dir = tmpDir(t);
  const file = script(dir, 'p', 'echo "first line" >&2; echo "cannot connect to guest" >&2; exit 7');
  const log: string[] = [];
  await t.rejects(runAction(file, 'quiesce-vm', ctx(log), 5000), {
    code: 'PLUGIN_FAILED',
    message: /run \(quiesce-vm\) exited with code 7; stderr: first line \| cannot connect to guest/,
  });
  t.same(log, ['stderr: first line', 'stderr: cannot connect to guest']);
});

t.test('killed by a signal is a failure', async (t) => {
  const dir = tmpDir(t);
  const file = script(dir, 'p', 'kill -TERM $$');
  await t.rejects(runAction(file, 'snapshot', ctx([]), 5000), { code: 'PLUGIN_FAILED', message: /was killed by SIGTERM/ });
});

t.test('a hang is killed at the deadline, children included', async (t) => {
  const dir = tmpDir(t);
  // The script starts a background child and waits: killing only the script would leave it.
  const file = script(dir, 'p', 'echo $$ > "$0.pid"; sleep 1000 & wait');
  t.teardown(() => { if (fs.existsSync(`${file}.pid`)) killGroups([Number(fs.readFileSync(`${file}.pid`, 'utf8'))]); });
  const t0 = Date.now();
  await t.rejects(runExecutable(file, ['run'], '{}', { timeoutMs: 300 }), { code: 'TIMEOUT', message: /did not finish within 300 ms; killed its process group/ });
  t.ok(Date.now() - t0 < 3000, `returned after ${Date.now() - t0} ms`);
  t.ok(await groupGone(Number(fs.readFileSync(`${file}.pid`, 'utf8'))), 'script and its sleep are gone');
});

t.test('cancel kills it too', async (t) => {
  const dir = tmpDir(t);
  const file = script(dir, 'p', 'echo $$ > "$0.pid"; sleep 1000 & wait');
  t.teardown(() => { if (fs.existsSync(`${file}.pid`)) killGroups([Number(fs.readFileSync(`${file}.pid`, 'utf8'))]); });
  const ac = new AbortController();
  setTimeout(() => ac.abort(), 200);
  await t.rejects(runAction(file, 'snapshot', ctx([], ac.signal), 60_000), { code: 'CANCELLED', message: /was cancelled; killed its process group/ });
  t.ok(await groupGone(Number(fs.readFileSync(`${file}.pid`, 'utf8'))), 'script and its sleep are gone');
});

t.test('stderr into the log is capped', async (t) => {
  const dir = tmpDir(t);
  const file = script(dir, 'p', 'i=0; while [ $i -lt 4000 ]; do echo "noise line $i with some padding to make it longer" >&2; i=$((i+1)); done; echo \'{"ok":true}\'');
  const log: string[] = [];
  await runAction(file, 'snapshot', ctx(log), 30_000);
  const logged = log.slice(0, -1).map((l) => l.slice('stderr: '.length));
  const bytes = Buffer.byteLength(logged.join('\n')); // the lines and the newlines between them
  t.ok(bytes <= MAX_STDERR_BYTES, `${bytes} bytes of stderr logged`);
  t.ok(bytes > MAX_STDERR_BYTES - 200, 'up to the cap');
  t.match(log[log.length - 1], /stderr over 65536 bytes: \d+ more bytes dropped/);
  t.equal(log[0], 'stderr: noise line 0 with some padding to make it longer');
});

t.test('an executable that cannot run says why', async (t) => {
  const dir = tmpDir(t);
  await t.rejects(runAction(path.join(dir, 'absent'), 'snapshot', ctx([]), 5000), { code: 'PLUGIN_FAILED', message: /cannot run .*absent run \(snapshot\): .*\(no such file\)/ });
  const noexec = script(dir, 'noexec', 'exit 0', 0o644);
  await t.rejects(runAction(noexec, 'snapshot', ctx([]), 5000), { code: 'PLUGIN_FAILED', message: /not executable: chmod \+x it/ });
});

t.test('describe answers are checked', async (t) => {
  const dir = tmpDir(t);
  const cases: Array<[string, string, RegExp]> = [
    ['{"actions":["snapshot"]}', 'PLUGIN_FAILED', /lacks "protocol": 1/],
    ['{"protocol":2,"actions":["snapshot"]}', 'UNSUPPORTED_FORMAT', /speaks plug-in protocol 2; this appliance speaks 1/],
    ['{"protocol":1,"actions":[]}', 'PLUGIN_FAILED', /"actions" must be a non-empty list/],
    ['{"protocol":1,"actions":["Snap Shot"]}', 'PLUGIN_FAILED', /"actions" must be a non-empty list of action names/],
    ['{"protocol":1,"actions":["snapshot"],"name":"a b"}', 'PLUGIN_FAILED', /"name" must be/],
    ['{"protocol":1,"actions":["snapshot"],"vms":"web01"}', 'PLUGIN_FAILED', /"vms" must be a list/],
  ];
  for (const [answer, code, msg] of cases) {
    const file = script(dir, 'p', `echo '${answer}'`);
    await t.rejects(describeExecutable(file), { code, message: msg }, answer);
  }
  const ok = await describeExecutable(script(dir, 'p', `echo '{"protocol":1,"actions":["snapshot"],"vms":["web01"]}'`));
  t.same(ok, { name: undefined, actions: ['snapshot'], vms: ['web01'] });
});

t.test('plug-ins folder: loads the good, reports the bad, skips the rest', async (t) => {
  const dir = tmpDir(t);
  const folder = path.join(dir, 'plugins');
  fs.mkdirSync(folder);
  script(folder, 'app-freeze.sh', `[ "$1" = describe ] && echo '{"protocol":1,"actions":["quiesce-app","unquiesce-app"],"vms":["web01"]}'`);
  script(folder, 'named', `[ "$1" = describe ] && echo '{"protocol":1,"name":"notifier","actions":["notify"]}'`);
  script(folder, 'clash', `[ "$1" = describe ] && echo '{"protocol":1,"name":"notifier","actions":["notify"]}'`);
  script(folder, 'broken', 'echo nonsense');
  script(folder, 'hangs', 'sleep 1000');
  script(folder, 'README', 'not a plug-in', 0o644);
  script(folder, '.hidden', 'exit 1');
  fs.mkdirSync(path.join(folder, 'subdir'));
  const log: string[] = [];
  const r = await loadPluginsFolder(folder, { describeTimeoutMs: 500, log: (l) => log.push(l), reservedNames: ['qemu'] });
  // Sorted by file name: 'clash' takes the name 'notifier' first, so 'named' is the one refused.
  t.same(r.plugins.map((p) => [path.basename(p.file), p.name]), [['app-freeze.sh', 'app-freeze'], ['clash', 'notifier']]);
  t.same(r.actions, ['quiesce-app', 'unquiesce-app', 'notify']);
  t.equal(r.problems.length, 4);
  t.match(r.problems.join('\n'), /broken left out: .*not JSON: "nonsense"/);
  t.match(r.problems.join('\n'), /named calls itself 'notifier', a name already taken/);
  t.match(r.problems.join('\n'), /hangs left out: .*did not finish within 500 ms/);
  t.match(r.problems.join('\n'), /README is not executable; chmod \+x it/);
  t.same(log, r.problems, 'problems are logged');
  const app = r.plugins[0];
  t.ok(app.performs('quiesce-app', { vm: 'web01', qmp: '' }));
  t.notOk(app.performs('quiesce-app', { vm: 'db01', qmp: '' }), 'only for the VMs it names');
  t.notOk(app.performs('snapshot', { vm: 'web01', qmp: '' }));
  t.same(await loadPluginsFolder(path.join(dir, 'absent')), { plugins: [], problems: [], actions: [] }, 'no folder, no plug-ins');
});

t.test('the built-in script plug-in runs the VM\'s own executable through the engine', async (t) => {
  const dir = tmpDir(t);
  const calls = path.join(dir, 'calls');
  const file = script(dir, 'web01-hooks', `
if [ "$1" = describe ]; then echo '{"protocol":1,"actions":["quiesce-app","unquiesce-app","snapshot"]}'; exit 0; fi
input=$(cat)
echo "$VMVAULT_ACTION $input" >> '${calls}'
echo '{"ok":true,"result":"done '"$VMVAULT_ACTION"'"}'`);
  const registry = new PluginRegistry();
  registry.register(new ScriptPlugin());
  const engine = new WorkflowEngine(registry, { journal: await QuiesceJournal.open(dir) });
  const wf = { name: 'hooks', steps: [{ action: 'quiesce-app' }, { action: 'snapshot' }, { action: 'unquiesce-app' }], source: 'test' };
  const target = { vm: 'web01', qmp: 'unix:/x', script: file };
  const report = await engine.run(wf, target, {});
  t.same(report.actions.map((a) => [a.action, a.plugin, a.result]), [
    ['quiesce-app', 'script', 'done quiesce-app'],
    ['snapshot', 'script', 'done snapshot'],
    ['unquiesce-app', 'script', 'done unquiesce-app'],
  ]);
  const lines = fs.readFileSync(calls, 'utf8').trim().split('\n');
  t.equal(lines.length, 3);
  t.same(JSON.parse(lines[0].slice('quiesce-app '.length)), { protocol: 1, action: 'quiesce-app', target });
  await t.rejects(engine.run(wf, { vm: 'db01', qmp: 'unix:/x' }, {}), { code: 'NOT_FOUND', message: /no plug-in performs action 'quiesce-app' for VM 'db01'/ }, 'a VM without a script');
});

t.test('ExecutablePlugin names itself after its file without extension', async (t) => {
  const p = new ExecutablePlugin('/opt/plugins/pacemaker.py', { actions: ['quiesce-cluster'] });
  t.equal(p.name, 'pacemaker');
});
