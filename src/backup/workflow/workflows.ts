// Workflows: named, ordered lists of actions, from a YAML file (`<data>/workflows.yaml` or
// --workflows FILE) over two built-in defaults. Every error names the file, the line, what is
// wrong and what to do, because an operator edits this file by hand. The format:
//
//   version: 1                  # optional; a newer version is refused
//   workflows:
//     nightly:                  # a name: letters, digits, . _ -
//       - quiesce-database      # a step: an action name ...
//       - action: quiesce-vm    # ... or a map: action, plugin (pin one), timeoutMs, optional
//         timeoutMs: 5000       # optional: true = skip when no plug-in performs it for the VM
//       - snapshot
//       - unquiesce-vm
//       - unquiesce-database
//       - copy
//     other:                    # or a map with description and actions
//       description: crash-consistent, copy only
//       actions: [snapshot, copy]
//
// A file's workflow replaces a built-in one of the same name.

import fs from 'node:fs/promises';
import { LineCounter, isMap, isScalar, isSeq, parseDocument, type Node, type Pair } from 'yaml';
import { vmError } from '../../errors.js';
import type { ActionName } from './plugin.js';

export const WORKFLOWS_FORMAT_VERSION = 1;

export interface WorkflowStep {
  action: ActionName;
  /** Pin the plug-in by name instead of asking the registry which one performs it. */
  plugin?: string;
  /** This step's deadline; 0 = none. Unset: the plug-in's own, else the engine's default. */
  timeoutMs?: number;
  /** Skipped (and logged) when no plug-in performs it for the VM, e.g. a VM without a database. */
  optional?: boolean;
}

export interface Workflow {
  name: string;
  description?: string;
  steps: WorkflowStep[];
  /** 'built-in' or 'FILE:LINE', for messages. */
  source: string;
}

/** The actions the engine and built-in plug-ins know. quiesce-X/unquiesce-X pairs of any X are accepted too. */
export const BUILTIN_ACTIONS: readonly string[] = [
  'quiesce-database',
  'quiesce-vm',
  'snapshot',
  'unquiesce-vm',
  'unquiesce-database',
  'copy',
];

const QUIESCE_PAIR = /^(un)?quiesce-[a-z][a-z0-9-]*$/;
const WORKFLOW_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function defaultWorkflows(): Map<string, Workflow> {
  // The database steps are optional: a VM without a PostgreSQL URL is backed up with the
  // guest freeze alone. The freeze is not: a VM without a guest agent is refused.
  const steps = (names: string[]): WorkflowStep[] => names.map((action) => (action.endsWith('-database') ? { action, optional: true } : { action }));
  return new Map<string, Workflow>([
    ['app-consistent', {
      name: 'app-consistent',
      description: 'database checkpoint and guest filesystem freeze around the snapshot, then copy',
      steps: steps(['quiesce-database', 'quiesce-vm', 'snapshot', 'unquiesce-vm', 'unquiesce-database', 'copy']),
      source: 'built-in',
    }],
    ['crash-consistent', {
      name: 'crash-consistent',
      description: 'snapshot without quiescing (as if the power went off), then copy',
      steps: steps(['snapshot', 'copy']),
      source: 'built-in',
    }],
  ]);
}

export interface LoadOptions {
  /** Further action names the plug-ins declare (e.g. a plug-ins folder's executables). */
  extraActions?: Iterable<string>;
}

/** The built-in workflows, overlaid with `file`'s when given. A missing or malformed file is an error. */
export async function loadWorkflows(file?: string, opts: LoadOptions = {}): Promise<Map<string, Workflow>> {
  if (file === undefined) return defaultWorkflows();
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') throw vmError('NOT_FOUND', `workflow file ${file} does not exist; create it or leave the option out to use the built-in workflows`, { file });
    throw vmError('IO', `workflow file ${file}: ${e.message}`, { file }, err);
  }
  return parseWorkflows(text, file, opts);
}

interface Problem { line: number; col: number; message: string }

/** Parses a workflow file's text; `file` names it in errors. */
export function parseWorkflows(text: string, file: string, opts: LoadOptions = {}): Map<string, Workflow> {
  const known = new Set([...BUILTIN_ACTIONS, ...(opts.extraActions ?? [])]);
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: true, prettyErrors: true });
  const problems: Problem[] = [];
  const at = (node: Node | null | undefined, message: string): void => {
    const pos = node?.range ? lc.linePos(node.range[0]) : { line: 1, col: 1 };
    problems.push({ line: pos.line, col: pos.col, message });
  };
  const fail = (): never => {
    problems.sort((a, b) => a.line - b.line || a.col - b.col);
    const lines = problems.map((p) => `${file}:${p.line}:${p.col}: ${p.message}`);
    throw vmError('INVALID_ARGUMENT', `workflow file is invalid:\n${lines.join('\n')}`, { file, problems });
  };

  for (const e of doc.errors) {
    const pos = e.linePos?.[0] ?? { line: 1, col: 1 };
    const what = e.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
    problems.push({ line: pos.line, col: pos.col, message: `not valid YAML: ${what}` });
  }
  if (problems.length > 0) fail();

  const root = doc.contents;
  const result = defaultWorkflows();
  if (root === null || (isScalar(root) && (root.value === null || root.value === ''))) {
    at(root, "the file is empty; write 'workflows:' with at least one workflow, or remove the file to use the built-in ones");
    fail();
  }
  if (!isMap(root)) {
    at(root, "the top level must be a map with 'workflows:' (and optionally 'version: 1')");
    fail();
  }
  let workflowsNode: Node | null = null;
  for (const pair of (root as { items: Pair[] }).items) {
    const key = keyOf(pair);
    const keyNode = pair.key as Node;
    if (key === 'version') {
      const v = pair.value as Node | null;
      if (!isScalar(v) || typeof v.value !== 'number' || !Number.isInteger(v.value)) at(v ?? keyNode, `'version' must be an integer (this appliance writes ${WORKFLOWS_FORMAT_VERSION})`);
      else if (v.value > WORKFLOWS_FORMAT_VERSION || v.value < 1) at(v, `version ${v.value} is not supported; this appliance reads version ${WORKFLOWS_FORMAT_VERSION}`);
    } else if (key === 'workflows') {
      workflowsNode = pair.value as Node | null;
    } else {
      at(keyNode, `unknown key '${key}' at the top level; only 'version' and 'workflows' are allowed`);
    }
  }
  if (workflowsNode === null || !isMap(workflowsNode) || workflowsNode.items.length === 0) {
    if (problems.length === 0) at(workflowsNode ?? root, "'workflows' must be a map of workflow names to lists of actions, with at least one workflow");
    fail();
  }
  for (const pair of (workflowsNode as { items: Pair[] }).items) {
    const keyNode = pair.key as Node;
    const name = keyOf(pair);
    if (!WORKFLOW_NAME.test(name)) {
      at(keyNode, `workflow name '${name}' is not valid; use letters, digits, '.', '_' and '-' (up to 64)`);
      continue;
    }
    const wf = parseWorkflow(name, pair.value as Node | null, keyNode, known, at);
    if (wf) result.set(name, { ...wf, source: `${file}:${lc.linePos(keyNode.range![0]).line}` });
  }
  if (problems.length > 0) fail();
  return result;
}

type At = (node: Node | null | undefined, message: string) => void;

function keyOf(pair: Pair): string {
  const k = pair.key as Node | null;
  return isScalar(k) ? String(k.value) : String(k);
}

function parseWorkflow(name: string, node: Node | null, keyNode: Node, known: Set<string>, at: At): Omit<Workflow, 'source'> | null {
  let description: string | undefined;
  let list: Node | null = node;
  if (isMap(node)) {
    list = null;
    let sawActions = false;
    for (const pair of node.items as Pair[]) {
      const key = keyOf(pair);
      const v = pair.value as Node | null;
      if (key === 'description') {
        if (!isScalar(v) || typeof v.value !== 'string') at(v ?? (pair.key as Node), `workflow '${name}': 'description' must be text`);
        else description = v.value;
      } else if (key === 'actions') {
        sawActions = true;
        list = v;
      } else {
        at(pair.key as Node, `workflow '${name}': unknown key '${key}'; a workflow has 'actions' and optionally 'description'`);
      }
    }
    if (!sawActions) {
      at(keyNode, `workflow '${name}' has no 'actions'; list its actions in order`);
      return null;
    }
  }
  if (list === null || (isScalar(list) && (list.value === null || list.value === ''))) {
    at(list ?? keyNode, `workflow '${name}' is empty; list its actions in order (e.g. snapshot, copy)`);
    return null;
  }
  if (!isSeq(list)) {
    at(list, `workflow '${name}' must be a list of actions (lines starting with '- ')`);
    return null;
  }
  if (list.items.length === 0) {
    at(list, `workflow '${name}' is empty; list its actions in order (e.g. snapshot, copy)`);
    return null;
  }
  const steps: Array<WorkflowStep & { node: Node }> = [];
  for (const item of list.items as Node[]) {
    const step = parseStep(name, item, known, at);
    if (step) steps.push({ ...step, node: item });
  }
  checkPairs(name, steps, at);
  return { name, description, steps: steps.map(({ node: _n, ...s }) => s) };
}

function parseStep(wf: string, item: Node, known: Set<string>, at: At): WorkflowStep | null {
  let actionNode: Node | null = item;
  const step: Partial<WorkflowStep> = {};
  if (isMap(item)) {
    actionNode = null;
    for (const pair of item.items as Pair[]) {
      const key = keyOf(pair);
      const v = pair.value as Node | null;
      if (key === 'action') actionNode = v;
      else if (key === 'plugin') {
        if (!isScalar(v) || typeof v.value !== 'string' || v.value === '') at(v ?? (pair.key as Node), `workflow '${wf}': 'plugin' must be a plug-in name`);
        else step.plugin = v.value;
      } else if (key === 'timeoutMs') {
        if (!isScalar(v) || typeof v.value !== 'number' || !Number.isInteger(v.value) || v.value < 0) {
          at(v ?? (pair.key as Node), `workflow '${wf}': 'timeoutMs' must be a whole number of milliseconds (0 = no deadline)`);
        } else step.timeoutMs = v.value;
      } else if (key === 'optional') {
        if (!isScalar(v) || typeof v.value !== 'boolean') at(v ?? (pair.key as Node), `workflow '${wf}': 'optional' must be true or false`);
        else if (v.value) step.optional = true;
      } else {
        at(pair.key as Node, `workflow '${wf}': unknown key '${key}' in a step; a step has 'action' and optionally 'plugin', 'timeoutMs' and 'optional'`);
      }
    }
    if (actionNode === null) {
      at(item, `workflow '${wf}': a step without 'action'; add 'action: NAME'`);
      return null;
    }
  }
  if (!isScalar(actionNode) || typeof actionNode.value !== 'string') {
    at(actionNode, `workflow '${wf}': a step must be an action name or a map with 'action'`);
    return null;
  }
  const action = actionNode.value;
  // quiesce-X/unquiesce-X of any X are accepted (a script's own pair), unless X is a typo of a known one.
  const near = known.has(action) ? null : nearest(action, known, QUIESCE_PAIR.test(action) ? 1 : undefined);
  if (!known.has(action) && (!QUIESCE_PAIR.test(action) || near !== null)) {
    at(actionNode, `workflow '${wf}': unknown action '${action}'${near ? `; did you mean '${near}'?` : ''} (known: ${[...known].join(', ')})`);
    return null;
  }
  return { action, ...step };
}

/** Each quiesce-X needs its unquiesce-X later in the same workflow, and no unquiesce comes first. */
function checkPairs(wf: string, steps: Array<WorkflowStep & { node: Node }>, at: At): void {
  const open = new Map<string, Node>();
  for (const s of steps) {
    if (s.action.startsWith('quiesce-')) {
      if (open.has(s.action)) at(s.node, `workflow '${wf}': '${s.action}' again before its 'un${s.action}'; remove one`);
      else open.set(s.action, s.node);
    } else if (s.action.startsWith('unquiesce-')) {
      const q = s.action.slice(2);
      if (!open.delete(q)) at(s.node, `workflow '${wf}': '${s.action}' without an earlier '${q}'; remove it or add '${q}' before it`);
    }
  }
  for (const [q, node] of open) {
    at(node, `workflow '${wf}': '${q}' has no 'un${q}' after it; add one, or the quiesce would be undone only as a failure`);
  }
}

function nearest(word: string, candidates: Iterable<string>, maxDistance = Math.max(2, Math.floor(word.length / 4))): string | null {
  let best: string | null = null;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = distance(word, c);
    if (d < bestD) { bestD = d; best = c; }
  }
  return bestD <= maxDistance ? best : null;
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length];
}
