// The contract every backup plug-in implements. It lives in plugins/ (the lower layer) so a
// plug-in never imports backup/; backup/workflow/plugin.ts re-exports it as the engine's view.

/** The actions a workflow is made of. Plug-ins may perform other names (a script's own steps). */
export type ActionName =
  | 'quiesce-database'
  | 'unquiesce-database'
  | 'quiesce-vm'
  | 'unquiesce-vm'
  | 'snapshot'
  | 'copy'
  | string;

/**
 * What a plug-in may know of the VM it works on: the VM registry's entry, never the store.
 * `qmp`/`qga` are 'unix:/path' or 'tcp:host:port'; `pg` a postgres:// URL; `script` the path of
 * an operator's executable for the built-in script plug-in.
 */
export interface WorkflowTarget {
  vm: string;
  qmp: string;
  qga?: string;
  pg?: string;
  script?: string;
  [k: string]: unknown;
}

export interface ActionContext {
  target: WorkflowTarget;
  /**
   * Aborted when the action's deadline passes, the freeze bound passes or the run is cancelled.
   * A plug-in must stop promptly (kill its child, close its socket); the engine does not wait
   * long for it.
   */
  signal: AbortSignal;
  /** One line into the job log; the engine prefixes the plug-in and action. */
  log(line: string): void;
  /** Shared by the actions of one run (e.g. the fleecing handle from snapshot to copy). */
  state: Map<string, unknown>;
}

/**
 * A plug-in performs some actions for some targets. Guarantees the engine relies on:
 * - `performs` is cheap and has no side effects (it is asked for every action of a workflow
 *   before anything runs, so an unknown action fails before any quiesce).
 * - every `unquiesce-X` is idempotent: the engine undoes a quiesce whose outcome is unknown
 *   (timed out, cancelled, failed half-way), and recovery after a crash may repeat an undo that
 *   had already happened.
 * - `run` rejects with an Error whose message says what failed; a VmvaultError's code is kept.
 */
export interface Plugin {
  name: string;
  /** Whether this plug-in performs `action` for this target (e.g. postgresql only when target.pg is set). */
  performs(action: ActionName, target: WorkflowTarget): boolean;
  run(action: ActionName, ctx: ActionContext): Promise<unknown>;
  /**
   * Optional: called once per run before `performs` is asked, with the run's signal, to learn
   * what the plug-in can do for this target (the script plug-in asks its executable `describe`).
   */
  prepare?(target: WorkflowTarget, signal: AbortSignal): Promise<void>;
  /** Optional: this plug-in's own deadline for an action in ms (0 = none, e.g. a long copy). */
  timeoutMs?(action: ActionName): number | undefined;
}

/** quiesce-X -> unquiesce-X; null when `action` is not a quiesce. */
export function undoOf(action: ActionName): string | null {
  return action.startsWith('quiesce-') ? `un${action}` : null;
}
