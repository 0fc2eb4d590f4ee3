// A process that runs the app-consistent workflow with the plug-ins folder argv[2]/plugins and
// its journal in argv[2], for a test to SIGKILL it mid-freeze. A plain node process (no
// test-runner hooks in the process being killed).

import { PluginRegistry } from '../../src/backup/workflow/registry.js';
import { WorkflowEngine } from '../../src/backup/workflow/engine.js';
import { QuiesceJournal } from '../../src/backup/workflow/journal.js';
import { defaultWorkflows } from '../../src/backup/workflow/workflows.js';
import { loadPluginsFolder } from '../../src/backup/workflow/executable-plugins.js';

const dir = process.argv[2];
const registry = new PluginRegistry();
for (const p of (await loadPluginsFolder(`${dir}/plugins`)).plugins) registry.register(p);
const engine = new WorkflowEngine(registry, { journal: await QuiesceJournal.open(dir), actionTimeoutMs: 600_000, freezeTimeoutMs: 600_000 });
process.send?.('ready');
await engine.run(defaultWorkflows().get('app-consistent')!, { vm: 'web01', qmp: 'unix:/nonexistent.qmp' }, {});
