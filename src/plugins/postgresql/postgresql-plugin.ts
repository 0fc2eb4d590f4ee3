// The postgresql plug-in: quiesce-database = CHECKPOINT, so the data files on disk are as
// recent as possible and crash recovery from the snapshot replays little WAL; the guest's
// fsfreeze that follows makes the snapshot crash-consistent, which PostgreSQL is built to
// start from. unquiesce-database has nothing to undo (CHECKPOINT pauses nothing).
// Not offered, on purpose: pg_backup_start/pg_backup_stop. Without WAL capture up to the stop,
// a snapshot restored with the returned backup_label fails to start (measured, issue 11).

import pg from 'pg';
import { vmError, type VmvaultError } from '../../errors.js';
import type { ActionContext, ActionName, Plugin, WorkflowTarget } from '../plugin-api.js';

export interface PostgresqlPluginOptions {
  /** Connecting, including authentication (default 10 s). */
  connectTimeoutMs?: number;
  /** The server cancels CHECKPOINT after this (default 30 s). */
  statementTimeoutMs?: number;
}

export class PostgresqlPlugin implements Plugin {
  readonly name = 'postgresql';
  private readonly connectTimeoutMs: number;
  private readonly statementTimeoutMs: number;

  constructor(opts: PostgresqlPluginOptions = {}) {
    this.connectTimeoutMs = opts.connectTimeoutMs ?? 10_000;
    this.statementTimeoutMs = opts.statementTimeoutMs ?? 30_000;
  }

  performs(action: ActionName, target: WorkflowTarget): boolean {
    return typeof target.pg === 'string' && (action === 'quiesce-database' || action === 'unquiesce-database');
  }

  /** Our deadline covers connecting and the statement, with a margin for the server's own cancel. */
  timeoutMs(action: ActionName): number | undefined {
    return action === 'quiesce-database' ? this.connectTimeoutMs + this.statementTimeoutMs + 2_000 : undefined;
  }

  async run(action: ActionName, ctx: ActionContext): Promise<unknown> {
    const url = ctx.target.pg;
    if (typeof url !== 'string') throw vmError('INVALID_ARGUMENT', `VM '${ctx.target.vm}' has no PostgreSQL URL (--pg)`);
    if (action === 'unquiesce-database') {
      ctx.log('nothing to undo: CHECKPOINT does not pause the database');
      return { undone: false };
    }
    if (action !== 'quiesce-database') throw vmError('NOT_SUPPORTED', `the postgresql plug-in does not perform '${action}'`);
    return this.checkpoint(url, ctx);
  }

  /** Connects, runs CHECKPOINT under a statement timeout, disconnects. Returns its duration. */
  async checkpoint(url: string, ctx: Pick<ActionContext, 'signal' | 'log'>): Promise<{ checkpointMs: number; server: string }> {
    const where = describeUrl(url);
    const client = makeClient(url, where, this.connectTimeoutMs, this.statementTimeoutMs);
    const aborted = new Promise<never>((_, reject) => {
      const onAbort = (): void => {
        client.end().catch(() => {});
        reject(ctx.signal.reason ?? vmError('CANCELLED', `CHECKPOINT on ${where} cancelled`));
      };
      if (ctx.signal.aborted) onAbort();
      else ctx.signal.addEventListener('abort', onAbort, { once: true });
    });
    aborted.catch(() => {});
    let connected = false;
    try {
      await Promise.race([client.connect(), aborted]);
      connected = true;
      const version = await Promise.race([client.query<{ server_version: string }>('SHOW server_version'), aborted]);
      const t0 = performance.now();
      await Promise.race([client.query('CHECKPOINT'), aborted]);
      const checkpointMs = Math.round(performance.now() - t0);
      ctx.log(`CHECKPOINT on ${where} (PostgreSQL ${version.rows[0]?.server_version ?? '?'}) took ${checkpointMs} ms`);
      return { checkpointMs, server: where };
    } catch (err) {
      throw explain(err, where, connected, this.statementTimeoutMs, this.connectTimeoutMs);
    } finally {
      client.end().catch(() => {});
    }
  }
}

function makeClient(url: string, where: string, connectTimeoutMs: number, statementTimeoutMs: number): pg.Client {
  if (!/^postgres(ql)?:\/\//.test(url)) {
    throw vmError('INVALID_ARGUMENT', `PostgreSQL URL ${where} must start with postgres:// (e.g. postgres://backup@127.0.0.1:5432/postgres)`);
  }
  try {
    const client = new pg.Client({
      connectionString: url,
      connectionTimeoutMillis: connectTimeoutMs,
      statement_timeout: statementTimeoutMs,
      application_name: 'vmvault-backup',
    });
    // A server that goes away mid-statement emits 'error' on the client; the query rejects too.
    client.on('error', () => {});
    return client;
  } catch (err) {
    throw vmError('INVALID_ARGUMENT', `PostgreSQL URL ${where} is malformed: ${(err as Error).message}`, undefined, err);
  }
}

/** The URL without its password, for messages and logs. */
export function describeUrl(url: string): string {
  // Greedy up to the last '@' of the authority: a raw '@' in a password must not leak its tail.
  return url.replace(/^(postgres(?:ql)?:\/\/[^:/@]*):[^/]*@/, '$1:***@');
}

function explain(err: unknown, where: string, connected: boolean, statementTimeoutMs: number, connectTimeoutMs: number): VmvaultError {
  const e = err as { code?: string; message?: string; name?: string };
  if (e && (e as VmvaultError).name === 'VmvaultError') return err as VmvaultError;
  const msg = e?.message ?? String(err);
  const cause = err;
  switch (e?.code) {
    case 'ECONNREFUSED':
      return vmError('PLUGIN_FAILED', `PostgreSQL at ${where}: connection refused; is the server running and listening on that address and port?`, { server: where }, cause);
    case 'ENOENT':
      return vmError('PLUGIN_FAILED', `PostgreSQL at ${where}: no server socket at that path; is the server running, and is host= the socket directory?`, { server: where }, cause);
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return vmError('PLUGIN_FAILED', `PostgreSQL at ${where}: host name not found (${e.code})`, { server: where }, cause);
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'ETIMEDOUT':
      return vmError('PLUGIN_FAILED', `PostgreSQL at ${where}: cannot reach the host (${e.code})`, { server: where }, cause);
    case '28P01':
    case '28000':
      return vmError('PLUGIN_FAILED', `PostgreSQL at ${where}: authentication failed (${msg}); check the user and password in the URL and the server's pg_hba.conf`, { server: where, sqlstate: e.code }, cause);
    case '3D000':
      return vmError('PLUGIN_FAILED', `PostgreSQL at ${where}: ${msg}; name an existing database in the URL (e.g. /postgres)`, { server: where, sqlstate: e.code }, cause);
    case '42501':
      return vmError('PLUGIN_FAILED', `PostgreSQL at ${where}: the user may not run CHECKPOINT (${msg}); GRANT pg_checkpoint TO the backup user (PostgreSQL 15+) or use a superuser`, { server: where, sqlstate: e.code }, cause);
    case '57014':
      return vmError('TIMEOUT', `PostgreSQL at ${where}: CHECKPOINT did not finish within ${statementTimeoutMs} ms and was cancelled by the server`, { server: where, sqlstate: e.code }, cause);
    default:
      // pg says 'timeout expired' or 'Connection terminated due to connection timeout'.
      if (!connected && /timeout/i.test(msg)) {
        return vmError('TIMEOUT', `PostgreSQL at ${where}: no connection within ${connectTimeoutMs} ms`, { server: where }, cause);
      }
      return vmError('PLUGIN_FAILED', `PostgreSQL at ${where}: ${msg}`, { server: where, sqlstate: e?.code }, cause);
  }
}
