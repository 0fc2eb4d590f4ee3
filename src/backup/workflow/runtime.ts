// Everything the backup service needs to run workflows, opened in one call: the journal in
// the data directory, the registry (the caller's plug-ins first, e.g. qemu and copy, then the
// built-in postgresql and script, then the plug-ins folder), the workflows file, the engine.
// Registration order decides who performs an action when several could (registry.ts).

import fs from 'node:fs';
import path from 'node:path';
import { vmError } from '../../errors.js';
import { PostgresqlPlugin } from '../../plugins/postgresql/postgresql-plugin.js';
import { ScriptPlugin } from '../../plugins/script/script-plugin.js';
import { WorkflowEngine } from './engine.js';
import { loadPluginsFolder } from './executable-plugins.js';
import { QuiesceJournal } from './journal.js';
import type { Plugin } from './plugin.js';
import { PluginRegistry } from './registry.js';
import { loadWorkflows, type Workflow } from './workflows.js';

export const WORKFLOWS_FILE = 'workflows.yaml';
export const PLUGINS_DIR = 'plugins';

export interface WorkflowRuntimeOptions {
  dataDir: string;
  /** Default `<data>/workflows.yaml` when it exists, else the built-in workflows. Given and missing: NOT_FOUND. */
  workflowsFile?: string;
  /** Default `<data>/plugins`; a missing folder has no plug-ins. */
  pluginsDir?: string;
  /** Registered before the built-ins (the backup service's qemu and copy plug-ins). */
  plugins?: Plugin[];
  freezeTimeoutMs?: number;
  actionTimeoutMs?: number;
  log?: (line: string) => void;
}

export class WorkflowRuntime {
  private constructor(
    readonly registry: PluginRegistry,
    readonly engine: WorkflowEngine,
    readonly journal: QuiesceJournal,
    readonly workflows: Map<string, Workflow>,
    /** Plug-ins folder files left out, one line each (also logged). */
    readonly pluginProblems: string[],
  ) {}

  static async open(opts: WorkflowRuntimeOptions): Promise<WorkflowRuntime> {
    const log = opts.log ?? (() => {});
    const registry = new PluginRegistry({ log });
    for (const p of opts.plugins ?? []) registry.register(p);
    registry.register(new PostgresqlPlugin());
    registry.register(new ScriptPlugin({ log }));
    const folder = await loadPluginsFolder(opts.pluginsDir ?? path.join(opts.dataDir, PLUGINS_DIR), {
      log, reservedNames: registry.list().map((p) => p.name),
    });
    for (const p of folder.plugins) registry.register(p);
    let file = opts.workflowsFile;
    if (file === undefined) {
      const inData = path.join(opts.dataDir, WORKFLOWS_FILE);
      if (fs.existsSync(inData)) file = inData;
    }
    const workflows = await loadWorkflows(file, { extraActions: folder.actions });
    const journal = await QuiesceJournal.open(opts.dataDir);
    const engine = new WorkflowEngine(registry, { journal, freezeTimeoutMs: opts.freezeTimeoutMs, actionTimeoutMs: opts.actionTimeoutMs, log });
    return new WorkflowRuntime(registry, engine, journal, workflows, folder.problems);
  }

  /** The named workflow, or NOT_FOUND listing the names there are. */
  workflow(name: string): Workflow {
    const w = this.workflows.get(name);
    if (!w) throw vmError('NOT_FOUND', `no workflow named '${name}' (defined: ${[...this.workflows.keys()].join(', ')})`, { workflow: name });
    return w;
  }
}
