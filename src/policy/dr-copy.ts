// The disaster-recovery copy (issue 14): everything needed to rebuild the appliance, copied to a
// directory destination, consistent as of one checkpoint, while the appliance keeps serving.
// DR-FORMAT.md is the layout and the write order; in short:
//  1. state files are read first (each is replaced atomically by its writer, so one read sees a
//     whole version), then the store's snapshot is taken (store/copy-snapshot.ts), so a point's
//     snapshot can exist without its record (as after a crash between the two), never a record
//     naming a snapshot the copy lacks... except a retention removal that fell between the two
//     reads, whose record the restored appliance lists until its next prune (DR-FORMAT.md);
//  2. new sealed containers go to the shared containers/ (temporary name, fsync, rename), those
//     the previous manifest lists with the same size are not copied again; open ones, the
//     database records and the state files go to this copy's own folder or by content name;
//  3. every directory touched is fsynced, then the manifest is written last (temporary, fsync,
//     rename, directory fsync): a copy cut off anywhere leaves the previous manifest, and every
//     file it names, as they were;
//  4. only then is what no manifest names any more removed (older copies' folders, containers
//     GC removed, state file contents no longer used, temporary files of a cut-off copy).

import { createHash, randomBytes } from 'node:crypto';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fromSystemError, isVmvaultError, vmError } from '../errors.js';
import { fsyncPath, mkdirDurable } from '../files/durable.js';
import { appendCheckpoint, chainStart, isDamage, LOG_MAGIC, type LogEntry, logState } from './dr-log.js';
import {
  type ContainerEntry,
  encodeManifest,
  type FileEntry,
  inCopy,
  MANIFEST_FILE,
  type ManifestBody,
  readManifest,
  type StateFileEntry,
  DR_FORMAT,
  DR_VERSION,
} from './dr-format.js';

/** What the copy needs of the store's consistent view (store/copy-snapshot.ts, StoreSnapshot). */
export interface DrStoreSnapshot {
  readonly config: Buffer;
  readonly storeId: string;
  readonly takenAt: number;
  readonly checkpoint: { nextCid: number; openCids: number[] };
  readonly containers: Array<{ id: number; rel: string; size: number; sealed: boolean }>;
  records(): AsyncIterable<Array<[Buffer, Buffer]>>;
  pathOf(id: number): string;
  release(): Promise<void>;
}

export interface DrCopyOptions {
  dataDir: string;
  to: string;
  snapshot: () => Promise<DrStoreSnapshot>;
  version: string;
  signal?: AbortSignal;
  progress?: (done: number, total: number, phase: string) => void;
  log?: (line: string) => void;
  /** Roots the destination must not be in besides the data directory (the appliance's mount). */
  forbidden?: Array<{ path: string; what: string }>;
  /** Test seam: called after each container is in place (a crash test stops the copier here). */
  afterContainer?: (id: number) => Promise<void> | void;
  /** Test seam: called after each frame appended to the database log, before its fsync. */
  afterLogFrame?: (bytes: number) => Promise<void> | void;
}

export interface DrCopyResult {
  copy: string;
  to: string;
  takenAt: string;
  containers: number;
  containersCopied: number;
  containersReused: number;
  /** Bytes written to the destination by this copy (containers, database, state files). */
  bytesWritten: number;
  /** Bytes this copy appended to the database log (its part of bytesWritten). */
  databaseBytes: number;
  /** Whether the database went in as a whole base (a new log) rather than as changes. */
  databaseBase: boolean;
  /** Bytes the copy names in all (what a restore reads). */
  bytesTotal: number;
  databaseRecords: number;
  files: number;
  previous?: string;
}

// Top-level entries of the data directory that are not state files: the store's own parts (copied
// from the snapshot instead), caches rebuilt at start, working files of a running appliance, and
// the quiesce journal (it names VMs the OLD machine froze; a restored appliance must not thaw
// VMs it never froze).
const NOT_STATE = new Set(['db', 'containers', 'dr-pin', 'store.json', 'bloom.bin', 'scratch', 'nfs', 'smb', 'quiesce-journal.json', 'LOCK']);

/** Whether a file of the data directory is a temporary one (a writer's `.tmp`, a catalog being built). */
function temporary(name: string): boolean {
  return name.startsWith('.') || name.endsWith('.tmp') || name.endsWith('.partial') || name.includes('.tmp-');
}

/**
 * Refuses a destination inside the data directory, one that contains it, or one inside a
 * forbidden root (the appliance's own mount: writing there from the appliance's process would
 * wait on itself), by name and through symbolic links (the nearest existing ancestor's real path).
 */
export async function checkDestination(to: string, dataDir: string, forbidden: Array<{ path: string; what: string }> = []): Promise<void> {
  const inside = (p: string, root: string) => p === root || p.startsWith(root.endsWith(path.sep) ? root : root + path.sep);
  const check = (p: string, how: string) => {
    if (inside(p, dataDir)) throw vmError('INVALID_ARGUMENT', `the DR destination ${to} is inside the data directory ${dataDir}${how}; it must be another disk or directory`);
    if (inside(dataDir, p)) throw vmError('INVALID_ARGUMENT', `the DR destination ${to} contains the data directory ${dataDir}${how}`);
    for (const r of forbidden) if (inside(p, r.path)) throw vmError('INVALID_ARGUMENT', `the DR destination ${to} is inside the appliance's ${r.what} (${r.path})${how}; copy to a directory outside it`);
  };
  check(to, '');
  let existing = to;
  const rest: string[] = [];
  for (;;) {
    const real = await fsp.realpath(existing).catch(() => undefined);
    if (real !== undefined) {
      check(path.join(real, ...rest), ', through a symbolic link');
      return;
    }
    const parent = path.dirname(existing);
    if (parent === existing) return;
    rest.unshift(path.basename(existing));
    existing = parent;
  }
}

export async function drCopy(o: DrCopyOptions): Promise<DrCopyResult> {
  const to = path.resolve(o.to);
  const dataDir = await fsp.realpath(o.dataDir).catch(() => path.resolve(o.dataDir));
  await checkDestination(to, dataDir, o.forbidden);
  // Durable before anything is written into it: a destination folder this copy made, left
  // volatile in its parent, would take every copy in it with it at a power cut.
  await mkdirDurable(to).catch((err) => {
    throw fromSystemError(err, `creating the DR destination ${to}`);
  });
  const log = o.log ?? (() => {});
  let previous: ManifestBody | undefined;
  try {
    previous = await readManifest(to);
  } catch (err) {
    if (!isVmvaultError(err, 'NOT_FOUND')) {
      // A damaged manifest names nothing we can trust to reuse: copy everything again.
      log(`the previous DR copy in ${to} is not usable (${(err as Error).message}); copying everything`);
    }
  }
  const copyId = `${new Date().toISOString().replace(/[-:.]/g, '').slice(0, 15)}Z-${randomBytes(3).toString('hex')}`;
  const copyRel = `dr-copies/${copyId}`;
  const w = new Writer(to, o.signal);

  // 1. State files, then the store's snapshot.
  const stateFiles = await listStateFiles(dataDir);
  const files: StateFileEntry[] = [];
  for (const f of stateFiles) {
    const bytes = await fsp.readFile(path.join(dataDir, ...f.rel.split('/'))).catch((err) => {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined; // removed since the listing
      throw fromSystemError(err, `reading ${f.rel} in the data directory`);
    });
    if (bytes === undefined) continue;
    const e = await w.putObject(bytes);
    files.push({ ...e, rel: f.rel, mode: f.mode });
  }
  const snap = await o.snapshot();
  try {
    const total = snap.containers.reduce((n, c) => n + c.size, 0);
    let done = 0;
    const prevSealed = new Map<number, ContainerEntry>();
    for (const c of previous?.containers ?? []) if (c.sealed) prevSealed.set(c.id, c);
    const storeConfig = await w.putObject(snap.config);

    // 2. Containers.
    const containers: ContainerEntry[] = [];
    let copied = 0;
    let reused = 0;
    for (const c of snap.containers) {
      o.signal?.throwIfAborted();
      const dest = c.sealed ? `dr-${c.rel}` : `${copyRel}/open/${c.rel.replace(/^containers\//, '')}`;
      const prev = c.sealed ? prevSealed.get(c.id) : undefined;
      if (prev && prev.size === c.size && prev.path === dest && (await w.sizeOf(dest)) === c.size) {
        containers.push({ ...prev });
        reused++;
      } else {
        const e = await w.copyFile(snap.pathOf(c.id), c.size, dest);
        containers.push({ ...e, id: c.id, sealed: c.sealed });
        copied++;
      }
      done += c.size;
      o.progress?.(done, total, 'copying containers');
      await o.afterContainer?.(c.id);
    }

    // The database: appended to the log as what changed since the previous copy (dr-log.ts).
    o.progress?.(done, total, 'copying the database');
    const database = await appendDatabase(w, to, previous, { copy: copyId, takenAt: new Date(snap.takenAt).toISOString() }, snap.records(), log, o);

    // 3. Directories, then the manifest.
    await w.syncDirs();
    const body: ManifestBody = {
      format: DR_FORMAT,
      version: DR_VERSION,
      copy: copyId,
      storeId: snap.storeId,
      takenAt: new Date(snap.takenAt).toISOString(),
      completedAt: new Date().toISOString(),
      checkpoint: { nextCid: snap.checkpoint.nextCid, openCids: [...snap.checkpoint.openCids] },
      appliance: { version: o.version },
      storeConfig,
      database: { path: database.path, size: database.size, sha256: database.sha256, records: database.records, live: database.live, checkpoints: database.checkpoints },
      containers,
      files,
      ...(previous ? { previous: previous.copy } : {}),
    };
    await w.writeManifest(encodeManifest(body));
    log(`DR copy ${copyId} complete in ${to}: ${containers.length} containers (${copied} copied, ${reused} already there), ${database.records} database records, ${files.length} state files`);

    // 4. What no manifest names any more.
    await prune(to, body, log);
    const bytesTotal = containers.reduce((n, c) => n + c.size, 0) + database.size + files.reduce((n, f) => n + f.size, 0) + storeConfig.size;
    return {
      copy: copyId,
      to,
      takenAt: body.takenAt,
      containers: containers.length,
      containersCopied: copied,
      containersReused: reused,
      bytesWritten: w.bytesWritten,
      bytesTotal,
      databaseRecords: database.records,
      databaseBytes: database.appended,
      databaseBase: database.base,
      files: files.length,
      ...(previous ? { previous: previous.copy } : {}),
    };
  } finally {
    await snap.release();
  }
}

async function listStateFiles(dataDir: string): Promise<Array<{ rel: string; mode: number }>> {
  const out: Array<{ rel: string; mode: number }> = [];
  const walk = async (dir: string, rel: string): Promise<void> => {
    let entries;
    try {
      entries = await fsp.readdir(dir, { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw fromSystemError(err, `listing ${dir}`);
    }
    for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
      if (rel === '' && NOT_STATE.has(e.name)) continue;
      if (temporary(e.name)) continue;
      const r = rel === '' ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory()) await walk(path.join(dir, e.name), r);
      else if (e.isFile()) {
        const st = await fsp.stat(path.join(dir, e.name)).catch(() => undefined);
        if (st) out.push({ rel: r, mode: st.mode & 0o777 });
      }
    }
  };
  await walk(dataDir, '');
  return out;
}

/** Writes into the destination: temporary names, fsync, rename; remembers directories to fsync. */
class Writer {
  bytesWritten = 0;
  private readonly dirs = new Set<string>();
  private readonly tag = randomBytes(3).toString('hex');

  constructor(
    private readonly root: string,
    private readonly signal?: AbortSignal,
  ) {}

  async sizeOf(rel: string): Promise<number | undefined> {
    return fsp.stat(inCopy(this.root, rel)).then((s) => s.size, () => undefined);
  }

  /** A state file or store.json, stored under its content's name (unchanged files are kept once). */
  async putObject(bytes: Buffer): Promise<FileEntry> {
    const sha = createHash('sha256').update(bytes).digest('hex');
    const rel = `dr-files/${sha.slice(0, 2)}/${sha}`;
    if ((await this.sizeOf(rel)) !== bytes.length) await this.write(rel, async (h) => {
      await h.write(bytes, 0, bytes.length, 0);
    });
    return { path: rel, size: bytes.length, sha256: sha };
  }

  /** Copies the first `size` bytes of `from`. */
  async copyFile(from: string, size: number, rel: string): Promise<FileEntry> {
    const hash = createHash('sha256');
    const src = await fsp.open(from, 'r').catch((err) => {
      throw fromSystemError(err, `opening ${from} for the DR copy`);
    });
    try {
      await this.write(rel, async (h) => {
        const buf = Buffer.allocUnsafe(1 << 20);
        let off = 0;
        while (off < size) {
          this.signal?.throwIfAborted();
          const n = Math.min(buf.length, size - off);
          const { bytesRead } = await src.read(buf, 0, n, off);
          if (bytesRead === 0) throw vmError('IO', `${from} ended at ${off} bytes; the copy needs ${size}`);
          hash.update(buf.subarray(0, bytesRead));
          await h.write(buf, 0, bytesRead, off);
          off += bytesRead;
        }
      });
    } finally {
      await src.close();
    }
    return { path: rel, size, sha256: hash.digest('hex') };
  }

  /**
   * Appends to the database log at `rel`: a new file (magic first) when `committed` is undefined,
   * else after its committed length, cutting off what a copy cut short left beyond it. Synced
   * before it returns; the manifest (written after) is what commits the appended bytes.
   */
  async appendLog<T>(rel: string, committed: number | undefined, fill: (write: (b: Buffer) => Promise<void>) => Promise<T>, log: (l: string) => void, after?: (n: number) => Promise<void> | void): Promise<{ value: T; end: number; appended: number }> {
    const file = inCopy(this.root, rel);
    await this.mkdirs(path.dirname(file));
    let h: fsp.FileHandle;
    let pos: number;
    try {
      if (committed === undefined) {
        h = await fsp.open(file, 'w', 0o600);
        await h.write(LOG_MAGIC, 0, LOG_MAGIC.length, 0);
        pos = LOG_MAGIC.length;
      } else {
        h = await fsp.open(file, 'r+');
        const size = (await h.stat()).size;
        if (size > committed) {
          log(`DR copy: ${size - committed} bytes after the last complete checkpoint of ${rel} (a copy cut off before its manifest) are cut off`);
          await h.truncate(committed);
        }
        pos = committed;
      }
    } catch (err) {
      throw fromSystemError(err, `opening ${file} (DR copy)`);
    }
    const start = committed ?? 0;
    try {
      const value = await fill(async (b) => {
        this.signal?.throwIfAborted();
        await h.write(b, 0, b.length, pos);
        pos += b.length;
        await after?.(b.length);
      });
      await h.sync();
      this.bytesWritten += pos - start;
      this.dirs.add(path.dirname(file));
      return { value, end: pos, appended: pos - start };
    } catch (err) {
      throw fromSystemError(err, `appending to ${file} (DR copy)`);
    } finally {
      await h.close();
    }
  }

  private async write(rel: string, fill: (h: fsp.FileHandle) => Promise<void>): Promise<void> {
    const file = inCopy(this.root, rel);
    const dir = path.dirname(file);
    const tmp = `${file}.tmp-${this.tag}`;
    try {
      await this.mkdirs(dir);
      const h = await fsp.open(tmp, 'w', 0o600);
      try {
        await fill(h);
        await h.sync();
        this.bytesWritten += (await h.stat()).size;
      } finally {
        await h.close();
      }
      await fsp.rename(tmp, file);
    } catch (err) {
      await fsp.rm(tmp, { force: true }).catch(() => {});
      throw fromSystemError(err, `writing ${file} (DR copy)`);
    }
    this.dirs.add(dir);
  }

  private async mkdirs(dir: string): Promise<void> {
    // Each directory made (and its parent, which gained an entry) is fsynced before the manifest.
    let d = dir;
    const made: string[] = [];
    while (d.startsWith(this.root) && d !== this.root && !(await fsp.stat(d).then(() => true, () => false))) {
      made.push(d);
      d = path.dirname(d);
    }
    if (made.length === 0) return;
    await fsp.mkdir(dir, { recursive: true });
    for (const m of made) this.dirs.add(path.dirname(m));
  }

  async syncDirs(): Promise<void> {
    // Deepest first, so a directory's own entry is durable after its contents.
    for (const d of [...this.dirs].sort((a, b) => b.length - a.length)) await fsyncPath(d);
    this.dirs.clear();
  }

  async writeManifest(text: string): Promise<void> {
    const file = path.join(this.root, MANIFEST_FILE);
    const tmp = `${file}.tmp-${this.tag}`;
    try {
      const h = await fsp.open(tmp, 'w', 0o600);
      try {
        await h.writeFile(text);
        await h.sync();
      } finally {
        await h.close();
      }
      await fsp.rename(tmp, file);
      await fsyncPath(this.root);
    } catch (err) {
      await fsp.rm(tmp, { force: true }).catch(() => {});
      throw fromSystemError(err, `writing ${file} (DR copy)`);
    }
  }
}

/** Starts a new log once the old one holds more than this many times a base's bytes. */
const COMPACT_RATIO = 2;

/**
 * The database into the log: as changes since the previous copy when its manifest names a
 * version-2 log that reads back whole and is not yet COMPACT_RATIO times a base; else as a base in
 * a new log (`dr-db/<copy>.log`; the old one is pruned once the manifest names the new one).
 */
async function appendDatabase(
  w: Writer,
  root: string,
  previous: ManifestBody | undefined,
  end: { copy: string; takenAt: string },
  records: AsyncIterable<Array<[Buffer, Buffer]>>,
  log: (l: string) => void,
  o: Pick<DrCopyOptions, 'signal' | 'afterLogFrame'>,
): Promise<LogEntry & { appended: number; base: boolean }> {
  const prev = previous && previous.version >= 2 ? (previous.database as LogEntry) : undefined;
  let state: AsyncIterator<Array<[Buffer, Buffer]>> | undefined;
  if (prev && prev.size > COMPACT_RATIO * prev.live + LOG_MAGIC.length) {
    log(`DR copy: the database log holds ${prev.size} bytes for ${prev.live} live: starting a new one`);
  } else if (prev) {
    const it = logState(inCopy(root, prev.path), prev)[Symbol.asyncIterator]();
    try {
      // The first step checks the whole committed prefix before anything is appended.
      const first = await it.next();
      state = prepend(first, it);
    } catch (err) {
      if (!isDamage(err)) throw err;
      log(`DR copy: the database log is not usable (${(err as Error).message}); starting a new one`);
    }
  }
  const rel = state ? prev!.path : `dr-db/${end.copy}.log`;
  const ordinal = state ? prev!.checkpoints + 1 : 1;
  const r = await w.appendLog(
    rel,
    state ? prev!.size : undefined,
    (write) => appendCheckpoint({ records, previous: state, ordinal, chain: state ? Buffer.from(prev!.sha256, 'hex') : chainStart(), end, write, signal: o.signal }),
    log,
    o.afterLogFrame,
  );
  return { path: rel, size: r.end, sha256: r.value.chain.toString('hex'), records: r.value.records, live: r.value.live, checkpoints: ordinal, appended: r.appended, base: state === undefined };
}

function prepend<T>(first: IteratorResult<T>, rest: AsyncIterator<T>): AsyncIterator<T> {
  let used = false;
  return {
    next: async () => {
      if (!used) {
        used = true;
        return first;
      }
      return first.done ? first : rest.next();
    },
  };
}

/** Removes what the manifest `m` does not name: run only after it landed. */
async function prune(root: string, m: ManifestBody, log: (l: string) => void): Promise<void> {
  const keep = new Set<string>([m.storeConfig.path, m.database.path, ...m.containers.map((c) => c.path), ...m.files.map((f) => f.path)]);
  let removed = 0;
  const walk = async (rel: string): Promise<void> => {
    const dir = inCopy(root, rel);
    let entries;
    try {
      entries = await fsp.readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const r = `${rel}/${e.name}`;
      if (e.isDirectory()) {
        if (rel === 'dr-copies' && e.name !== m.copy) {
          await fsp.rm(path.join(dir, e.name), { recursive: true, force: true });
          removed++;
          continue;
        }
        await walk(r);
        if ((await fsp.readdir(path.join(dir, e.name)).catch(() => ['x'])).length === 0) await fsp.rmdir(path.join(dir, e.name)).catch(() => {});
      } else if (!keep.has(r)) {
        await fsp.rm(path.join(dir, e.name), { force: true });
        removed++;
      }
    }
  };
  // Only the DR copy's own folders: a clone archive may share the directory (ARCHIVE.md).
  for (const top of ['dr-copies', 'dr-containers', 'dr-files', 'dr-db']) await walk(top);
  for (const e of await fsp.readdir(root)) if (e.startsWith(`${MANIFEST_FILE}.tmp-`)) await fsp.rm(path.join(root, e), { force: true });
  if (removed > 0) log(`DR copy: removed ${removed} files and folders no copy names any more`);
}
