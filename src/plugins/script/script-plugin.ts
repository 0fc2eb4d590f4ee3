// The built-in `script` plug-in: a VM's own executable (its `script` setting), speaking the
// executable plug-in protocol (PROTOCOL.md). What it performs is asked anew at each run's
// prepare(), so an operator's edit to the script takes effect at the next backup.

import type { ActionContext, ActionName, Plugin, WorkflowTarget } from '../plugin-api.js';
import { describeExecutable, runAction, type ExecutableDescription } from './executable-plugin.js';

const RUN_BACKSTOP_MS = 24 * 3600 * 1000;

export class ScriptPlugin implements Plugin {
  readonly name = 'script';
  private readonly described = new Map<string, ExecutableDescription>();

  constructor(private readonly opts: { describeTimeoutMs?: number; log?: (l: string) => void } = {}) {}

  async prepare(target: WorkflowTarget, signal: AbortSignal): Promise<void> {
    if (typeof target.script !== 'string') return;
    const d = await describeExecutable(target.script, { timeoutMs: this.opts.describeTimeoutMs, signal, log: this.opts.log });
    this.described.set(target.script, d);
  }

  performs(action: ActionName, target: WorkflowTarget): boolean {
    if (typeof target.script !== 'string') return false;
    const d = this.described.get(target.script);
    return d !== undefined && d.actions.includes(action) && (d.vms === undefined || d.vms.includes(target.vm));
  }

  /** Runs without a prior describe too: recovery after a restart undoes through here. */
  run(action: ActionName, ctx: ActionContext): Promise<unknown> {
    return runAction(ctx.target.script as string, action, ctx, RUN_BACKSTOP_MS);
  }
}
