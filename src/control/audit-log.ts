// The audit log: one JSON line per state-changing API call (POST, PUT, PATCH, DELETE), and so
// per CLI action, whatever its outcome, refused calls included. Kept with the store in
// `<data>/audit.log`; when a write would take the file past maxBytes it is renamed to
// audit.log.1 (audit.log.1 to .2, and so on; the oldest beyond `keep` is removed) and a new
// one is started.
//
// Record format (version 1), one JSON object per line:
//   v        1
//   time     ISO 8601, UTC, when the response was sent
//   caller   the token's name ("admin": the one admin token today), or "anonymous" when the
//            call carried no valid token
//   ip       the peer address
//   method   HTTP method
//   route    the route pattern, e.g. "/api/v1/shares/:share" ("" if no route matched)
//   url      the path as requested (query string dropped), at most 512 characters
//   target   the route's parameters and the scalar fields of body and query (names, flags such
//            as force), strings cut to 256 characters; never headers, so never the token
//   status   HTTP status sent
//   error    the error code sent (errors.ts, or INTERNAL), or null on success
//   ms       time to answer, milliseconds
//   uid, gid, pid   only on records of the mount (method "FUSE"): the calling process's
//            user, group and process id, from the kernel's request
// Operations through the mount that change the appliance are recorded too: method "FUSE",
// route the operation ("mkdir" / "rmdir" at the top of the mount: a share made or removed;
// "copy_file_range": a whole-file fastcopy), caller "mount", ip "", url "", target the share
// name or the node ids, status 0 on success and 1 on failure, error the code it failed with
// (errors.ts, or a POSIX name such as EEXIST) or null.
// Readers must ignore fields they do not know; a new field does not bump the version.

import fs from 'node:fs/promises';

export const AUDIT_VERSION = 1;

export interface AuditRecord {
  v: number;
  time: string;
  caller: string;
  ip: string;
  method: string;
  route: string;
  url: string;
  target: Record<string, string | number | boolean>;
  status: number;
  error: string | null;
  ms: number;
  uid?: number;
  gid?: number;
  pid?: number;
}

export interface AuditLogOptions {
  /** Rotate before the file would pass this size. Default 10 MiB. */
  maxBytes?: number;
  /** Rotated files kept (audit.log.1 .. .N). Default 5. */
  keep?: number;
  /** Where a failure to write is reported (once per run of failures). */
  log?: (line: string) => void;
}

/** How often (at most) the path is checked for an outside rotation while the file is kept open. */
const REOPEN_CHECK_MS = 1000;

/**
 * Durability (unchanged from when the file was opened per record): a record is written with
 * write(2) to a file opened O_APPEND before append()'s promise resolves, so it is in the page
 * cache and survives a crash of the appliance process; it is not fsynced, so a power loss can
 * lose the last records. What changed: the file stays open between records (opening, appending
 * and closing per request cost the control plane's main thread ~0.4 s per 460 MiB of agent
 * frames), and records queued while one write runs go out together in one write.
 */
export class AuditLog {
  private readonly maxBytes: number;
  private readonly keep: number;
  private readonly log: (line: string) => void;
  private size: number | undefined;
  private fh: fs.FileHandle | undefined;
  /** (dev, ino) of the open file, and when the path was last checked to still name it. */
  private ident = '';
  private checked = 0;
  private pending: string[] = [];
  private queue: Promise<void> = Promise.resolve();
  private failing = false;

  constructor(
    readonly file: string,
    opts: AuditLogOptions = {},
  ) {
    this.maxBytes = opts.maxBytes ?? 10 * 1024 * 1024;
    this.keep = Math.max(1, opts.keep ?? 5);
    this.log = opts.log ?? (() => {});
  }

  /** Appends a record; writes happen in order. Never throws. */
  append(record: AuditRecord): Promise<void> {
    this.pending.push(JSON.stringify(record) + '\n');
    // One drain per write already queued takes every line pending when it runs.
    this.queue = this.queue.then(() => this.drain());
    return this.queue;
  }

  /** Resolves once every record appended so far is written. */
  flush(): Promise<void> {
    return this.queue;
  }

  /** Writes what is pending and closes the file (a later append opens it again). */
  async close(): Promise<void> {
    await this.queue;
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close().catch(() => {});
  }

  private async drain(): Promise<void> {
    const lines = this.pending;
    if (lines.length === 0) return;
    this.pending = [];
    try {
      await this.reopenIfMoved();
      let batch = '';
      let batchBytes = 0;
      for (const line of lines) {
        const bytes = Buffer.byteLength(line);
        if (this.size === undefined) this.size = await fileSize(this.file);
        if (this.size + batchBytes > 0 && this.size + batchBytes + bytes > this.maxBytes) {
          if (batchBytes > 0) await this.writeOut(batch, batchBytes);
          batch = '';
          batchBytes = 0;
          if (this.size! > 0) await this.rotate();
        }
        batch += line;
        batchBytes += bytes;
      }
      if (batchBytes > 0) await this.writeOut(batch, batchBytes);
      this.failing = false;
    } catch (err) {
      if (!this.failing) this.log(`writing the audit log ${this.file} failed: ${(err as Error).message}`);
      this.failing = true;
      this.size = undefined;
      const fh = this.fh;
      this.fh = undefined;
      await fh?.close().catch(() => {});
    }
  }

  private async writeOut(text: string, bytes: number): Promise<void> {
    if (!this.fh) {
      this.fh = await fs.open(this.file, 'a', 0o600);
      const st = await this.fh.stat();
      this.ident = `${st.dev}:${st.ino}`;
      this.checked = Date.now();
      this.size = st.size;
    }
    await this.fh.write(text);
    this.size! += bytes;
  }

  /** Another program renamed or removed the file (logrotate): the next write opens the path again. */
  private async reopenIfMoved(): Promise<void> {
    if (!this.fh || Date.now() - this.checked < REOPEN_CHECK_MS) return;
    this.checked = Date.now();
    const st = await fs.stat(this.file).catch(() => undefined);
    if (st && `${st.dev}:${st.ino}` === this.ident) return;
    const fh = this.fh;
    this.fh = undefined;
    this.size = undefined;
    await fh.close().catch(() => {});
  }

  private async rotate(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close();
    await fs.rm(`${this.file}.${this.keep}`, { force: true });
    for (let i = this.keep - 1; i >= 1; i--) {
      await fs.rename(`${this.file}.${i}`, `${this.file}.${i + 1}`).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
    }
    await fs.rename(this.file, `${this.file}.1`);
    this.size = 0;
  }
}

/** The audit record of an operation through the mount (see the format above). */
export function mountAuditRecord(e: { op: string; target: Record<string, string | number | boolean>; uid: number; gid: number; pid: number; error: string | null; ms: number }): AuditRecord {
  return {
    v: AUDIT_VERSION,
    time: new Date().toISOString(),
    caller: 'mount',
    ip: '',
    method: 'FUSE',
    route: e.op,
    url: '',
    target: e.target,
    status: e.error === null ? 0 : 1,
    error: e.error,
    ms: e.ms,
    uid: e.uid,
    gid: e.gid,
    pid: e.pid,
  };
}

async function fileSize(file: string): Promise<number> {
  try {
    return (await fs.stat(file)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
}
