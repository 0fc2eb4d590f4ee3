// Agent tokens: one per agent (`vmvault agent token create NAME`), scoped to agent work (routes
// that opt in with `config: { agent: true }`). Kept in `<data>/agent-tokens.json` (mode 0600)
// as SHA-256 digests only: the token itself is shown once, at creation. A token is 32 random
// bytes, so a plain digest is as hard to invert as the token is to guess. Revocation takes
// effect at once: the table in memory is what the auth hook reads, and it changes before the
// call returns.
//
// File format, version 1: {"version": 1, "tokens": [{"name", "sha256" (hex), "trusted"
// (store-wide dedup answers), "created" (ISO 8601)}]}. Unknown fields are an error for a
// newer version, ignored otherwise. Added without a version change (issue 14): "scope",
// "agent" (absent: the old tokens) or "replication": a token another appliance uses to send
// clone copies here. A replication token calls the transfer routes and the replica routes
// only (routes with `config: { replication: true }`), writes only into shares it made as
// clone targets (control/replicas.ts), and cannot act as an agent (no polling for tasks).

import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fromSystemError, vmError } from '../errors.js';
import { writeFileAtomic } from '../files/atomic-file.js';

export const AGENT_TOKENS_FILE = 'agent-tokens.json';
const FORMAT_VERSION = 1;
const NAME_SHAPE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** Agent tokens start so, so a person (and a log scrubber) can tell them from the admin token. */
export const AGENT_TOKEN_PREFIX = 'vva_';

export type TokenScope = 'agent' | 'replication';

export interface AgentTokenInfo {
  name: string;
  trusted: boolean;
  created: string;
  /** Absent in old files: 'agent'. */
  scope?: TokenScope;
}

interface Stored extends AgentTokenInfo {
  sha256: string;
}

function digest(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

export class AgentTokens {
  private byDigest = new Map<string, Stored>();
  private readonly lock: { tail: Promise<void> } = { tail: Promise.resolve() };

  private constructor(private readonly file: string | undefined) {}

  /** The tokens of a data directory (an empty table if the file does not exist yet). */
  static async load(dataDir: string): Promise<AgentTokens> {
    const t = new AgentTokens(path.join(dataDir, AGENT_TOKENS_FILE));
    await t.read();
    return t;
  }

  /** A table kept in memory only (tests, the in-memory control services). */
  static inMemory(): AgentTokens {
    return new AgentTokens(undefined);
  }

  private async read(): Promise<void> {
    if (!this.file) return;
    let text: string;
    try {
      text = await fs.readFile(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw fromSystemError(err, `reading ${this.file}`);
    }
    let doc: { version?: unknown; tokens?: unknown };
    try {
      doc = JSON.parse(text) as typeof doc;
    } catch {
      throw vmError('CORRUPT_RECORD', `${this.file} is not valid JSON`);
    }
    if (doc.version !== FORMAT_VERSION) throw vmError('UNSUPPORTED_FORMAT', `${this.file} has format version ${String(doc.version)}; this appliance reads ${FORMAT_VERSION}`);
    if (!Array.isArray(doc.tokens)) throw vmError('CORRUPT_RECORD', `${this.file}: "tokens" is not a list`);
    for (const t of doc.tokens as Stored[]) {
      if (typeof t?.name !== 'string' || typeof t.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(t.sha256)) throw vmError('CORRUPT_RECORD', `${this.file}: a token entry is malformed`);
      this.byDigest.set(t.sha256, { name: t.name, sha256: t.sha256, trusted: t.trusted === true, created: String(t.created ?? ''), ...(t.scope === 'replication' ? { scope: 'replication' as const } : {}) });
    }
  }

  private async write(next: Map<string, Stored>): Promise<void> {
    if (this.file) {
      const doc = { version: FORMAT_VERSION, tokens: [...next.values()].sort((a, b) => a.name.localeCompare(b.name)) };
      await writeFileAtomic(this.file, JSON.stringify(doc, null, 2) + '\n');
    }
    this.byDigest = next;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const r = this.lock.tail.then(fn);
    this.lock.tail = r.then(
      () => undefined,
      () => undefined,
    );
    return r;
  }

  /** Makes a token; returns it (the only time it is visible). */
  create(name: string, opts: { trusted?: boolean; scope?: TokenScope } = {}): Promise<{ name: string; token: string; trusted: boolean; scope: TokenScope }> {
    if (typeof name !== 'string' || !NAME_SHAPE.test(name)) {
      throw vmError('INVALID_ARGUMENT', `agent name ${JSON.stringify(String(name).slice(0, 80))}: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit`);
    }
    return this.serial(async () => {
      for (const t of this.byDigest.values()) if (t.name === name) throw vmError('ALREADY_EXISTS', `agent token ${name} already exists; revoke it first to make a new one`);
      const token = AGENT_TOKEN_PREFIX + randomBytes(32).toString('hex');
      const next = new Map(this.byDigest);
      const sha256 = digest(token);
      const scope: TokenScope = opts.scope === 'replication' ? 'replication' : 'agent';
      // A replication token's answers stay in its own shares' scope: it is never trusted.
      const trusted = scope === 'agent' && opts.trusted === true;
      next.set(sha256, { name, sha256, trusted, created: new Date().toISOString(), ...(scope === 'replication' ? { scope } : {}) });
      await this.write(next);
      return { name, token, trusted, scope };
    });
  }

  list(): AgentTokenInfo[] {
    return [...this.byDigest.values()].map((t) => ({ name: t.name, trusted: t.trusted, created: t.created, scope: t.scope ?? 'agent' })).sort((a, b) => a.name.localeCompare(b.name));
  }

  revoke(name: string): Promise<void> {
    return this.serial(async () => {
      const next = new Map(this.byDigest);
      let found = false;
      for (const [k, t] of next) {
        if (t.name === name) {
          next.delete(k);
          found = true;
        }
      }
      if (!found) throw vmError('NOT_FOUND', `no agent token named ${String(name).slice(0, 80)}`);
      // In memory first, so no request authenticates with it once revoke was called, even if
      // the file write then fails (it is retried by the next change).
      const old = this.byDigest;
      this.byDigest = next;
      try {
        await this.write(next);
      } catch (err) {
        this.byDigest = new Map([...old].filter(([, t]) => t.name !== name));
        throw err;
      }
    });
  }

  /** Which agent a presented token belongs to, if any. */
  lookup(token: string): AgentTokenInfo | undefined {
    if (!token.startsWith(AGENT_TOKEN_PREFIX)) return undefined;
    const t = this.byDigest.get(digest(token));
    return t ? { name: t.name, trusted: t.trusted, created: t.created, scope: t.scope ?? 'agent' } : undefined;
  }
}
