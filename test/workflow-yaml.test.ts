// Workflow files: a good one overlays the built-ins; each kind of mistake gets an error that
// names the file, the line and what to do.

import t from 'tap';
import fs from 'node:fs';
import path from 'node:path';
import { tmpDir } from './helpers/tmpdir.js';
import { loadWorkflows, parseWorkflows } from '../src/backup/workflow/workflows.js';
import { isVmvaultError } from '../src/errors.js';

t.test('built-in workflows without a file', async (t) => {
  const m = await loadWorkflows();
  t.same(m.get('app-consistent')!.steps.map((s) => s.action), ['quiesce-database', 'quiesce-vm', 'snapshot', 'unquiesce-vm', 'unquiesce-database', 'copy']);
  t.same(m.get('crash-consistent')!.steps.map((s) => s.action), ['snapshot', 'copy']);
});

t.test('a valid file adds workflows and replaces a built-in by name', async (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, 'workflows.yaml');
  fs.writeFileSync(file, `# operator's workflows
version: 1
workflows:
  vm-only:
    - quiesce-vm
    - action: snapshot
      plugin: qemu
      timeoutMs: 5000
    - unquiesce-vm
    - copy
  crash-consistent:
    description: snapshot only, copy elsewhere
    actions: [snapshot, copy]
  app:
    - quiesce-app
    - quiesce-vm
    - snapshot
    - unquiesce-vm
    - unquiesce-app
    - copy
`);
  const m = await loadWorkflows(file);
  t.same([...m.keys()].sort(), ['app', 'app-consistent', 'crash-consistent', 'vm-only']);
  t.same(m.get('vm-only')!.steps, [{ action: 'quiesce-vm' }, { action: 'snapshot', plugin: 'qemu', timeoutMs: 5000 }, { action: 'unquiesce-vm' }, { action: 'copy' }]);
  t.equal(m.get('vm-only')!.source, `${file}:4`);
  t.equal(m.get('crash-consistent')!.description, 'snapshot only, copy elsewhere');
  t.equal(m.get('app-consistent')!.source, 'built-in');
  t.same(m.get('app-consistent')!.steps.filter((s) => s.optional).map((s) => s.action), ['quiesce-database', 'unquiesce-database'], 'the database steps of the default are optional');
});

// [what, text, expected line, pattern in the message]
const BAD: Array<[string, string, number, RegExp]> = [
  ['not YAML', 'workflows:\n  a:\n    - snapshot\n   - copy\n  b: [\n', 4, /not valid YAML/],
  ['empty file', '# nothing here\n', 1, /the file is empty/],
  ['top level a list', '- snapshot\n', 1, /top level must be a map/],
  ['unknown top-level key', 'workflows:\n  a: [snapshot]\nworkflow:\n  b: [copy]\n', 3, /unknown key 'workflow' at the top level/],
  ['newer version', 'version: 2\nworkflows:\n  a: [snapshot]\n', 1, /version 2 is not supported/],
  ['unknown action', 'workflows:\n  nightly:\n    - snapshot\n    - quiesce-vmm\n    - unquiesce-vm\n', 4, /unknown action 'quiesce-vmm'; did you mean 'quiesce-vm'\?/],
  ['typo of copy', 'workflows:\n  nightly:\n    - snapshot\n    - cpy\n', 4, /unknown action 'cpy'; did you mean 'copy'\?/],
  ['empty workflow', 'workflows:\n  nightly:\n  other: [copy]\n', 2, /workflow 'nightly' is empty/],
  ['empty list', 'workflows:\n  nightly: []\n', 2, /workflow 'nightly' is empty/],
  ['quiesce without unquiesce', 'workflows:\n  n:\n    - quiesce-database\n    - quiesce-vm\n    - snapshot\n    - unquiesce-vm\n    - copy\n', 3, /'quiesce-database' has no 'unquiesce-database' after it/],
  ['unquiesce before quiesce', 'workflows:\n  n:\n    - unquiesce-vm\n    - quiesce-vm\n    - snapshot\n', 3, /'unquiesce-vm' without an earlier 'quiesce-vm'/],
  ['quiesce twice', 'workflows:\n  n:\n    - quiesce-vm\n    - quiesce-vm\n    - unquiesce-vm\n', 4, /'quiesce-vm' again before its 'unquiesce-vm'/],
  ['unknown step key', 'workflows:\n  n:\n    - action: snapshot\n      timeout: 5s\n', 4, /unknown key 'timeout' in a step/],
  ['optional not a boolean', 'workflows:\n  n:\n    - action: snapshot\n      optional: yes please\n', 4, /'optional' must be true or false/],
  ['timeout of wrong type', 'workflows:\n  n:\n    - action: snapshot\n      timeoutMs: "5s"\n', 4, /'timeoutMs' must be a whole number of milliseconds/],
  ['step without action', 'workflows:\n  n:\n    - plugin: qemu\n', 3, /a step without 'action'/],
  ['step of wrong type', 'workflows:\n  n:\n    - 42\n', 3, /a step must be an action name/],
  ['workflow not a list', 'workflows:\n  n: snapshot\n', 2, /must be a list of actions/],
  ['unknown workflow key', 'workflows:\n  n:\n    actions: [copy]\n    retention: 7\n', 4, /unknown key 'retention'/],
  ['bad workflow name', 'workflows:\n  "no spaces": [copy]\n', 2, /workflow name 'no spaces' is not valid/],
  ['workflows not a map', 'workflows: [snapshot, copy]\n', 1, /'workflows' must be a map/],
  ['duplicate workflow', 'workflows:\n  n: [copy]\n  n: [snapshot]\n', 3, /not valid YAML: Map keys must be unique$/],
];

for (const [what, text, line, pattern] of BAD) {
  t.test(`malformed: ${what}`, async (t) => {
    const dir = tmpDir(t);
    const file = path.join(dir, 'workflows.yaml');
    fs.writeFileSync(file, text);
    try {
      await loadWorkflows(file);
      t.fail('accepted');
    } catch (err) {
      t.ok(isVmvaultError(err, 'INVALID_ARGUMENT'), `INVALID_ARGUMENT (got ${(err as Error).message})`);
      const msg = (err as Error).message;
      t.match(msg, pattern);
      t.match(msg, new RegExp(`${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:${line}:\\d+: `), `names ${file} line ${line}: ${msg}`);
    }
  });
}

t.test('several mistakes are all reported, in line order', async (t) => {
  try {
    parseWorkflows('workflows:\n  a:\n    - cpy\n  b:\n    - quiesce-vm\n', 'w.yaml');
    t.fail('accepted');
  } catch (err) {
    const lines = (err as Error).message.split('\n').slice(1);
    t.equal(lines.length, 2);
    t.match(lines[0], /^w\.yaml:3:7: workflow 'a': unknown action 'cpy'/);
    t.match(lines[1], /^w\.yaml:5:7: workflow 'b': 'quiesce-vm' has no 'unquiesce-vm'/);
  }
});

t.test('actions a plug-ins folder declares are known', async (t) => {
  t.throws(() => parseWorkflows('workflows:\n  a: [flush-cache, snapshot]\n', 'w.yaml'), /unknown action 'flush-cache'/);
  const m = parseWorkflows('workflows:\n  a: [flush-cache, snapshot]\n', 'w.yaml', { extraActions: ['flush-cache'] });
  t.same(m.get('a')!.steps.map((s) => s.action), ['flush-cache', 'snapshot']);
  const pair = parseWorkflows('workflows:\n  a: [quiesce-app, snapshot, unquiesce-app]\n', 'w.yaml');
  t.same(pair.get('a')!.steps.map((s) => s.action), ['quiesce-app', 'snapshot', 'unquiesce-app'], 'any quiesce-X/unquiesce-X pair is accepted');
});

t.test('a missing file is NOT_FOUND naming it', async (t) => {
  await t.rejects(loadWorkflows('/nonexistent/workflows.yaml'), { code: 'NOT_FOUND', message: /workflow file \/nonexistent\/workflows.yaml does not exist/ });
});
