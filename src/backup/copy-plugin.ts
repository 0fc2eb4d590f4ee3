// The `copy` action: a core plug-in the backup service registers (plug-ins in plugins/ know
// nothing of the store). The service puts the run's CopyJob in the workflow state; this plug-in
// runs it with the action's signal and log. The copy has no deadline of its own (a large disk
// takes as long as it takes); cancel goes through the signal.

import { vmError } from '../errors.js';
import type { ActionContext, ActionName, Plugin, WorkflowTarget } from './workflow/plugin.js';

export const COPY_JOB_KEY = 'backup.copy';

export interface CopyJob {
  run(signal: AbortSignal, log: (line: string) => void): Promise<void>;
}

export class CopyPlugin implements Plugin {
  readonly name = 'vmvault-copy';

  performs(action: ActionName, _target: WorkflowTarget): boolean {
    return action === 'copy';
  }

  timeoutMs(): number {
    return 0;
  }

  async run(action: ActionName, ctx: ActionContext): Promise<unknown> {
    if (action !== 'copy') throw vmError('NOT_SUPPORTED', `the copy plug-in does not perform '${action}'`);
    const job = ctx.state.get(COPY_JOB_KEY) as CopyJob | undefined;
    if (!job) throw vmError('INVALID_ARGUMENT', `copy of ${ctx.target.vm}: no backup is running for it (copy runs only inside a backup)`);
    await job.run(ctx.signal, (l) => ctx.log(l));
    return undefined;
  }
}
