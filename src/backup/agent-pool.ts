// The appliance's pool of external agents (issue 12): who is connected, what each can reach, and
// which agent copies which disk.
//
// An agent registers (name, version, host name, addresses, streams, the source prefixes it can
// reach), heartbeats, and long-polls for tasks; it reports progress and then the result. A task is
// "copy this source into this share file" (full, or only the ranges an NBD dirty bitmap marks).
// The backup's copy step submits one task per disk and waits for its result.
//
// Who takes a task: the agent the VM is pinned to (VmConfig.agent) while it is live; when that
// agent is lost or unknown, any live agent that declared it can reach the source (a prefix of the
// source's address, or '*'). Each agent runs at most `streams` tasks at once.
//
// Lost agents: an agent not heard from (heartbeat, poll, progress) for `lostAfterMs` is lost;
// its running tasks go back to the queue with the same task id, so the agent that takes them
// next resumes through the transfer protocol (the receiver keeps what already arrived under that
// id). A report from an agent about a task that is no longer its own gets CONFLICT, which tells
// the agent to drop the task. Nothing here makes a restore point: the backup service snapshots
// only after every disk's task is done, so a lost agent can never leave a partial point.
//
// Time is an input (`now`), and the pool's timer is the only thing that runs by itself; close()
// stops it and fails every waiting task.

import { randomUUID } from 'node:crypto';
import { vmError, type VmvaultError } from '../errors.js';
import { type HostRequest, HostRequests } from './host-requests.js';

/** Version of the pool's task messages (a task an agent receives); agents refuse a newer one. */
export const AGENT_TASK_VERSION = 1;

/** Where a task's bytes come from, as the agent opens it. */
export type TaskSource =
  | { kind: 'nbd'; address: string /* unix:/path or tcp:host:port */; exportName: string; dirtyContext?: string }
  | { kind: 'file'; path: string };

export interface AgentTask {
  v: number;
  id: string;
  vm: string;
  device: string;
  source: TaskSource;
  /** The file the bytes go to (SendTarget of src/transfer/sender.ts, without ranges: the agent reads those from the source). */
  target: { share: string; path: string; size: number };
  /** Incremental: read only what `source.dirtyContext` marks; the share file already holds the previous point. */
  incremental: boolean;
}

export interface AgentRegistration {
  name: string;
  version: string;
  hostname: string;
  addresses: string[];
  /** Tasks it runs at once (1..64). */
  streams: number;
  /** Source address prefixes it can reach ('unix:/run/qemu/', 'tcp:10.1.', '*'). */
  reach: string[];
  /** Host request kinds it handles (issue 13); absent: an agent older than host requests. */
  requests?: string[];
}

/** What the progress and done reports carry (the sender's SendReport, all optional). */
export interface TaskReport {
  bytesRead?: number;
  bytesSent?: number;
  fingerprintBytes?: number;
  segments?: number;
  segmentsSent?: number;
  segmentBytesSent?: number;
  zeroBytes?: number;
}

export interface AgentView {
  name: string;
  version: string;
  hostname: string;
  addresses: string[];
  /** Where its requests come from, as the appliance sees it. */
  remoteAddress: string;
  state: 'live' | 'lost';
  streams: number;
  reach: string[];
  /** Host request kinds it handles (issue 13). */
  requests?: string[];
  tasksRunning: number;
  tasks: string[];
  lastSeen: string;
  registeredAt: string;
  bytesRead: number;
  bytesSent: number;
  /** Bytes read that did not cross the wire (duplicates and zeros): bytesRead - bytesSent, never below 0. */
  bytesSaved: number;
  tasksDone: number;
  tasksFailed: number;
}

export interface TaskResult extends TaskReport {
  agent: string;
  /** Agents that held the task (more than one when an agent was lost mid-task). */
  agents: string[];
}

export interface AgentPoolOptions {
  /** An agent silent this long is lost. Default 15 s (tests: a few seconds). */
  lostAfterMs?: number;
  /** What the agent is told to heartbeat at. Default lostAfterMs / 3. */
  heartbeatMs?: number;
  /** Longest long-poll. Default 25 s. */
  maxPollMs?: number;
  /** A task no agent can take for this long fails (NOT_FOUND naming the agent). Default 60 s. */
  unassignedTimeoutMs?: number;
  now?: () => number;
  log?: (line: string) => void;
}

interface Agent {
  reg: AgentRegistration;
  /** The agent token that registered this name ('' for the admin token): only it may act for the agent. */
  owner: string;
  remoteAddress: string;
  state: 'live' | 'lost';
  lastSeen: number;
  registeredAt: number;
  running: Set<string>;
  bytesRead: number;
  bytesSent: number;
  tasksDone: number;
  tasksFailed: number;
  /** A long-poll waiting for work. */
  waiter?: () => void;
}

interface Pending {
  task: AgentTask;
  pinned?: string;
  state: 'queued' | 'running';
  agent?: string;
  agents: string[];
  queuedAt: number;
  report: TaskReport;
  resolve(r: TaskResult): void;
  reject(e: unknown): void;
  onProgress?: (r: TaskReport) => void;
}

export const MAX_STREAMS = 64;
const MAX_ADDRESSES = 32;
const MAX_REACH = 64;
const AGENT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export class AgentPool {
  private readonly agents = new Map<string, Agent>();
  private readonly tasks = new Map<string, Pending>();
  private readonly timer: NodeJS.Timeout;
  private closed = false;
  readonly lostAfterMs: number;
  readonly heartbeatMs: number;
  readonly maxPollMs: number;
  private readonly unassignedTimeoutMs: number;
  private readonly now: () => number;
  private readonly log: (line: string) => void;
  /** Host requests (issue 13): discovery, relayed QMP, the HA plug-in's kinds. */
  private readonly hostRequests: HostRequests;

  constructor(opts: AgentPoolOptions = {}) {
    this.lostAfterMs = opts.lostAfterMs ?? 15_000;
    this.heartbeatMs = opts.heartbeatMs ?? Math.max(200, Math.floor(this.lostAfterMs / 3));
    this.maxPollMs = opts.maxPollMs ?? 25_000;
    this.unassignedTimeoutMs = opts.unassignedTimeoutMs ?? 60_000;
    this.now = opts.now ?? Date.now;
    this.log = opts.log ?? (() => {});
    this.hostRequests = new HostRequests(
      (name) => {
        const a = this.agents.get(name);
        // An agent older than host requests declares none: it handles none.
        return a === undefined ? undefined : { state: a.state, kinds: a.reg.requests ?? [] };
      },
      (name) => this.agents.get(name)?.waiter?.(),
      this.log,
    );
    this.timer = setInterval(() => this.tick(), Math.max(100, Math.min(1000, Math.floor(this.lostAfterMs / 4))));
    this.timer.unref();
  }

  // ---- the agent's side (agent-token routes) ----

  /**
   * Registers or re-registers an agent (a restarted agent keeps its counters; its old tasks were
   * requeued when it was lost). `owner`: the agent token's name (undefined: the admin token). The
   * first token to register a name owns it; another agent token gets FORBIDDEN for that name.
   */
  register(input: AgentRegistration, remoteAddress: string, owner?: string): { heartbeatMs: number; lostAfterMs: number; maxPollMs: number; taskVersion: number } {
    this.checkOpen();
    const reg = checkRegistration(input);
    const t = this.now();
    const old = this.agents.get(reg.name);
    if (old) this.checkOwner(old, owner);
    if (old) {
      // A re-registration is a new process (or a reconnect): whatever it ran before is not
      // running in it now, so those tasks go back to the queue for whoever resumes them.
      this.requeue(old, `agent ${reg.name} registered again`);
      this.hostRequests.agentGone(reg.name, 'registered again');
      old.reg = reg;
      old.remoteAddress = remoteAddress;
      old.state = 'live';
      old.lastSeen = t;
      this.log(`agent ${reg.name}: registered again (${reg.hostname}, ${reg.version}, from ${remoteAddress})`);
    } else {
      this.agents.set(reg.name, { reg, owner: owner ?? '', remoteAddress, state: 'live', lastSeen: t, registeredAt: t, running: new Set(), bytesRead: 0, bytesSent: 0, tasksDone: 0, tasksFailed: 0 });
      this.log(`agent ${reg.name}: registered (${reg.hostname}, ${reg.version}, from ${remoteAddress}, ${reg.streams} stream(s))`);
    }
    this.dispatch();
    return { heartbeatMs: this.heartbeatMs, lostAfterMs: this.lostAfterMs, maxPollMs: this.maxPollMs, taskVersion: AGENT_TASK_VERSION };
  }

  /** The tasks the appliance still counts as this agent's (an agent drops any other it runs). */
  heartbeat(name: string): { tasks: string[] } {
    const a = this.seen(name);
    return { tasks: [...a.running] };
  }

  /**
   * Waits up to `waitMs` for tasks for this agent (at most its free streams) and answers every
   * task assigned to it that is not in `running` (the ids the agent says it runs). So a lost
   * answer is not a lost task: the next poll hands it again. Resolves with none at the deadline
   * or when `signal` aborts.
   */
  async poll(name: string, waitMs: number, running: readonly string[] = [], signal?: AbortSignal): Promise<AgentTask[]> {
    const a = this.seen(name);
    const has = new Set(running);
    const deadline = this.now() + Math.max(0, Math.min(waitMs, this.maxPollMs));
    for (;;) {
      this.dispatch();
      const mine = [...a.running].filter((id) => !has.has(id)).flatMap((id) => {
        const p = this.tasks.get(id);
        return p ? [p.task] : [];
      });
      if (mine.length > 0 || this.hostRequests.hasFor(name) || this.closed || signal?.aborted || this.now() >= deadline) return mine;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, Math.max(1, deadline - this.now()));
        const onAbort = () => done();
        function done() {
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          resolve();
        }
        signal?.addEventListener('abort', onAbort, { once: true });
        a.waiter?.();
        a.waiter = done;
      });
      if (a.state === 'lost') return [];
      a.lastSeen = Math.max(a.lastSeen, this.now());
    }
  }

  /** Progress of a task this agent runs; CONFLICT when the task is not (or no longer) its own. */
  progress(name: string, taskId: string, report: TaskReport): void {
    const a = this.seen(name);
    const p = this.ownTask(a, taskId);
    p.report = { ...p.report, ...checkReport(report) };
    p.onProgress?.(p.report);
  }

  /** The result of a task this agent ran: ok, or failed with a message. */
  done(name: string, taskId: string, result: { ok: boolean; error?: string; report?: TaskReport }): void {
    const a = this.seen(name);
    const p = this.ownTask(a, taskId);
    const report = { ...p.report, ...checkReport(result.report ?? {}) };
    a.running.delete(taskId);
    this.tasks.delete(taskId);
    a.bytesRead += report.bytesRead ?? 0;
    a.bytesSent += report.bytesSent ?? 0;
    if (result.ok) {
      a.tasksDone++;
      this.log(`agent ${name}: task ${taskId} (${p.task.vm} ${p.task.device}) done`);
      p.resolve({ ...report, agent: name, agents: p.agents });
    } else {
      a.tasksFailed++;
      const why = typeof result.error === 'string' && result.error !== '' ? result.error.slice(0, 2000) : 'no reason given';
      this.log(`agent ${name}: task ${taskId} (${p.task.vm} ${p.task.device}) failed: ${why}`);
      p.reject(vmError('IO', `agent ${name} could not copy ${p.task.device} of ${p.task.vm}: ${why}`, { agent: name, task: taskId }));
    }
    this.dispatch();
  }

  /** The host requests waiting for this agent (issue 13), handed once; the poll route adds them to its answer. */
  takeRequests(name: string): HostRequest[] {
    this.seen(name);
    return this.hostRequests.take(name);
  }

  /** An agent's answer to a host request; CONFLICT when that request is not out to it. */
  answerRequest(name: string, id: string, answer: { ok: boolean; result?: unknown; error?: { code?: string; message?: string } }): void {
    this.seen(name);
    this.hostRequests.answer(name, id, answer);
  }

  // ---- the appliance's side ----

  /**
   * Asks agent `agent` to run the host request `kind` on its host (issue 13; src/agent/README.md,
   * "Host requests") and resolves with the answer `validate` accepts (the agent is untrusted: it
   * throws on a malformed answer, which becomes IO "malformed"). Errors: src/backup/host-requests.ts.
   */
  request<T = unknown>(agent: string, kind: string, args: unknown, timeoutMs: number, validate: (result: unknown) => T = (r) => r as T): Promise<T> {
    return this.hostRequests.request(agent, kind, args, timeoutMs, validate);
  }

  /**
   * Queues a task and resolves with its result once an agent reports it done. `pinned` is the
   * agent the VM names. Rejects when an agent reports failure, when no agent can take it within
   * the unassigned timeout, on `signal`, or on close().
   */
  submit(
    input: Omit<AgentTask, 'v' | 'id'> & { id?: string },
    opts: { pinned?: string; signal?: AbortSignal; onProgress?: (r: TaskReport) => void } = {},
  ): Promise<TaskResult> {
    this.checkOpen();
    if (opts.signal?.aborted) return Promise.reject(vmError('CANCELLED', 'the backup was cancelled'));
    const task: AgentTask = { v: AGENT_TASK_VERSION, id: input.id ?? randomUUID(), vm: input.vm, device: input.device, source: input.source, target: input.target, incremental: input.incremental };
    if (this.tasks.has(task.id)) return Promise.reject(vmError('CONFLICT', `task ${task.id} is already queued or running`));
    return new Promise<TaskResult>((resolve, reject) => {
      const onAbort = () => {
        if (!this.tasks.has(task.id)) return;
        this.forget(task.id);
        reject(vmError('CANCELLED', `the copy of ${task.device} of ${task.vm} was cancelled`));
      };
      const settle = <T>(fn: (v: T) => void) => (v: T) => {
        opts.signal?.removeEventListener('abort', onAbort);
        fn(v);
      };
      const p: Pending = {
        task,
        pinned: opts.pinned,
        state: 'queued',
        agents: [],
        queuedAt: this.now(),
        report: {},
        resolve: settle(resolve),
        reject: settle(reject),
        onProgress: opts.onProgress,
      };
      this.tasks.set(task.id, p);
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      this.log(`task ${task.id}: ${task.vm} ${task.device} queued${opts.pinned ? ` for agent ${opts.pinned}` : ''}`);
      this.dispatch();
    });
  }

  list(): AgentView[] {
    return [...this.agents.values()]
      .sort((a, b) => (a.reg.name < b.reg.name ? -1 : a.reg.name > b.reg.name ? 1 : 0))
      .map((a) => {
        let bytesRead = a.bytesRead;
        let bytesSent = a.bytesSent;
        for (const id of a.running) {
          const r = this.tasks.get(id)?.report;
          bytesRead += r?.bytesRead ?? 0;
          bytesSent += r?.bytesSent ?? 0;
        }
        return {
          name: a.reg.name,
          version: a.reg.version,
          hostname: a.reg.hostname,
          addresses: [...a.reg.addresses],
          remoteAddress: a.remoteAddress,
          state: a.state,
          streams: a.reg.streams,
          reach: [...a.reg.reach],
          ...(a.reg.requests !== undefined ? { requests: [...a.reg.requests] } : {}),
          tasksRunning: a.running.size,
          tasks: [...a.running],
          lastSeen: new Date(a.lastSeen).toISOString(),
          registeredAt: new Date(a.registeredAt).toISOString(),
          bytesRead,
          bytesSent,
          bytesSaved: Math.max(0, bytesRead - bytesSent),
          tasksDone: a.tasksDone,
          tasksFailed: a.tasksFailed,
        };
      });
  }

  /**
   * FORBIDDEN unless `owner` (an agent token's name; undefined: the admin token, which may act
   * for any agent) registered the agent `name`. NOT_FOUND for an unknown agent.
   */
  checkCaller(name: string, owner: string | undefined): void {
    const a = this.agents.get(name);
    if (!a) throw vmError('NOT_FOUND', `agent ${JSON.stringify(String(name).slice(0, 80))} has not registered (it registers when it starts)`, { agent: String(name).slice(0, 80) });
    this.checkOwner(a, owner);
  }

  /**
   * The transfer receiver's question (ReceiverOptions.authorize): may the agent token `owner`
   * write `share`/`path` under `taskId`? Only for a task of the pool running on an agent that
   * token registered, and only the file that task names. FORBIDDEN otherwise.
   */
  authorizeTransfer(owner: string, share: string, filePath: string, taskId: string | undefined): void {
    const p = taskId === undefined ? undefined : this.tasks.get(taskId);
    const agent = p?.agent === undefined ? undefined : this.agents.get(p.agent);
    if (!p || !agent || agent.owner !== owner || p.task.target.share !== share || p.task.target.path !== filePath) {
      throw vmError('FORBIDDEN', `agent token ${owner} has no running task ${taskId === undefined ? '(none given)' : String(taskId).slice(0, 80)} writing ${share}/${filePath}: agents write only the files of their tasks`);
    }
  }

  private checkOwner(a: Agent, owner: string | undefined): void {
    if (owner === undefined) return;
    if (a.owner !== owner) throw vmError('FORBIDDEN', `agent name ${a.reg.name} is registered by another token; choose another --name`, { agent: a.reg.name });
  }

  /** Whether an agent of that name has registered (live or lost). */
  has(name: string): boolean {
    return this.agents.has(name);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.hostRequests.close();
    for (const id of [...this.tasks.keys()]) {
      const p = this.tasks.get(id)!;
      this.forget(id);
      p.reject(vmError('CANCELLED', 'the appliance is shutting down'));
    }
    for (const a of this.agents.values()) a.waiter?.();
  }

  // ---- inside ----

  /** Marks lost agents, requeues their tasks, fails tasks nobody can take. Runs on the timer; tests may call it. */
  tick(): void {
    const t = this.now();
    for (const a of this.agents.values()) {
      if (a.state === 'live' && t - a.lastSeen > this.lostAfterMs) {
        a.state = 'lost';
        this.log(`agent ${a.reg.name}: lost (not heard from for ${t - a.lastSeen} ms)`);
        this.requeue(a, `agent ${a.reg.name} was lost`);
        this.hostRequests.agentGone(a.reg.name, 'lost');
        a.waiter?.();
      }
    }
    for (const [id, p] of this.tasks) {
      if (p.state === 'queued' && t - p.queuedAt > this.unassignedTimeoutMs) {
        this.forget(id);
        const who = p.pinned ? `agent ${p.pinned} is ${this.agents.get(p.pinned)?.state ?? 'not registered'} and no other live agent can reach ${describeSource(p.task.source)}` : `no live agent can reach ${describeSource(p.task.source)}`;
        p.reject(vmError('NOT_FOUND', `the copy of ${p.task.device} of ${p.task.vm} found no agent within ${Math.round(this.unassignedTimeoutMs / 1000)} s: ${who} (vmvault agent list)`, { task: id }));
      }
    }
    this.dispatch();
  }

  private requeue(a: Agent, why: string): void {
    for (const id of a.running) {
      const p = this.tasks.get(id);
      if (!p) continue;
      p.state = 'queued';
      p.agent = undefined;
      p.queuedAt = this.now();
      this.log(`task ${id}: ${p.task.vm} ${p.task.device} queued again: ${why}`);
    }
    a.running.clear();
  }

  /** Assigns queued tasks to agents with free streams, the pinned agent first. */
  private dispatch(): void {
    if (this.closed) return;
    for (const p of this.tasks.values()) {
      if (p.state !== 'queued') continue;
      const agent = this.chooseAgent(p);
      if (!agent) continue;
      p.state = 'running';
      p.agent = agent.reg.name;
      if (!p.agents.includes(agent.reg.name)) p.agents.push(agent.reg.name);
      agent.running.add(p.task.id);
      agent.waiter?.();
    }
  }

  private chooseAgent(p: Pending): Agent | undefined {
    const free = (a: Agent) => a.state === 'live' && a.running.size < a.reg.streams;
    if (p.pinned !== undefined) {
      const pinned = this.agents.get(p.pinned);
      if (pinned && pinned.state === 'live') return free(pinned) ? pinned : undefined;
    }
    let best: Agent | undefined;
    for (const a of this.agents.values()) {
      if (!free(a) || !reaches(a.reg.reach, p.task.source)) continue;
      if (!best || a.running.size / a.reg.streams < best.running.size / best.reg.streams) best = a;
    }
    return best;
  }

  private forget(id: string): void {
    const p = this.tasks.get(id);
    if (!p) return;
    this.tasks.delete(id);
    if (p.agent) this.agents.get(p.agent)?.running.delete(id);
  }

  private seen(name: string): Agent {
    this.checkOpen();
    const a = this.agents.get(name);
    if (!a) throw vmError('NOT_FOUND', `agent ${JSON.stringify(String(name).slice(0, 80))} has not registered (it registers when it starts)`, { agent: String(name).slice(0, 80) });
    if (a.state === 'lost') {
      // A lost agent that speaks again must register anew: its tasks went to others.
      throw vmError('CONFLICT', `agent ${a.reg.name} was lost and its tasks given to others; register again`, { agent: a.reg.name });
    }
    a.lastSeen = this.now();
    return a;
  }

  private ownTask(a: Agent, taskId: string): Pending {
    const p = typeof taskId === 'string' ? this.tasks.get(taskId) : undefined;
    if (!p || p.agent !== a.reg.name) {
      throw vmError('CONFLICT', `task ${String(taskId).slice(0, 80)} is not running on agent ${a.reg.name} (it was finished, cancelled or given to another agent); drop it`, { agent: a.reg.name });
    }
    return p;
  }

  private checkOpen(): void {
    if (this.closed) throw vmError('CLOSED', 'the agent pool is closed (the appliance is shutting down)');
  }
}

/** Whether one of the prefixes covers the source's address ('*' covers all). */
export function reaches(reach: readonly string[], source: TaskSource): boolean {
  const address = source.kind === 'nbd' ? source.address : `file:${source.path}`;
  return reach.some((r) => r === '*' || address.startsWith(r));
}

function describeSource(s: TaskSource): string {
  return s.kind === 'nbd' ? `NBD ${s.address} (export ${s.exportName})` : `file ${s.path}`;
}

function checkRegistration(input: AgentRegistration): AgentRegistration {
  const bad = (m: string): VmvaultError => vmError('INVALID_ARGUMENT', `agent registration: ${m}`);
  if (input === null || typeof input !== 'object') throw bad('expected an object');
  const { name, version, hostname, addresses, streams, reach } = input;
  if (typeof name !== 'string' || !AGENT_NAME.test(name)) throw bad(`name ${JSON.stringify(String(name).slice(0, 80))} is not 1 to 64 letters, digits, '.', '_' or '-'`);
  if (typeof version !== 'string' || version.length > 64) throw bad('version must be a string of at most 64 characters');
  if (typeof hostname !== 'string' || hostname.length > 255) throw bad('hostname must be a string of at most 255 characters');
  const strings = (v: unknown, max: number, what: string) => {
    if (!Array.isArray(v) || v.length > max || v.some((s) => typeof s !== 'string' || s.length === 0 || s.length > 1024)) throw bad(`${what} must be at most ${max} non-empty strings`);
    return v as string[];
  };
  if (!Number.isInteger(streams) || streams < 1 || streams > MAX_STREAMS) throw bad(`streams must be an integer from 1 to ${MAX_STREAMS}`);
  const reg: AgentRegistration = { name, version, hostname, addresses: strings(addresses, MAX_ADDRESSES, 'addresses'), streams, reach: strings(reach, MAX_REACH, 'reach') };
  if (input.requests !== undefined) {
    const kinds = strings(input.requests, MAX_REACH, 'requests');
    if (kinds.some((k) => !/^[a-z][a-z0-9-]{0,63}$/.test(k))) throw bad('requests must be request kinds (lower-case letters, digits, -)');
    reg.requests = kinds;
  }
  return reg;
}

const REPORT_FIELDS = ['bytesRead', 'bytesSent', 'fingerprintBytes', 'segments', 'segmentsSent', 'segmentBytesSent', 'zeroBytes'] as const;

function checkReport(r: TaskReport): TaskReport {
  if (r === null || typeof r !== 'object') throw vmError('INVALID_ARGUMENT', 'a task report is an object of byte counts');
  const out: TaskReport = {};
  for (const k of REPORT_FIELDS) {
    const v = r[k];
    if (v === undefined) continue;
    if (!Number.isSafeInteger(v) || v < 0) throw vmError('INVALID_ARGUMENT', `task report: ${k} must be a non-negative integer`);
    out[k] = v;
  }
  return out;
}
