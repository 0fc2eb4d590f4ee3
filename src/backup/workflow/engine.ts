// The workflow engine: runs a workflow's actions in order through the plug-ins the registry
// names, and keeps one promise whatever happens: every quiesce it sent is undone, in reverse
// order, within a deadline. Each quiesce is written to the journal before it is sent and
// cleared after its unquiesce answered, so a killed appliance's successor can undo it
// (recover()). The guest's freeze (quiesce-vm sent until unquiesce-vm answered) is bounded by
// freezeTimeoutMs: past it the running step is abandoned and the VM thawed.
//
// Rules a reader can check here:
// - Every step is resolved to a plug-in before the first runs: an unknown action freezes nothing.
// - A quiesce whose outcome is unknown (failed, timed out, cancelled) is undone like a
//   succeeded one; plug-ins' unquiesce actions are idempotent (plugin-api.ts).
// - Undo steps do not listen to the run's cancel: a cancel must still thaw. Each has its own
//   deadline; one that fails stays in the journal for recover() and is named in the error.

import { isVmvaultError, vmError, type ErrorCode } from '../../errors.js';
import { undoOf, type ActionName, type ActionContext, type Plugin, type WorkflowTarget } from './plugin.js';
import type { PluginRegistry } from './registry.js';
import type { QuiesceJournal, JournalEntry } from './journal.js';
import type { Workflow } from './workflows.js';

/** The action whose success starts the guest freeze, and the one that ends it. */
export const FREEZE_ACTION = 'quiesce-vm';
export const THAW_ACTION = 'unquiesce-vm';

export const DEFAULT_FREEZE_TIMEOUT_MS = 10_000;
export const DEFAULT_ACTION_TIMEOUT_MS = 60_000;
/** How long an abandoned action may take to settle (its plug-in saw the abort) before undo starts. */
const ABANDON_GRACE_MS = 1_000;

export type Outcome = 'ok' | 'failed' | 'timeout' | 'cancelled' | 'freeze-timeout' | 'skipped';

export interface ActionReport {
  /** Index of the step in the workflow; null for an undo the engine added. */
  step: number | null;
  action: ActionName;
  plugin: string;
  /** 'run': a step of the workflow; 'undo': an unquiesce the engine ran because the run failed. */
  phase: 'run' | 'undo';
  startedAt: string;
  durationMs: number;
  outcome: Outcome;
  error?: string;
  result?: unknown;
}

export interface WorkflowReport {
  workflow: string;
  vm: string;
  ok: boolean;
  startedAt: string;
  durationMs: number;
  /** quiesce-vm sent until unquiesce-vm answered, in ms; null when the workflow does not freeze. */
  freezeMs: number | null;
  actions: ActionReport[];
  /** Quiesces still open after the run (their undo failed): kept in the journal for recover(). */
  stillOpen: string[];
  error?: { code: ErrorCode; message: string };
}

export interface EngineOptions {
  journal: QuiesceJournal;
  freezeTimeoutMs?: number;
  actionTimeoutMs?: number;
  log?: (line: string) => void;
  /** Injectable clock for durations (ms, monotonic). */
  now?: () => number;
}

interface OpenQuiesce {
  quiesce: ActionName;
  undo: ActionName;
  undoPlugin: Plugin;
  undoTimeoutMs: number;
  entry: JournalEntry;
}

interface StepResult { outcome: Outcome; error?: unknown; result?: unknown }

export class WorkflowEngine {
  private readonly journal: QuiesceJournal;
  private readonly freezeTimeoutMs: number;
  private readonly actionTimeoutMs: number;
  private readonly log: (line: string) => void;
  private readonly now: () => number;
  /** Journal entries of quiesces that a run of this engine holds right now: recover() leaves them alone. */
  private readonly held = new Set<string>();

  constructor(private readonly registry: PluginRegistry, opts: EngineOptions) {
    this.journal = opts.journal;
    this.freezeTimeoutMs = opts.freezeTimeoutMs ?? DEFAULT_FREEZE_TIMEOUT_MS;
    this.actionTimeoutMs = opts.actionTimeoutMs ?? DEFAULT_ACTION_TIMEOUT_MS;
    this.log = opts.log ?? (() => {});
    this.now = opts.now ?? (() => performance.now());
    if (!(this.freezeTimeoutMs > 0)) throw vmError('INVALID_ARGUMENT', `freezeTimeoutMs must be > 0, got ${this.freezeTimeoutMs}`);
    if (!(this.actionTimeoutMs >= 0)) throw vmError('INVALID_ARGUMENT', `actionTimeoutMs must be >= 0, got ${this.actionTimeoutMs}`);
  }

  /**
   * Runs `workflow` for `target`. Resolves with the report when every action succeeded; rejects
   * with a VmvaultError (code of the failure: TIMEOUT, CANCELLED, PLUGIN_FAILED or the plug-in's
   * own) whose `details.report` is the report, after every quiesce was undone.
   */
  async run(workflow: Workflow, target: WorkflowTarget, opts: { signal?: AbortSignal; state?: Map<string, unknown> } = {}): Promise<WorkflowReport> {
    const cancel = opts.signal ?? new AbortController().signal;
    const state = opts.state ?? new Map<string, unknown>();
    const t0 = this.now();
    const report: WorkflowReport = {
      workflow: workflow.name, vm: target.vm, ok: false, startedAt: new Date().toISOString(),
      durationMs: 0, freezeMs: null, actions: [], stillOpen: [],
    };
    const say = (line: string): void => this.log(`[${target.vm}] ${line}`);
    const open: OpenQuiesce[] = [];
    let failure: { code: ErrorCode; message: string; cause?: unknown } | null = null;
    let freezeStart: number | null = null;
    let freezeTimer: NodeJS.Timeout | null = null;
    const freeze = new AbortController();

    const finish = (): WorkflowReport => {
      if (freezeTimer) clearTimeout(freezeTimer);
      // What is still open now belongs to recover() (the journal keeps it).
      for (const o of open) this.held.delete(o.entry.id);
      report.durationMs = Math.round(this.now() - t0);
      report.stillOpen = open.map((o) => o.quiesce);
      return report;
    };

    // 1. Resolve every step before anything runs.
    type Planned = { index: number; action: ActionName; plugin: Plugin; timeoutMs: number };
    let plan: Planned[];
    const skipped = new Map<number, string>();
    try {
      if (cancel.aborted) throw vmError('CANCELLED', `workflow '${workflow.name}' for VM '${target.vm}' was cancelled before it started`);
      for (const p of this.registry.list()) {
        if (p.prepare) await p.prepare(target, cancel);
      }
      const all: Array<Planned | null> = workflow.steps.map((s, index) => {
        let plugin: Plugin;
        try {
          plugin = this.registry.find(s.action, target, s.plugin);
        } catch (err) {
          // An optional step (the database of a VM that has none) is skipped, not an error.
          if (s.optional && isVmvaultError(err, 'NOT_FOUND')) {
            skipped.set(index, 'optional, and no plug-in performs it for this VM');
            return null;
          }
          throw err;
        }
        return { index, action: s.action, plugin, timeoutMs: s.timeoutMs ?? plugin.timeoutMs?.(s.action) ?? this.actionTimeoutMs };
      });
      // A skipped quiesce skips its unquiesce; a quiesce whose unquiesce cannot run must not start.
      for (const [i, st] of workflow.steps.entries()) {
        const undo = undoOf(st.action);
        if (undo === null) continue;
        const j = workflow.steps.findIndex((x, k) => k > i && x.action === undo);
        if (j < 0) continue;
        if (all[i] === null && all[j] !== null) {
          all[j] = null;
          skipped.set(j, `its ${st.action} was skipped`);
        } else if (all[i] !== null && all[j] === null) {
          throw vmError('NOT_FOUND', `step ${i + 1} '${st.action}' can run but its '${undo}' (step ${j + 1}) has no plug-in for this VM; nothing would undo it`, { action: undo, vm: target.vm });
        }
      }
      plan = all.filter((p): p is Planned => p !== null);
    } catch (err) {
      report.error = { code: codeOf(err), message: `workflow '${workflow.name}' for VM '${target.vm}' cannot start: ${messageOf(err)}` };
      say(report.error.message);
      finish();
      throw vmError(report.error.code, report.error.message, { report }, err);
    }
    const undoFor = (quiesce: ActionName, from: number): { plugin: Plugin; timeoutMs: number } => {
      const undo = undoOf(quiesce)!;
      const later = plan.slice(from + 1).find((p) => p.action === undo);
      if (later) return { plugin: later.plugin, timeoutMs: later.timeoutMs };
      const plugin = this.registry.find(undo, target);
      return { plugin, timeoutMs: plugin.timeoutMs?.(undo) ?? this.actionTimeoutMs };
    };

    say(`workflow ${workflow.name}: ${plan.map((p) => `${p.action}(${p.plugin.name})`).join(' -> ')}`);

    // 2. Run the steps in order.
    const reportSkipped = (upTo: number): void => {
      for (const [i, why] of [...skipped].filter(([k]) => k < upTo)) {
        const action = workflow.steps[i].action;
        report.actions.push({ step: i, action, plugin: '', phase: 'run', startedAt: new Date().toISOString(), durationMs: 0, outcome: 'skipped', error: why });
        say(`${action}: skipped (${why})`);
        skipped.delete(i);
      }
    };
    for (const [pos, step] of plan.entries()) {
      reportSkipped(step.index);
      if (cancel.aborted) {
        failure = { code: 'CANCELLED', message: `cancelled before step ${step.index + 1} '${step.action}'` };
        break;
      }
      if (freeze.signal.aborted && step.action !== THAW_ACTION) {
        // The bound passed between two steps (e.g. while the journal was written).
        const prev = plan[pos - 1];
        failure = { code: 'TIMEOUT', message: `the guest freeze exceeded its bound of ${this.freezeTimeoutMs} ms before step ${step.index + 1} '${step.action}' could start (last step: '${prev?.action}', plug-in ${prev?.plugin.name}); the VM was thawed. Raise freezeTimeoutMs or shorten the frozen steps` };
        break;
      }
      const isQuiesce = undoOf(step.action) !== null;
      let opened: OpenQuiesce | null = null;
      if (isQuiesce) {
        let undo: { plugin: Plugin; timeoutMs: number };
        try {
          undo = undoFor(step.action, step.index);
        } catch (err) {
          failure = { code: codeOf(err), message: `step ${step.index + 1} '${step.action}': ${messageOf(err)}`, cause: err };
          break;
        }
        let entry: JournalEntry;
        try {
          entry = await this.journal.add({
            vm: target.vm, workflow: workflow.name, quiesce: step.action, undo: undoOf(step.action)!,
            plugin: undo.plugin.name, target,
          });
        } catch (err) {
          // Never quiesce what a restart could not find out about (e.g. the data disk is full).
          failure = { code: codeOf(err, 'IO'), message: `step ${step.index + 1} '${step.action}' not sent: the quiesce journal could not record it: ${messageOf(err)}`, cause: err };
          break;
        }
        opened = { quiesce: step.action, undo: undoOf(step.action)!, undoPlugin: undo.plugin, undoTimeoutMs: undo.timeoutMs, entry };
        this.held.add(entry.id);
        // Undone whatever its outcome: a failed or abandoned freeze may have frozen something.
        open.push(opened);
      }
      if (step.action === FREEZE_ACTION) {
        freezeStart = this.now();
        freezeTimer = setTimeout(() => freeze.abort(), this.freezeTimeoutMs);
      }
      const inFreeze = freezeStart !== null && step.action !== THAW_ACTION;
      const r = await this.runOne(step.plugin, step.action, step.index, 'run', step.timeoutMs, target, state, report, say,
        [cancel, ...(inFreeze ? [freeze.signal] : [])]);
      if (step.action === THAW_ACTION && freezeStart !== null && r.outcome === 'ok') {
        report.freezeMs = Math.round(this.now() - freezeStart);
        if (freezeTimer) clearTimeout(freezeTimer);
        freezeTimer = null;
        freezeStart = null;
      }
      if (r.outcome !== 'ok') {
        failure = this.describeFailure(step.action, step.plugin.name, step.index, step.timeoutMs, r, freezeStart);
        break;
      }
      if (step.action.startsWith('unquiesce-')) {
        const i = findLastIndex(open, (o) => o.undo === step.action);
        if (i >= 0) {
          const [closed] = open.splice(i, 1);
          await this.forget(closed.entry, say);
        }
      }
    }

    // 3. Undo every open quiesce in reverse order, whatever failed.
    if (failure !== null) {
      say(`failed: ${failure.message}`);
      const stillOpen: string[] = [];
      for (const o of [...open].reverse()) {
        const r = await this.runOne(o.undoPlugin, o.undo, null, 'undo', o.undoTimeoutMs, target, state, report, say, []);
        if (r.outcome === 'ok') {
          open.splice(open.indexOf(o), 1);
          await this.forget(o.entry, say);
          if (o.undo === THAW_ACTION && freezeStart !== null) {
            report.freezeMs = Math.round(this.now() - freezeStart);
            freezeStart = null;
          }
        } else {
          stillOpen.push(`${o.undo} (${o.undoPlugin.name}): ${report.actions[report.actions.length - 1].error}`);
        }
      }
      let message = `workflow '${workflow.name}' for VM '${target.vm}' failed: ${failure.message}`;
      const undone = report.actions.filter((a) => a.phase === 'undo' && a.outcome === 'ok').map((a) => `${a.action} (${a.plugin})`);
      if (undone.length > 0) message += `; undone: ${undone.join(', ')}`;
      if (stillOpen.length > 0) message += `; STILL OPEN, retried at the next start: ${stillOpen.join('; ')}`;
      report.error = { code: failure.code, message };
      finish();
      say(message);
      throw vmError(failure.code, message, { report }, failure.cause);
    }
    reportSkipped(Infinity);
    report.ok = true;
    finish();
    say(`workflow ${workflow.name} done in ${report.durationMs} ms${report.freezeMs !== null ? `, guest frozen ${report.freezeMs} ms` : ''}`);
    return report;
  }

  /**
   * Undoes what the journal says is still quiesced (a previous process was killed between a
   * quiesce and its unquiesce). Call at start, after every plug-in is registered. Returns the
   * log lines (also sent to the log); an undo that fails stays in the journal.
   */
  async recover(): Promise<string[]> {
    const lines: string[] = [];
    const say = (l: string): void => { lines.push(l); this.log(l); };
    // A quiesce a run of this engine is holding is not left over: it will be undone by that run.
    const entries = [...this.journal.list()].reverse().filter((e) => !this.held.has(e.id));
    if (entries.length === 0) return lines;
    say(`quiesce journal: ${entries.length} quiesce(s) left open by a previous run; undoing them`);
    for (const e of entries) {
      const what = `${e.undo} for VM '${e.vm}' (${e.quiesce} at ${e.openedAt} by pid ${e.pid}, workflow ${e.workflow}) with plug-in ${e.plugin}`;
      let plugin: Plugin;
      try {
        plugin = this.registry.get(e.plugin);
      } catch {
        say(`cannot run ${what}: the plug-in is not registered; left in the journal, undo it by hand`);
        continue;
      }
      const report: WorkflowReport = { workflow: e.workflow, vm: e.vm, ok: false, startedAt: '', durationMs: 0, freezeMs: null, actions: [], stillOpen: [] };
      const timeoutMs = plugin.timeoutMs?.(e.undo) ?? this.actionTimeoutMs;
      const r = await this.runOne(plugin, e.undo, null, 'undo', timeoutMs, e.target, new Map(), report, (l) => this.log(`[${e.vm}] ${l}`), []);
      if (r.outcome === 'ok') {
        await this.forget(e, say);
        say(`recovered: ran ${what} in ${report.actions[0]?.durationMs ?? 0} ms`);
      } else {
        say(`FAILED ${what}: ${report.actions[report.actions.length - 1].error}; left in the journal, retried at the next start`);
      }
    }
    return lines;
  }

  /**
   * Clears a journal entry whose undo answered. A failure to write is logged, not thrown: the
   * entry stays on disk and the next start repeats an idempotent unquiesce, which is harmless.
   */
  private async forget(entry: JournalEntry, say: (l: string) => void): Promise<void> {
    this.held.delete(entry.id);
    try {
      await this.journal.remove(entry.id);
    } catch (err) {
      say(`could not clear ${entry.quiesce} from the quiesce journal (${messageOf(err)}); the next start repeats ${entry.undo}`);
    }
  }

  /** Runs one action with its deadline and abort sources; never throws. */
  private async runOne(
    plugin: Plugin, action: ActionName, index: number | null, phase: 'run' | 'undo', timeoutMs: number,
    target: WorkflowTarget, state: Map<string, unknown>, report: WorkflowReport, say: (l: string) => void,
    aborts: AbortSignal[],
  ): Promise<StepResult> {
    const ac = new AbortController();
    let why: Outcome | null = null;
    const abort = (reason: Outcome): void => {
      if (ac.signal.aborted) return;
      why = reason;
      ac.abort(vmError(reason === 'cancelled' ? 'CANCELLED' : 'TIMEOUT', `${action} abandoned (${reason})`));
    };
    const listeners: Array<() => void> = [];
    for (const [i, s] of aborts.entries()) {
      const reason: Outcome = i === 0 && phase === 'run' ? 'cancelled' : 'freeze-timeout';
      if (s.aborted) abort(reason);
      const l = (): void => abort(reason);
      s.addEventListener('abort', l, { once: true });
      listeners.push(() => s.removeEventListener('abort', l));
    }
    const timer = timeoutMs > 0 ? setTimeout(() => abort('timeout'), timeoutMs) : null;
    const ctx: ActionContext = { target, signal: ac.signal, state, log: (line) => say(`${action} (${plugin.name}): ${line}`) };
    const started = this.now();
    const startedAt = new Date().toISOString();
    say(`${phase === 'undo' ? 'undo ' : ''}${action} (${plugin.name}) ...`);
    let result: StepResult;
    const work = ac.signal.aborted
      ? Promise.reject(ac.signal.reason)
      : Promise.resolve().then(() => plugin.run(action, ctx));
    const settled = work.then((v) => ({ outcome: 'ok' as Outcome, result: v }), (e) => ({ outcome: 'failed' as Outcome, error: e }));
    const aborted = new Promise<'aborted'>((resolve) => {
      if (ac.signal.aborted) resolve('aborted');
      else ac.signal.addEventListener('abort', () => resolve('aborted'), { once: true });
    });
    const first = await Promise.race([settled, aborted]);
    if (first === 'aborted') {
      // Give the plug-in a moment to stop (it saw the abort), so an undo does not race it.
      const grace = new Promise<void>((r) => setTimeout(r, ABANDON_GRACE_MS).unref());
      await Promise.race([settled, grace]);
      result = { outcome: why ?? 'cancelled', error: ac.signal.reason };
    } else {
      result = first;
    }
    if (timer) clearTimeout(timer);
    for (const off of listeners) off();
    const durationMs = Math.round(this.now() - started);
    const rep: ActionReport = { step: index, action, plugin: plugin.name, phase, startedAt, durationMs, outcome: result.outcome };
    if (result.outcome === 'ok') {
      if (result.result !== undefined) rep.result = result.result;
    } else {
      rep.error = result.outcome === 'timeout' ? `no answer within ${timeoutMs} ms` : messageOf(result.error);
    }
    report.actions.push(rep);
    say(`${phase === 'undo' ? 'undo ' : ''}${action} (${plugin.name}): ${result.outcome} in ${durationMs} ms${rep.error ? `: ${rep.error}` : ''}`);
    return result;
  }

  private describeFailure(action: ActionName, plugin: string, index: number, timeoutMs: number, r: StepResult, freezeStart: number | null): { code: ErrorCode; message: string; cause?: unknown } {
    const step = `step ${index + 1} '${action}' (plug-in ${plugin})`;
    switch (r.outcome) {
      case 'timeout':
        return { code: 'TIMEOUT', message: `${step} did not finish within ${timeoutMs} ms; it was abandoned. Find out why it is slow, or raise its timeoutMs in the workflow` };
      case 'freeze-timeout': {
        const frozen = freezeStart === null ? this.freezeTimeoutMs : Math.round(this.now() - freezeStart);
        return { code: 'TIMEOUT', message: `the guest freeze exceeded its bound of ${this.freezeTimeoutMs} ms (frozen ${frozen} ms) while ${step} was still running; the VM was thawed. ${action} is the slow step: find out why, or raise freezeTimeoutMs` };
      }
      case 'cancelled':
        return { code: 'CANCELLED', message: `cancelled during ${step}` };
      default:
        return { code: codeOf(r.error, 'PLUGIN_FAILED'), message: `${step} failed: ${messageOf(r.error)}`, cause: r.error };
    }
  }
}

function codeOf(err: unknown, fallback: ErrorCode = 'PLUGIN_FAILED'): ErrorCode {
  return isVmvaultError(err) ? err.code : fallback;
}

function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

function findLastIndex<T>(a: T[], f: (x: T) => boolean): number {
  for (let i = a.length - 1; i >= 0; i--) if (f(a[i])) return i;
  return -1;
}
