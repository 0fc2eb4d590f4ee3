// `vmvault dr copy --to DIR`: asks the appliance for a disaster-recovery copy (a job, watched
// with a progress bar like gc). `dr restore` and `dr verify` run without an appliance and never
// reach this file: bin/vmvault.js sends them to src/appliance-dr.ts.

import { usage } from '../cli-error.js';
import { type CommandContext, expectArgs, refuseOptions } from './context.js';
import { startAndWatch } from './jobs.js';

export async function drCommand(ctx: CommandContext, args: string[]): Promise<number> {
  const [verb, ...rest] = args;
  if (verb === 'copy') {
    expectArgs(rest, [], 'dr copy --to <dir>');
    refuseOptions(ctx.flags, 'dr copy', ['to']);
    const to = ctx.flags.to;
    if (to === undefined) throw usage("dr copy: --to is required: an absolute directory on the appliance host, or a directory destination's name");
    return startAndWatch(ctx, '/dr/copies', { to });
  }
  throw usage(`dr: expected copy, restore or verify, got ${verb === undefined ? 'nothing' : JSON.stringify(verb)}`);
}
