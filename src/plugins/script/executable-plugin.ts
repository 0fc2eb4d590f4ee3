// A plug-in that is an operator's executable (protocol 1, PROTOCOL.md): what it performs comes
// from its `describe` answer; each action is one `run` call with {action, target} on stdin.

import path from 'node:path';
import { vmError } from '../../errors.js';
import type { ActionContext, ActionName, Plugin, WorkflowTarget } from '../plugin-api.js';
import { parseAnswer, runExecutable } from './executable.js';

export const SCRIPT_PROTOCOL_VERSION = 1;
export const DESCRIBE_TIMEOUT_MS = 10_000;
const ACTION_NAME = /^[a-z][a-z0-9-]*$/;
const PLUGIN_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export interface ExecutableDescription {
  name?: string;
  actions: string[];
  vms?: string[];
}

/** Asks `file describe` and checks its answer. */
export async function describeExecutable(file: string, opts: { timeoutMs?: number; signal?: AbortSignal; log?: (l: string) => void } = {}): Promise<ExecutableDescription> {
  const what = `${file} describe`;
  const { stdout } = await runExecutable(file, ['describe'], '', {
    timeoutMs: opts.timeoutMs ?? DESCRIBE_TIMEOUT_MS,
    signal: opts.signal,
    onStderrLine: (l) => opts.log?.(`${path.basename(file)} describe: ${l}`),
  });
  const a = parseAnswer(stdout, what);
  if (typeof a.protocol !== 'number') {
    throw vmError('PLUGIN_FAILED', `${what}: the answer lacks "protocol": ${SCRIPT_PROTOCOL_VERSION}`);
  }
  if (a.protocol > SCRIPT_PROTOCOL_VERSION) {
    throw vmError('UNSUPPORTED_FORMAT', `${what}: speaks plug-in protocol ${a.protocol}; this appliance speaks ${SCRIPT_PROTOCOL_VERSION}`);
  }
  if (!Array.isArray(a.actions) || a.actions.length === 0 || !a.actions.every((x) => typeof x === 'string' && ACTION_NAME.test(x))) {
    throw vmError('PLUGIN_FAILED', `${what}: "actions" must be a non-empty list of action names (lower-case letters, digits, '-')`);
  }
  if (a.name !== undefined && (typeof a.name !== 'string' || !PLUGIN_NAME.test(a.name))) {
    throw vmError('PLUGIN_FAILED', `${what}: "name" must be letters, digits, '.', '_' or '-'`);
  }
  if (a.vms !== undefined && (!Array.isArray(a.vms) || !a.vms.every((x) => typeof x === 'string'))) {
    throw vmError('PLUGIN_FAILED', `${what}: "vms" must be a list of VM names`);
  }
  return { name: a.name as string | undefined, actions: a.actions as string[], vms: a.vms as string[] | undefined };
}

/** One `file run` call for `action`; resolves with the answer's result. */
export async function runAction(file: string, action: ActionName, ctx: ActionContext, timeoutMs: number): Promise<unknown> {
  const what = `${file} run (${action})`;
  const input = JSON.stringify({ protocol: SCRIPT_PROTOCOL_VERSION, action, target: ctx.target }) + '\n';
  const { stdout } = await runExecutable(file, ['run'], input, {
    // The engine owns the step's deadline and aborts ctx.signal; this one only backs it up.
    timeoutMs,
    signal: ctx.signal,
    onStderrLine: (l) => ctx.log(`stderr: ${l}`),
    env: { VMVAULT_ACTION: action, VMVAULT_VM: ctx.target.vm },
    label: what,
  });
  const a = parseAnswer(stdout, what);
  if (a.ok === true) return a.result;
  if (a.ok === false) {
    const why = typeof a.error === 'string' && a.error !== '' ? a.error.slice(0, 2000) : '(no "error" given)';
    throw vmError('PLUGIN_FAILED', `${what} reported failure: ${why}`);
  }
  throw vmError('PLUGIN_FAILED', `${what}: the answer lacks "ok": true or false`);
}

/** A backstop deadline for a run whose engine gave none (0). */
const RUN_BACKSTOP_MS = 24 * 3600 * 1000;

/** A plug-ins folder executable: performs what it described, for the VMs it named. */
export class ExecutablePlugin implements Plugin {
  readonly name: string;
  private readonly actions: Set<string>;

  constructor(readonly file: string, readonly description: ExecutableDescription, private readonly runTimeoutMs = RUN_BACKSTOP_MS) {
    this.name = description.name ?? path.basename(file).replace(/\.[^.]*$/, '');
    this.actions = new Set(description.actions);
  }

  static async load(file: string, opts: { timeoutMs?: number; log?: (l: string) => void } = {}): Promise<ExecutablePlugin> {
    return new ExecutablePlugin(file, await describeExecutable(file, opts));
  }

  performs(action: ActionName, target: WorkflowTarget): boolean {
    return this.actions.has(action) && (this.description.vms === undefined || this.description.vms.includes(target.vm));
  }

  run(action: ActionName, ctx: ActionContext): Promise<unknown> {
    return runAction(this.file, action, ctx, this.runTimeoutMs);
  }
}
