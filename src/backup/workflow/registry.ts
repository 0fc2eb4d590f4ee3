// Which plug-in performs an action for a target. The engine knows actions and this registry,
// never QEMU or PostgreSQL by name (VZDump's driver loop knows none of its guest plug-ins).

import { vmError } from '../../errors.js';
import type { ActionName, Plugin, WorkflowTarget } from './plugin.js';

export class PluginRegistry {
  private readonly plugins: Plugin[] = [];
  private readonly log: (line: string) => void;

  constructor(opts: { log?: (line: string) => void } = {}) {
    this.log = opts.log ?? (() => {});
  }

  /** Adds a plug-in. Names are unique: a second one with the same name is refused. */
  register(plugin: Plugin): void {
    if (typeof plugin?.name !== 'string' || plugin.name === '') {
      throw vmError('INVALID_ARGUMENT', 'a plug-in needs a non-empty name');
    }
    if (this.plugins.some((p) => p.name === plugin.name)) {
      throw vmError('ALREADY_EXISTS', `a plug-in named '${plugin.name}' is already registered`);
    }
    this.plugins.push(plugin);
  }

  list(): readonly Plugin[] {
    return this.plugins;
  }

  get(name: string): Plugin {
    const p = this.plugins.find((x) => x.name === name);
    if (!p) throw vmError('NOT_FOUND', `no plug-in named '${name}' (registered: ${this.names()})`);
    return p;
  }

  /**
   * The plug-in that performs `action` for `target`: the first registered that says so (a
   * second candidate is logged, so an operator sees which one won). `only` pins a plug-in by
   * name, as a workflow step may. None -> NOT_FOUND naming action and target.
   */
  find(action: ActionName, target: WorkflowTarget, only?: string): Plugin {
    const candidates = (only === undefined ? this.plugins : [this.get(only)]).filter((p) => p.performs(action, target));
    if (candidates.length === 0) {
      const why = only === undefined
        ? `none of the registered plug-ins (${this.names()}) performs it for this VM`
        : `plug-in '${only}' does not perform it for this VM`;
      throw vmError(
        'NOT_FOUND',
        `no plug-in performs action '${action}' for VM '${target.vm}': ${why}; ` +
          `configure what it needs (e.g. --qga for quiesce-vm, --pg for quiesce-database) or use a workflow without it`,
        { action, vm: target.vm },
      );
    }
    if (candidates.length > 1) {
      this.log(`action ${action} for ${target.vm}: plug-ins ${candidates.map((p) => p.name).join(', ')} all perform it; using ${candidates[0].name} (registered first)`);
    }
    return candidates[0];
  }

  private names(): string {
    return this.plugins.length === 0 ? 'none' : this.plugins.map((p) => p.name).join(', ');
  }
}
