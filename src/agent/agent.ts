// The external agent (issue 12): registers with the appliance, heartbeats, long-polls for tasks,
// runs up to `streams` of them at once (each: open the source, send it through the transfer
// protocol under the task's id, report the result), and keeps at it across lost links and
// appliance restarts with a capped, jittered backoff.
//
// What survives what:
// - A broken send (link cut, appliance restarting) is tried again under the same task id: the
//   transfer receiver keeps what already arrived, so nothing the store holds is sent twice.
// - The appliance answers each heartbeat with the tasks it counts as this agent's; a task not
//   among them was given to another agent (this one was lost) and is dropped here at once.
// - An appliance that no longer knows the agent (404) or took it for lost (409) gets a new
//   registration; the tasks it gave back come again through the next poll.
// - 401 (token revoked or wrong) ends the agent: retrying with a refused credential is noise.
// - stop() aborts running sends without reporting them: the appliance gives them to another
//   agent when this one stops heartbeating, which resumes them.

import { setMaxListeners } from 'node:events';
import os from 'node:os';
import { isVmvaultError, vmError } from '../errors.js';
import { AgentHttpError, ControlClient } from './control-client.js';
import { type HostRequest, HostRequestTable } from './host-requests.js';
import { type Connection, openTransfer, type SendReport, sendFile } from './send.js';
import { type AgentSource, openSource, type SourceSpec } from './sources.js';

/** The task messages this agent reads (src/backup/agent-pool.ts AGENT_TASK_VERSION). */
export const TASK_VERSION = 1;

export interface AgentTask {
  v: number;
  id: string;
  vm: string;
  device: string;
  source: SourceSpec;
  target: { share: string; path: string; size: number };
  incremental: boolean;
}

export interface AgentOptions {
  appliance: string;
  token: string;
  name: string;
  pinSha256?: string;
  streams: number;
  /** Source address prefixes it can reach ('*': any). */
  reach: string[];
  version: string;
  log: (line: string) => void;
  /** Backoff between retries, ms (tests shorten it). Default 500 .. 15000. */
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /** Tries of one send before the task is reported failed. Default 20. */
  maxSendAttempts?: number;
  /** The host requests it handles (issue 13; host-requests.ts). Default: none. */
  requests?: HostRequestTable;
}

interface Running {
  task: AgentTask;
  ac: AbortController;
  done: Promise<void>;
}

/** Why the agent stopped on its own (a refused token), for the exit code. */
export class AgentRefused extends Error {}

export class Agent {
  private readonly client: ControlClient;
  private readonly running = new Map<string, Running>();
  /** Tasks whose result is being reported: a progress report racing it may get 409, which means nothing then. */
  private readonly finishing = new Set<string>();
  private readonly stopAc = new AbortController();
  private registered = false;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private cfg = { heartbeatMs: 5000, maxPollMs: 25_000, lostAfterMs: 15_000 };
  /** Poll/register failures in a row (sets the backoff); heartbeats count their own. */
  private failures = 0;
  private heartbeatFailures = 0;
  private heartbeatInFlight = false;
  private fatal: Error | undefined;
  private loop: Promise<void> | undefined;
  private readonly requests: HostRequestTable;
  /** Host requests being answered (stop() waits for them). */
  private readonly answering = new Set<Promise<void>>();
  /** Totals over the agent's life, for its log. */
  readonly totals = { tasksDone: 0, tasksFailed: 0, bytesRead: 0, bytesSent: 0 };

  constructor(private readonly o: AgentOptions) {
    if (!Number.isInteger(o.streams) || o.streams < 1 || o.streams > 64) throw vmError('INVALID_ARGUMENT', '--streams must be an integer from 1 to 64');
    this.client = new ControlClient({ url: o.appliance, token: o.token, pinSha256: o.pinSha256 });
    this.requests = o.requests ?? new HostRequestTable();
    // Every request listens on the stop signal; a slow appliance can have a few dozen in flight.
    setMaxListeners(256, this.stopAc.signal);
  }

  /** Runs until stop() or a refused token (then rejects with AgentRefused). */
  run(): Promise<void> {
    this.loop ??= this.mainLoop();
    return this.loop;
  }

  async stop(): Promise<void> {
    if (this.stopAc.signal.aborted) return this.loop?.catch(() => {});
    this.o.log('stopping: aborting running sends (the appliance gives them to another agent)');
    this.stopAc.abort();
    clearInterval(this.heartbeatTimer);
    for (const r of this.running.values()) r.ac.abort();
    await Promise.allSettled([...this.running.values()].map((r) => r.done));
    await Promise.allSettled([...this.answering]);
    await this.loop?.catch(() => {});
    this.client.close();
  }

  private get stopped(): boolean {
    return this.stopAc.signal.aborted;
  }

  private async mainLoop(): Promise<void> {
    while (!this.stopped && this.fatal === undefined) {
      try {
        if (!this.registered) await this.register();
        const { tasks, requests } = await this.client.request<{ tasks: AgentTask[]; requests?: HostRequest[] }>(
          'POST',
          `/agents/${encodeURIComponent(this.o.name)}/poll`,
          { waitMs: this.cfg.maxPollMs, running: [...this.running.keys()] },
          { timeoutMs: this.cfg.maxPollMs + 15_000, signal: this.stopAc.signal },
        );
        this.failures = 0;
        for (const t of tasks) this.startTask(t);
        for (const r of Array.isArray(requests) ? requests : []) this.startRequest(r);
      } catch (err) {
        if (this.stopped) break;
        this.onControlError(err, 'poll');
        if (this.fatal) break;
        await this.sleep(this.backoff());
      }
    }
    clearInterval(this.heartbeatTimer);
    if (this.fatal) {
      for (const r of this.running.values()) r.ac.abort();
      await Promise.allSettled([...this.running.values()].map((r) => r.done));
      throw this.fatal;
    }
  }

  private async register(): Promise<void> {
    const reply = await this.client.request<{ heartbeatMs: number; lostAfterMs: number; maxPollMs: number; taskVersion: number }>(
      'POST',
      '/agents/register',
      {
        name: this.o.name,
        version: this.o.version,
        hostname: os.hostname().slice(0, 255),
        addresses: localAddresses(),
        streams: this.o.streams,
        reach: this.o.reach,
        requests: this.requests.kinds(),
      },
      { timeoutMs: 15_000, signal: this.stopAc.signal },
    );
    this.cfg = { heartbeatMs: Math.max(100, reply.heartbeatMs), maxPollMs: Math.max(100, reply.maxPollMs), lostAfterMs: reply.lostAfterMs };
    this.registered = true;
    this.failures = 0;
    this.o.log(`registered with ${this.client.base.origin} as ${this.o.name} (${this.o.streams} stream(s); heartbeat every ${this.cfg.heartbeatMs} ms)`);
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = setInterval(() => void this.heartbeat(), this.cfg.heartbeatMs);
  }

  private async heartbeat(): Promise<void> {
    // One at a time: on a slow appliance (or a starved machine) they would pile up.
    if (!this.registered || this.stopped || this.heartbeatInFlight) return;
    this.heartbeatInFlight = true;
    const sentWith = new Set(this.running.keys());
    try {
      const { tasks } = await this.client.request<{ tasks: string[] }>('POST', `/agents/${encodeURIComponent(this.o.name)}/heartbeat`, {}, {
        // Waiting longer than the appliance's patience is pointless; shorter only adds failures.
        timeoutMs: Math.max(5000, this.cfg.lostAfterMs),
        signal: this.stopAc.signal,
      });
      this.heartbeatFailures = 0;
      const mine = new Set(tasks);
      for (const [id, r] of this.running) {
        // Only tasks this agent already ran when it asked: one delivered since may be newer than the answer.
        if (sentWith.has(id) && !mine.has(id) && !r.ac.signal.aborted) {
          this.o.log(`task ${id}: the appliance gave it to another agent; dropping it here`);
          r.ac.abort();
        }
      }
    } catch (err) {
      if (!this.stopped) this.onControlError(err, 'heartbeat');
    } finally {
      this.heartbeatInFlight = false;
    }
  }

  /** 404/409: register again (tasks were given back); 401: fatal; anything else: logged, retried. */
  private onControlError(err: unknown, what: string): void {
    const n = what === 'heartbeat' ? ++this.heartbeatFailures : ++this.failures;
    if (err instanceof AgentHttpError) {
      if (err.status === 401 || err.status === 403) {
        this.fatal = new AgentRefused(`the appliance refused the agent token (${err.message}); get a new one with vmvault agent token create`);
        this.o.log(this.fatal.message);
        this.stopAc.abort();
        return;
      }
      if ((err.status === 404 || err.status === 409) && this.registered) {
        this.registered = false;
        this.o.log(`${what}: ${err.message}; registering again`);
        for (const r of this.running.values()) r.ac.abort();
        return;
      }
    }
    if (n === 1 || n % 10 === 0) this.o.log(`${what} failed (${n} in a row; retrying): ${(err as Error).message}`);
  }

  private backoff(): number {
    const min = this.o.backoffMinMs ?? 500;
    const max = this.o.backoffMaxMs ?? 15_000;
    const base = Math.min(max, min * 2 ** Math.min(10, Math.max(0, this.failures - 1)));
    return Math.round(base / 2 + Math.random() * (base / 2));
  }

  private sleep(ms: number, signal: AbortSignal = this.stopAc.signal): Promise<void> {
    return new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        signal.removeEventListener('abort', done);
        resolve();
      }
      signal.addEventListener('abort', done, { once: true });
    });
  }

  /** A host request (issue 13): runs beside the copy tasks (they are short), answered once. */
  private startRequest(req: HostRequest): void {
    if (req === null || typeof req !== 'object' || typeof req.id !== 'string' || !/^[A-Za-z0-9-]{1,64}$/.test(req.id)) return;
    const p = (async () => {
      const answer = await this.requests.run(req, this.stopAc.signal);
      if (!answer.ok) this.o.log(`host request ${req.kind} ${req.id}: ${answer.error.code}: ${answer.error.message}`);
      try {
        await this.client.request('POST', `/agents/${encodeURIComponent(this.o.name)}/requests/${encodeURIComponent(req.id)}/answer`, answer, { timeoutMs: 15_000, signal: this.stopAc.signal });
      } catch (err) {
        // 409: the appliance stopped waiting (timed out); nothing to do but note it.
        if (!this.stopped) this.o.log(`host request ${req.kind} ${req.id}: the answer was not taken: ${(err as Error).message}`);
      }
    })();
    this.answering.add(p);
    void p.finally(() => this.answering.delete(p));
  }

  private startTask(task: AgentTask): void {
    if (this.running.has(task.id)) return;
    const ac = new AbortController();
    const r: Running = { task, ac, done: Promise.resolve() };
    this.running.set(task.id, r);
    r.done = this.runTask(task, ac.signal)
      .catch((err) => this.o.log(`task ${task.id}: ${(err as Error).message}`))
      .finally(() => this.running.delete(task.id));
  }

  private async runTask(task: AgentTask, signal: AbortSignal): Promise<void> {
    if (task.v !== TASK_VERSION) {
      await this.reportDone(task, { ok: false, error: `task version ${task.v}; this agent reads version ${TASK_VERSION} (upgrade the agent)` }, signal);
      return;
    }
    this.o.log(`task ${task.id}: ${task.incremental ? 'incremental' : 'full'} copy of ${task.vm} ${task.device} into ${task.target.share}/${task.target.path}`);
    const maxAttempts = this.o.maxSendAttempts ?? 20;
    let lastProgress = 0;
    let report: SendReport | undefined;
    for (let attempt = 1; ; attempt++) {
      let src: AgentSource | undefined;
      let conn: Connection | undefined;
      try {
        src = await openSource(task.source);
        if (src.size !== task.target.size) throw vmError('INVALID_ARGUMENT', `the source is ${src.size} bytes, the task says ${task.target.size}`);
        const ranges = task.incremental ? await src.dirtyRanges!() : undefined;
        conn = await openTransfer({ url: this.o.appliance, token: this.o.token, ...(this.o.pinSha256 ? { pinSha256: this.o.pinSha256 } : {}) });
        report = await sendFile(conn, src, { share: task.target.share, path: task.target.path, size: task.target.size, ...(ranges ? { ranges } : {}), taskId: task.id }, {
          signal,
          onProgress: (rep) => {
            const now = Date.now();
            if (now - lastProgress < 1000) return;
            lastProgress = now;
            this.progress(task, rep, signal);
          },
        });
        break;
      } catch (err) {
        if (signal.aborted) return; // dropped or stopping: the appliance gives it to whoever resumes it
        if (!retriable(err) || attempt >= maxAttempts) {
          await this.reportDone(task, { ok: false, error: (err as Error).message }, signal);
          this.totals.tasksFailed++;
          return;
        }
        this.o.log(`task ${task.id}: attempt ${attempt} broke (${(err as Error).message}); resuming`);
        await this.sleep(Math.min(this.o.backoffMaxMs ?? 15_000, (this.o.backoffMinMs ?? 500) * 2 ** Math.min(5, attempt - 1)), signal);
        if (signal.aborted) return;
      } finally {
        await conn?.close().catch(() => {});
        await src?.close().catch(() => {});
      }
    }
    this.totals.tasksDone++;
    this.totals.bytesRead += report.bytesRead;
    this.totals.bytesSent += report.bytesSent;
    this.o.log(`task ${task.id}: sent; read ${report.bytesRead} bytes, ${report.bytesSent} on the wire, ${report.segmentsSent} of ${report.segments} segments sent`);
    await this.reportDone(task, { ok: true, report: countsOf(report) }, signal);
  }

  private progress(task: AgentTask, rep: SendReport, signal: AbortSignal): void {
    this.client
      .request('POST', `/agents/${encodeURIComponent(this.o.name)}/tasks/${encodeURIComponent(task.id)}/progress`, countsOf(rep), { timeoutMs: 10_000, signal })
      .catch((err) => {
        if (this.finishing.has(task.id) || !this.running.has(task.id)) return;
        if (err instanceof AgentHttpError && (err.status === 404 || err.status === 409)) {
          this.o.log(`task ${task.id}: ${err.message}; dropping it`);
          this.running.get(task.id)?.ac.abort();
        }
      });
  }

  /** Reports the result until the appliance takes it, or says the task is not ours any more. */
  private async reportDone(task: AgentTask, result: { ok: boolean; error?: string; report?: Record<string, number> }, signal: AbortSignal): Promise<void> {
    this.finishing.add(task.id);
    try {
      await this.reportDoneOnce(task, result, signal);
    } finally {
      this.finishing.delete(task.id);
    }
  }

  private async reportDoneOnce(task: AgentTask, result: { ok: boolean; error?: string; report?: Record<string, number> }, signal: AbortSignal): Promise<void> {
    const body = { ok: result.ok, ...(result.error !== undefined ? { error: result.error.slice(0, 4000) } : {}), ...(result.report ? { report: result.report } : {}) };
    for (let attempt = 1; !signal.aborted; attempt++) {
      try {
        await this.client.request('POST', `/agents/${encodeURIComponent(this.o.name)}/tasks/${encodeURIComponent(task.id)}/done`, body, { timeoutMs: 15_000, signal });
        return;
      } catch (err) {
        if (err instanceof AgentHttpError && err.status >= 400 && err.status < 500 && err.status !== 408 && err.status !== 429) {
          this.o.log(`task ${task.id}: the appliance did not take the result: ${err.message}`);
          return;
        }
        await this.sleep(Math.min(this.o.backoffMaxMs ?? 15_000, (this.o.backoffMinMs ?? 500) * 2 ** Math.min(5, attempt - 1)), signal);
      }
    }
  }
}

function countsOf(r: SendReport): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of ['bytesRead', 'bytesSent', 'fingerprintBytes', 'segments', 'segmentsSent', 'segmentBytesSent', 'zeroBytes'] as const) {
    const v = r[k];
    if (Number.isSafeInteger(v) && v >= 0) out[k] = v;
  }
  return out;
}

/** A broken link, a timeout or a restarting appliance is worth another try; bad input is not. */
function retriable(err: unknown): boolean {
  if (err instanceof AgentHttpError) return err.status >= 500 || err.status === 408 || err.status === 429;
  if (isVmvaultError(err)) return err.code === 'IO' || err.code === 'TIMEOUT' || err.code === 'CLOSED';
  const code = (err as NodeJS.ErrnoException)?.code;
  if (typeof code === 'string' && /^(ECONN|EPIPE|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ENETDOWN|EAI_AGAIN|UND_ERR)/.test(code)) return true;
  // HTTP status carried by the transfer client's errors, when it has one.
  const status = (err as { status?: unknown; statusCode?: unknown })?.status ?? (err as { statusCode?: unknown })?.statusCode;
  if (typeof status === 'number') return status >= 500 || status === 408 || status === 429;
  return /socket hang up|ECONNRESET|EPIPE|timed? ?out|network/i.test(String((err as Error)?.message));
}

/** This host's non-loopback addresses (what `vmvault agent list` shows beside the remote one). */
function localAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) if (!a.internal) out.push(a.address);
  }
  return out.slice(0, 32);
}
